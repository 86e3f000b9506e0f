"""The class lists of registered splits, and the check that the splits a model trains and is
evaluated on share its classes."""
from detectron2.data import DatasetCatalog, MetadataCatalog

from .problems import DatasetError


def thing_classes(name):
    """The class list of the registered split ``name``, None for an unlabeled one. (A COCO-JSON
    split's are known once it is loaded: it is loaded here if they are not.)"""
    metadata = MetadataCatalog.get(name)
    if metadata.get("thing_classes") is None and metadata.get("json_file"):
        DatasetCatalog.get(name)
    return metadata.get("thing_classes")


def detected_classes(cfg):
    """The class names the model detects: those of DATASETS.TRAIN's first split. A
    :class:`DatasetError` where DATASETS.TRAIN is empty or that split is unlabeled."""
    if not cfg.DATASETS.TRAIN:
        raise DatasetError("DATASETS.TRAIN is empty: its first split names the classes the "
                           "model detects")
    require_labeled(cfg.DATASETS.TRAIN[:1], "DATASETS.TRAIN")
    return thing_classes(cfg.DATASETS.TRAIN[0])


# why a split of each key must be labeled
_LABELS_NEEDED_FOR = {"DATASETS.TRAIN": "the detector learns from its boxes",
                      "DATASETS.TEST": "an evaluation compares detections with its boxes"}


def require_labeled(names, key):
    """A :class:`DatasetError` naming the first split of ``names`` (of config key ``key``,
    DATASETS.TRAIN or DATASETS.TEST) that is unlabeled, such as an image folder."""
    for name in names:
        if thing_classes(name) is None:
            raise DatasetError(f"{key}: {name!r} is unlabeled (no classes, no boxes), but "
                               f"{_LABELS_NEEDED_FOR[key]}; unlabeled images adapt the detector "
                               f"from DATASETS.TARGET_TRAIN")


def check_same_classes(cfg, names):
    """Every labeled split of ``names`` must name the classes of DATASETS.TRAIN[0], the ones the
    model learns, in the same order, and the model must have as many
    (MODEL.ROI_HEADS.NUM_CLASSES); a :class:`DatasetError` naming both otherwise."""
    reference = detected_classes(cfg)
    reference_name = cfg.DATASETS.TRAIN[0]
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if len(reference) != num_classes:
        raise DatasetError(f"MODEL.ROI_HEADS.NUM_CLASSES = {num_classes}, but {reference_name!r} "
                           f"has {len(reference)} classes {list(reference)}: set it to "
                           f"{len(reference)}")
    for name in names:
        classes = thing_classes(name)
        if classes is not None and list(classes) != list(reference):
            raise DatasetError(f"dataset {name!r} has classes {list(classes)}, but "
                               f"{reference_name!r} has {list(reference)}: the splits a model "
                               f"trains and is evaluated on must share one class list"
                               f"{_how_they_differ(classes, reference)}")


def _how_they_differ(classes, reference):
    """A hint where two class lists differ in a way that is hard to see."""
    def folded(names):
        return [" ".join(n.split()).casefold() for n in names]

    if folded(classes) == folded(reference):
        return " (they differ in case or spaces only)"
    if sorted(classes) == sorted(reference):
        return " (the same classes in another order: a class's place is its id)"
    return ""
