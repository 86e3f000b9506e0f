"""VGG16 backbone, the one DA Faster R-CNN's paper uses, registered with detectron2."""
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torchvision.models import vgg16

VGG_FEATURE = "vgg_conv5"


class VGG16(Backbone):
    """torchvision's VGG16 convolutions through conv5_3 + ReLU (the last max-pool dropped).

    (N, 3, H, W) -> {"vgg_conv5": (N, 512, H/16, W/16)}. The first ``freeze_convs`` conv layers
    are frozen (Faster R-CNN freezes conv1_1 to conv2_2: 4).
    """

    def __init__(self, freeze_convs=4):
        super().__init__()
        self.features = vgg16(weights=None).features[:-1]
        convs = [m for m in self.features if isinstance(m, torch.nn.Conv2d)]
        for conv in convs[:freeze_convs]:
            for p in conv.parameters():
                p.requires_grad_(False)

    def forward(self, x):
        return {VGG_FEATURE: self.features(x)}

    def output_shape(self):
        return {VGG_FEATURE: ShapeSpec(channels=512, stride=16)}


@BACKBONE_REGISTRY.register()
def build_vgg16_backbone(cfg, input_shape):
    """MODEL.BACKBONE.FREEZE_AT counts frozen conv layers here (4: through conv2_2)."""
    return VGG16(freeze_convs=cfg.MODEL.BACKBONE.FREEZE_AT)


def torchvision_vgg16_to_detectron2(state_dict):
    """Rename a torchvision VGG16 state dict for a da-detect VGG16 Faster R-CNN.

    ``features.*`` become the backbone's; ``classifier.0`` / ``classifier.3`` (fc6, fc7) become
    the box head's ``fc1`` / ``fc2`` (MODEL.ROI_BOX_HEAD: NUM_FC 2, FC_DIM 4096, 7x7 pooling);
    the ImageNet classifier ``classifier.6`` is dropped. A ValueError names what is missing or of
    another shape than VGG16's (e.g. a VGG16-BN or VGG19 file).
    """
    with torch.device("meta"):  # shapes only: no 138M weights to initialize (~2.5 s)
        expected = {k: v.shape for k, v in vgg16(weights=None).state_dict().items()
                    if not k.startswith("classifier.6.")}
    missing = [k for k in expected if k not in state_dict]
    if missing:
        raise ValueError(f"not a torchvision VGG16 state dict: {len(missing)} of its "
                         f"{len(expected)} tensors missing ({', '.join(missing[:3])}, ...)")
    not_tensors = [k for k in expected if not isinstance(state_dict[k], torch.Tensor)]
    if not_tensors:
        raise ValueError(f"not a torchvision VGG16 state dict: {not_tensors[0]} is not a "
                         f"tensor ({type(state_dict[not_tensors[0]]).__name__})")
    misshapen = [k for k in expected if tuple(state_dict[k].shape) != tuple(expected[k])]
    if misshapen:
        k = misshapen[0]
        raise ValueError(f"not a torchvision VGG16 state dict: {k} is {tuple(state_dict[k].shape)}"
                         f", VGG16's is {tuple(expected[k])}")
    renamed = {}
    for key in expected:
        if key.startswith("features."):
            renamed["backbone." + key] = state_dict[key]
        else:
            fc = "fc1" if key.startswith("classifier.0.") else "fc2"
            renamed[f"roi_heads.box_head.{fc}.{key.split('.')[-1]}"] = state_dict[key]
    return renamed
