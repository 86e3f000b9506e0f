"""The evaluation data: detectron2's test loader, with an image that cannot be used (unreadable,
or not its annotation's size), or a split whose classes are not the model's, reported as one
:class:`DatasetError` naming it."""
from functools import partial

from detectron2.data import DatasetMapper, build_detection_test_loader
from detectron2.utils import comm

from .classes import check_same_classes, require_labeled
from .images import checked_in_every_process, map_or_bad_image
from .worker_processes import batches, start_workers_safely


class ImageCheckingLoader:
    """Iterates over ``loader``'s batches, each through :func:`checked_in_every_process`; has
    its length.

    With several processes, each evaluating its own part of the split, the processes check their
    k-th batches together (a process whose part is shorter joins the last checks with none), so
    an image that cannot be used stops every process at that batch with one
    :class:`DatasetError` naming it and whose part it was.
    """

    def __init__(self, loader):
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        loaded = batches(self.loader)
        for _ in range(max(comm.all_gather(len(self.loader)))):
            batch = checked_in_every_process(next(loaded, []))
            if batch:
                yield batch


def build_test_loader(cfg, dataset_name):
    """detectron2's ``build_detection_test_loader`` with its default mapper, its workers started
    by :func:`start_workers_safely`, and images that cannot be used reported by name; a split
    that is unlabeled, or whose classes are not the model's, is refused."""
    require_labeled([dataset_name], "DATASETS.TEST")
    check_same_classes(cfg, [dataset_name])
    mapper = partial(map_or_bad_image, DatasetMapper(cfg, is_train=False))
    return ImageCheckingLoader(start_workers_safely(
        build_detection_test_loader(cfg, dataset_name, mapper=mapper)))
