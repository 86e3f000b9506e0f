"""The consistency regularizer of DA Faster R-CNN (the paper's Eq. 9)."""


def consistency_loss(image_probs, instance_probs, image_index):
    """Mean over regions of ``|| p_img(i) - p_ins(i, j) ||_2`` (Eq. 9).

    Args:
        image_probs: (N,) per-image target probability, averaged over locations (and levels).
        instance_probs: (R,) per-region target probability.
        image_index: (R,) long, the image each region belongs to.
    The L2 distance between two scalars is their absolute difference. The paper sums over
    regions; the mean keeps the loss's scale independent of the number of regions.
    """
    return (image_probs[image_index] - instance_probs).abs().mean()
