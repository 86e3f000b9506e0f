"""The evaluation data: detectron2's test loader, with an image that cannot be used (unreadable,
or not its annotation's size) reported as one :class:`DatasetError` naming it."""
from functools import partial

from detectron2.data import DatasetMapper, build_detection_test_loader

from .problems import check_images, map_or_bad_image


class ImageCheckingLoader:
    """Iterates over ``loader``'s batches, each through :func:`check_images`; has its length."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield check_images(batch)


def build_test_loader(cfg, dataset_name):
    """detectron2's ``build_detection_test_loader`` with its default mapper, images that cannot
    be used reported by name."""
    mapper = partial(map_or_bad_image, DatasetMapper(cfg, is_train=False))
    return ImageCheckingLoader(build_detection_test_loader(cfg, dataset_name, mapper=mapper))
