"""The evaluation data: detectron2's test loader, with an image that cannot be used (unreadable,
or not its annotation's size), or a split whose classes are not the model's, reported as one
:class:`DatasetError` naming it."""
from functools import partial

from detectron2.data import DatasetMapper, build_detection_test_loader

from ..every_process import raised_together
from .classes import check_same_classes
from .images import check_images, map_or_bad_image
from .problems import DatasetError


class ImageCheckingLoader:
    """Iterates over ``loader``'s batches, each through :func:`check_images`; has its length.

    With several processes, each evaluating its own share of the split: a process that meets an
    image it cannot use stops, the others go on to the end of their shares (of other lengths, so
    no step is common to all), and there every process raises one :class:`DatasetError` naming
    each such image and whose share it was.
    """

    def __init__(self, loader):
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        with raised_together(DatasetError):
            for batch in self.loader:
                yield check_images(batch)


def build_test_loader(cfg, dataset_name):
    """detectron2's ``build_detection_test_loader`` with its default mapper, images that cannot
    be used reported by name; a split whose classes are not the model's is refused."""
    check_same_classes(cfg, [dataset_name])
    mapper = partial(map_or_bad_image, DatasetMapper(cfg, is_train=False))
    return ImageCheckingLoader(build_detection_test_loader(cfg, dataset_name, mapper=mapper))
