"""detectron2's box ROI heads, exposing the per-region box-head features D_ins classifies.

In inference they are the standard heads unchanged, so their weights load into
``StandardROIHeads`` / ``Res5ROIHeads`` and back.
"""
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads, StandardROIHeads


class _BoxFeaturesMixin:
    def forward_with_box_features(self, features, proposals, targets):
        """The training forward on labeled images, also returning what D_ins needs.

        Returns: (box losses, (R, D) box features of the R regions sampled for training,
        list of regions per image).
        """
        proposals = self.label_and_sample_proposals(proposals, targets)
        box_features = self.box_features(features, [p.proposal_boxes for p in proposals])
        losses = self.box_predictor.losses(self.box_predictor(box_features), proposals)
        return losses, box_features, [len(p) for p in proposals]

    def _check_box_only(self):
        if self.mask_on or getattr(self, "keypoint_on", False):
            raise ValueError("domain-adaptive ROI heads are box-only: set MODEL.MASK_ON and "
                             "MODEL.KEYPOINT_ON to False")


@ROI_HEADS_REGISTRY.register()
class DomainAdaptiveStandardROIHeads(_BoxFeaturesMixin, StandardROIHeads):
    """``StandardROIHeads`` (FPN): the box features are the box head's output, (R, FC_DIM)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.train_on_pred_boxes:
            raise ValueError("MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES is not supported here")
        self._check_box_only()

    @property
    def box_feature_dim(self):
        return self.box_head.output_shape.channels

    def box_features(self, features, boxes):
        """(R, D) box-head features of ``boxes`` (a list of Boxes per image)."""
        return self.box_head(self.box_pooler([features[f] for f in self.box_in_features], boxes))


@ROI_HEADS_REGISTRY.register()
class DomainAdaptiveRes5ROIHeads(_BoxFeaturesMixin, Res5ROIHeads):
    """``Res5ROIHeads`` (C4): the box features are res5's output averaged over space, (R, 2048)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._check_box_only()

    @property
    def box_feature_dim(self):
        return self.res5[-1].out_channels

    def box_features(self, features, boxes):
        """(R, D) pooled res5 features of ``boxes`` (a list of Boxes per image)."""
        x = self._shared_roi_transform([features[f] for f in self.in_features], boxes)
        return x.mean(dim=[2, 3])
