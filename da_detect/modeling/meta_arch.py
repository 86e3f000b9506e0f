"""Domain Adaptive Faster R-CNN (Chen et al., CVPR 2018) as a detectron2 meta-architecture."""
import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import ImageList
from detectron2.utils.events import get_event_storage
from torch import nn

from ..config import ConfigError
from .consistency import consistency_loss
from .gradient_reversal import grl_lambda, reverse_gradient, scale_gradient
from .image_domain_classifier import (
    ImageDomainClassifier,
    image_domain_loss,
    image_domain_probability,
    valid_location_mask,
)
from .instance_domain_classifier import InstanceDomainClassifier, instance_domain_loss

SOURCE, TARGET = 0, 1


@META_ARCH_REGISTRY.register()
class DomainAdaptiveRCNN(GeneralizedRCNN):
    """Faster R-CNN with image-level and instance-level domain classifiers behind gradient
    reversal, and the consistency regularizer between them.

    Training inputs are detectron2's batched inputs, each with ``"domain"``: 0 (source, labeled,
    the default when absent) or 1 (target, unlabeled: its ``"instances"``, if any, are never read).
    One backbone pass covers source and target images; detection losses come from source images
    only; the domain losses (Eq. 7, 8, 9) come from both and are weighted as in Eq. (10). D_ins sees
    the same kind of regions in both domains: each image's top RPN proposals, chosen without labels.

    Inference is :class:`GeneralizedRCNN`'s, untouched: the domain classifiers cost nothing at
    test time and the weights load into a plain ``GeneralizedRCNN``.
    """

    TRAINING_ONLY = ("image_classifiers", "instance_classifier")  # modules inference never runs

    @configurable
    def __init__(self, *, image_classifiers, image_in_features, instance_classifier,
                 consistency, da_loss_weight, part_loss_weights, grl_lambdas, grl_schedule,
                 grl_gamma, instance_regions, start_iter=0, **kwargs):
        """
        Args:
            image_classifiers (nn.ModuleDict or None): feature name -> ImageDomainClassifier
                (the same module under every name when shared).
            image_in_features (list[str]): backbone features D_img classifies: the backbone's
                outputs or, for an FPN, also its bottom-up network's (e.g. res3-res5).
            instance_classifier (InstanceDomainClassifier or None).
            consistency (bool): add the consistency regularizer L_cst; needs both classifiers.
            da_loss_weight (float): lambda of Eq. (10).
            part_loss_weights (dict): "image", "instance", "consistency" -> weight inside Eq. (10).
            grl_lambdas (dict): "image", "instance" -> base GRL coefficient.
            grl_schedule (str), grl_gamma (float): see :func:`grl_lambda`.
            instance_regions (int): top RPN proposals per image (source and target) given to
                D_ins.
            start_iter (int): the first training step that adapts; earlier steps train on the
                source images alone.
            kwargs: GeneralizedRCNN's arguments.
        """
        super().__init__(**kwargs)
        if consistency and (image_classifiers is None or instance_classifier is None):
            raise ValueError("the consistency regularizer ties D_img's prediction to D_ins': it "
                             "needs both classifiers")
        self.image_classifiers = image_classifiers
        self.image_in_features = image_in_features
        self.instance_classifier = instance_classifier
        self.consistency = consistency
        self.da_loss_weight = da_loss_weight
        self.part_loss_weights = part_loss_weights
        self.grl_lambdas = grl_lambdas
        self.grl_schedule = grl_schedule
        self.grl_gamma = grl_gamma
        self.instance_regions = instance_regions
        self.start_iter = start_iter
        # set by the trainer before each step: the step, and the GRL schedule's progress in [0, 1]
        # through the adapting steps (from start_iter on)
        self.iteration = 0
        self.training_progress = 0.0
        self._strides = {k: v.stride for k, v in _feature_shapes(self.backbone).items()}
        # whether D_img reads an FPN's bottom-up features: only then are they captured each step
        self._aligns_bottom_up = image_classifiers is not None and any(
            f not in self.backbone.output_shape() for f in image_in_features)

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        da = cfg.MODEL.DA
        shapes = _feature_shapes(ret["backbone"])
        in_features = list(da.IMAGE.IN_FEATURES) or list(cfg.MODEL.RPN.IN_FEATURES)
        unknown = [f for f in in_features if f not in shapes]
        if unknown:
            raise ConfigError(f"MODEL.DA.IMAGE.IN_FEATURES: {unknown} not among the "
                              f"backbone's outputs {sorted(shapes)}")
        image_classifiers = None
        if da.IMAGE.ENABLED:
            def make(f):
                return ImageDomainClassifier(shapes[f].channels, da.IMAGE.HIDDEN_CHANNELS)

            if da.IMAGE.SHARED:
                channels = {shapes[f].channels for f in in_features}
                if len(channels) != 1:
                    raise ConfigError("MODEL.DA.IMAGE.SHARED needs features of one channel "
                                      f"count, got {channels}: set it to False")
                shared = make(in_features[0])
                image_classifiers = nn.ModuleDict({f: shared for f in in_features})
            else:
                image_classifiers = nn.ModuleDict({f: make(f) for f in in_features})
        instance_classifier = None
        if da.INSTANCE.ENABLED:
            if not hasattr(ret["roi_heads"], "box_features"):
                raise ConfigError(f"MODEL.ROI_HEADS.NAME = {cfg.MODEL.ROI_HEADS.NAME}: "
                                  "instance-level adaptation needs DomainAdaptiveStandardROIHeads "
                                  "(a box head) or DomainAdaptiveRes5ROIHeads (C4's res5 head)")
            instance_classifier = InstanceDomainClassifier(
                ret["roi_heads"].box_feature_dim, da.INSTANCE.HIDDEN_DIM, da.INSTANCE.DROPOUT)
        regions = da.INSTANCE.REGIONS_PER_IMAGE
        ret.update(
            image_classifiers=image_classifiers,
            image_in_features=in_features,
            instance_classifier=instance_classifier,
            consistency=da.CONSISTENCY.ENABLED,
            da_loss_weight=da.LOSS_WEIGHT,
            part_loss_weights={"image": da.IMAGE.LOSS_WEIGHT, "instance": da.INSTANCE.LOSS_WEIGHT,
                               "consistency": da.CONSISTENCY.LOSS_WEIGHT},
            grl_lambdas={"image": da.IMAGE.GRL_LAMBDA, "instance": da.INSTANCE.GRL_LAMBDA},
            grl_schedule=da.GRL_SCHEDULE,
            grl_gamma=da.GRL_GAMMA,
            instance_regions=(cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE // 2 if regions == -1
                              else regions),
            start_iter=da.START_ITER,
        )
        return ret

    @property
    def adapts(self):
        """Whether any domain classifier is on (all off: plain Faster R-CNN on source images)."""
        return self.image_classifiers is not None or self.instance_classifier is not None

    def set_training_progress(self, iteration, max_iter):
        """Called before training step ``iteration`` of ``max_iter``."""
        self.iteration = int(iteration)
        adapted = iteration - self.start_iter
        self.training_progress = max(0, adapted) / max(1, max_iter - self.start_iter)

    def forward(self, batched_inputs):
        if not self.training:
            return self.inference(batched_inputs)
        source = [x for x in batched_inputs if x.get("domain", SOURCE) == SOURCE]
        target = [x for x in batched_inputs if x.get("domain", SOURCE) == TARGET]
        if not source:
            raise ValueError("a training batch needs at least one labeled source image")
        if not self.adapts or not target or self.iteration < self.start_iter:
            return super().forward(source)

        images = self.preprocess_image(source + target)
        features = (self.backbone_features(images.tensor) if self._aligns_bottom_up
                    else self.backbone(images.tensor))
        n = len(source)
        src_images = ImageList(images.tensor[:n], images.image_sizes[:n])
        src_features = {k: v[:n] for k, v in features.items()}
        gt_instances = [x["instances"].to(self.device) for x in source]

        proposals, losses = self.proposal_generator(src_images, src_features, gt_instances)
        _, box_losses = self.roi_heads(src_images, src_features, proposals, gt_instances)
        losses.update(box_losses)
        with torch.profiler.record_function("da_detect.domain_losses"):  # named in profiles
            losses.update(self.domain_losses(images, features, n))
        return losses

    def domain_losses(self, images, features, num_source):
        """L_img, L_ins and L_cst (Eq. 7, 8, 9), each times lambda and its part weight (Eq. 10):
        a dict of scalars ``loss_da_image``, ``loss_da_instance``, ``loss_da_consistency`` for
        the parts that are on.

        ``images``: the ImageList of the N images; ``features``: the backbone's outputs for them
        (:meth:`backbone_features`). Images ``[:num_source]`` are source, the rest target. D_ins
        sees, in every image, the ``instance_regions`` top-scoring RPN proposals as the RPN makes
        them at test time: the regions the detector classifies there, chosen the same way in both
        domains. (Label-sampled source regions against target proposals would let D_ins tell the
        domains apart by the mix of objects and background alone.)
        """
        storage = get_event_storage()
        num_images = len(images)
        domain = torch.zeros(num_images, device=self.device)
        domain[num_source:] = 1.0
        lambdas = {part: grl_lambda(base, self.grl_schedule, self.training_progress,
                                    self.grl_gamma) for part, base in self.grl_lambdas.items()}
        weight = {part: self.da_loss_weight * w for part, w in self.part_loss_weights.items()}
        losses = {}

        if self.image_classifiers is not None:
            maps = [features[f] for f in self.image_in_features]
            masks = [valid_location_mask(images.image_sizes, x.shape, self._strides[f]).to(
                x.device) for f, x in zip(self.image_in_features, maps)]
            logits = [self.image_classifiers[f](reverse_gradient(x, lambdas["image"]))
                      for f, x in zip(self.image_in_features, maps)]
            loss, accuracy = image_domain_loss(logits, domain, masks)
            losses["loss_da_image"] = weight["image"] * loss
            storage.put_scalar("da/image_accuracy", accuracy.item())
            storage.put_scalar("da/grl_lambda_image", lambdas["image"])

        if self.instance_classifier is not None:
            boxes = self._top_proposal_boxes(images, features)
            box_features = self.roi_heads.box_features(features, boxes)
            rois = [len(b) for b in boxes]
            roi_image = torch.repeat_interleave(torch.arange(num_images, device=self.device),
                                                torch.as_tensor(rois, device=self.device))
            ins_logits = self.instance_classifier(
                reverse_gradient(box_features, lambdas["instance"]))
            loss, accuracy = instance_domain_loss(ins_logits, domain[roi_image])
            losses["loss_da_instance"] = weight["instance"] * loss
            storage.put_scalar("da/instance_accuracy", accuracy.item())
            storage.put_scalar("da/grl_lambda_instance", lambdas["instance"])

        if self.consistency:
            # Eq. (9) pulls features and classifiers toward agreement: its gradient is scaled by
            # +lambda, not reversed, so the classifiers are run again on an unreversed path.
            img_logits = [self.image_classifiers[f](scale_gradient(x, lambdas["image"]))
                          for f, x in zip(self.image_in_features, maps)]
            ins_logits = self.instance_classifier(scale_gradient(box_features, lambdas["instance"]))
            loss = consistency_loss(image_domain_probability(img_logits, masks),
                                    torch.sigmoid(ins_logits.float()), roi_image)
            losses["loss_da_consistency"] = weight["consistency"] * loss
        return losses

    def backbone_features(self, x):
        """The backbone's outputs for the (N, 3, H, W) batch ``x`` and, for an FPN, its bottom-up
        network's (res2-res5), from one forward pass: name -> (N, C, H/stride, W/stride)."""
        bottom_up = getattr(self.backbone, "bottom_up", None)
        if bottom_up is None:
            return self.backbone(x)
        captured = {}
        hook = bottom_up.register_forward_hook(lambda module, inputs, out: captured.update(out))
        try:
            features = self.backbone(x)
        finally:
            hook.remove()
        return {**captured, **features}

    @torch.no_grad()
    def _top_proposal_boxes(self, images, features):
        """Top ``instance_regions`` RPN boxes per image, as the RPN proposes at test time: a list
        of N ``Boxes``, each (R_i, 4) with R_i <= ``instance_regions``."""
        rpn = self.proposal_generator
        rpn.train(False)
        try:
            proposals, _ = rpn(images, features)
        finally:
            rpn.train(True)
        return [p.proposal_boxes[: self.instance_regions] for p in proposals]


def _feature_shapes(backbone):
    """Name -> ShapeSpec of every feature :meth:`DomainAdaptiveRCNN.backbone_features` returns."""
    bottom_up = getattr(backbone, "bottom_up", None)
    shapes = dict(bottom_up.output_shape()) if bottom_up is not None else {}
    shapes.update(backbone.output_shape())
    return shapes
