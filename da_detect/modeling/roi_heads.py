"""detectron2's box ROI heads, exposing the per-region box-head features D_ins classifies.

Training and inference are the standard heads' own, so their weights load into
``StandardROIHeads`` / ``Res5ROIHeads`` and back; they add ``box_features(features, boxes)``
for any regions, and ``box_feature_dim``.
"""
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads, StandardROIHeads

from ..config import ConfigError


class _BoxOnlyMixin:
    def _check_box_only(self):
        if self.mask_on or getattr(self, "keypoint_on", False):
            raise ConfigError("domain-adaptive ROI heads are box-only: set MODEL.MASK_ON and "
                              "MODEL.KEYPOINT_ON to False")


@ROI_HEADS_REGISTRY.register()
class DomainAdaptiveStandardROIHeads(_BoxOnlyMixin, StandardROIHeads):
    """``StandardROIHeads`` (a box head on FPN levels, or on one feature map such as VGG16's
    conv5): the box features are the box head's output, (R, FC_DIM), or its conv output
    flattened, (R, C * h * w), for a head without FC layers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._check_box_only()

    @property
    def box_feature_dim(self):
        shape = self.box_head.output_shape
        return shape.channels * (shape.height or 1) * (shape.width or 1)

    def box_features(self, features, boxes):
        """(R, D) box-head features of ``boxes`` (a list of Boxes per image)."""
        x = self.box_head(self.box_pooler([features[f] for f in self.box_in_features], boxes))
        return x.flatten(1)


@ROI_HEADS_REGISTRY.register()
class DomainAdaptiveRes5ROIHeads(_BoxOnlyMixin, Res5ROIHeads):
    """``Res5ROIHeads`` (C4): the box features are res5's output averaged over space,
    (R, res5 channels): 2048 for R50 and deeper, 512 for R18 / R34."""

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
