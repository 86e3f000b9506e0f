"""The image-level domain classifier D_img of DA Faster R-CNN and its loss (the paper's Eq. 7)."""
import torch
import torch.nn.functional as F
from torch import nn


class ImageDomainClassifier(nn.Module):
    """Patch-wise domain classifier: 1x1 conv (C -> hidden), ReLU, 1x1 conv (hidden -> 1).

    Maps a feature map (N, C, H, W) to one domain logit per location (N, 1, H, W);
    a positive logit says "target".
    """

    def __init__(self, in_channels, hidden_channels=512):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden_channels, kernel_size=1)
        self.conv2 = nn.Conv2d(hidden_channels, 1, kernel_size=1)
        # PyTorch's default init for the hidden layer; a near-zero output layer starts the
        # classifier at chance. (std=0.001 for both, as the paper's code has it, leaves the two
        # layers' gradients ~1e-3 times each other's: on unit-scale features it never learns.)
        nn.init.normal_(self.conv2.weight, std=0.01)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x):
        return self.conv2(F.relu(self.conv1(x)))


def valid_location_mask(image_sizes, feature_shape, stride):
    """(N, 1, H, W) bool mask of the feature locations that cover image pixels, not padding.

    Padding differs between domains whose images differ in shape, and a classifier could tell
    the domains apart by it alone, so padded locations are left out of the losses.
    """
    n, _, height, width = feature_shape
    sizes = torch.as_tensor(image_sizes, dtype=torch.float32)  # (N, 2): h, w
    valid_h = torch.ceil(sizes[:, 0] / stride)
    valid_w = torch.ceil(sizes[:, 1] / stride)
    rows = torch.arange(height).view(1, height, 1) < valid_h.view(n, 1, 1)
    cols = torch.arange(width).view(1, 1, width) < valid_w.view(n, 1, 1)
    return (rows & cols).unsqueeze(1)


def image_domain_loss(logits, domain_labels, masks):
    """Binary cross-entropy per location (Eq. 7), averaged over valid locations, then levels
    (the paper sums over images and locations; the mean keeps the loss's scale independent of the
    image size and the batch).

    Args:
        logits: list over levels of (N, 1, H, W) domain logits.
        domain_labels: (N,) float, 0 for source images, 1 for target images.
        masks: list over levels of (N, 1, H, W) bool, see :func:`valid_location_mask`.
    Returns: (loss, accuracy), scalars.
    """
    losses, correct, count = [], 0.0, 0.0
    for level_logits, mask in zip(logits, masks):
        labels = domain_labels.view(-1, 1, 1, 1).expand_as(level_logits)
        bce = F.binary_cross_entropy_with_logits(level_logits, labels, reduction="none")
        mask = mask.to(bce.dtype)
        losses.append((bce * mask).sum() / mask.sum())
        correct += (((level_logits > 0).to(bce.dtype) == labels).to(bce.dtype) * mask).sum()
        count += mask.sum()
    return torch.stack(losses).mean(), (correct / count).detach()


def image_domain_probability(logits, masks):
    """(N,) float32 probability of "target" per image: the sigmoid averaged over all valid
    locations of all levels, as the consistency regularizer (Eq. 9) uses it. Computed in float32
    whatever the logits' dtype: near 0.5 bfloat16 steps by 0.004, as much as the differences the
    regularizer penalizes."""
    total = sum((torch.sigmoid(x.float()) * m).sum(dim=(1, 2, 3)) for x, m in zip(logits, masks))
    count = sum(m.sum(dim=(1, 2, 3)) for m in masks)
    return total / count
