"""DA Faster R-CNN's modules; importing this registers the meta-architecture and ROI heads."""
from .consistency import consistency_loss  # noqa: F401
from .gradient_reversal import grl_lambda, reverse_gradient, scale_gradient  # noqa: F401
from .image_domain_classifier import ImageDomainClassifier, image_domain_loss  # noqa: F401
from .instance_domain_classifier import InstanceDomainClassifier, instance_domain_loss  # noqa: F401
from .meta_arch import DomainAdaptiveRCNN  # noqa: F401
from .roi_heads import DomainAdaptiveRes5ROIHeads, DomainAdaptiveStandardROIHeads  # noqa: F401
from .vgg import VGG16, build_vgg16_backbone  # noqa: F401
