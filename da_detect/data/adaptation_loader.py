"""The training data of adaptation: a labeled source batch and an unlabeled target batch per step."""
import logging

from detectron2.data import (
    DatasetMapper,
    MetadataCatalog,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)

from ..modeling.meta_arch import SOURCE, TARGET

logger = logging.getLogger(__name__)


class DomainPairLoader:
    """Iterates over ``source_batch + target_batch`` lists, one per training step."""

    def __init__(self, source_loader, target_loader):
        self.source_loader = source_loader
        self.target_loader = target_loader

    def __iter__(self):
        for source, target in zip(self.source_loader, self.target_loader):
            yield source + target


def unlabeled(dataset_dicts):
    """Copies of the dicts without their annotations, marked as target: no label can leak."""
    return [{k: v for k, v in d.items() if k != "annotations"} | {"domain": TARGET}
            for d in dataset_dicts]


def target_batch_size(cfg):
    size = cfg.SOLVER.TARGET_IMS_PER_BATCH
    return cfg.SOLVER.IMS_PER_BATCH if size == -1 else size


def check_same_classes(cfg):
    """Source and target datasets must name the same classes, in the same order."""
    reference_name = cfg.DATASETS.TRAIN[0]
    reference = MetadataCatalog.get(reference_name).get("thing_classes")
    for name in list(cfg.DATASETS.TRAIN[1:]) + list(cfg.DATASETS.TARGET_TRAIN):
        classes = MetadataCatalog.get(name).get("thing_classes")
        if classes is not None and reference is not None and list(classes) != list(reference):
            raise ValueError(f"dataset {name!r} has classes {list(classes)}, but {reference_name!r}"
                             f" has {list(reference)}: source and target must share one class list")


def build_adaptation_train_loader(cfg):
    """A :class:`DomainPairLoader` over DATASETS.TRAIN (labeled, SOLVER.IMS_PER_BATCH images per
    step) and DATASETS.TARGET_TRAIN (annotations dropped, SOLVER.TARGET_IMS_PER_BATCH images)."""
    check_same_classes(cfg)
    source = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    for d in source:
        d["domain"] = SOURCE
    # Keep target images without objects: unlabeled data has no annotations to filter by.
    target = unlabeled(get_detection_dataset_dicts(cfg.DATASETS.TARGET_TRAIN, filter_empty=False))
    logger.info(f"Adaptation data: {len(source)} source images, {len(target)} target images")
    mapper = DatasetMapper(cfg, is_train=True)
    source_loader = build_detection_train_loader(cfg, mapper=mapper, dataset=source)
    target_loader = build_detection_train_loader(
        dataset=target, mapper=mapper, total_batch_size=target_batch_size(cfg),
        aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        num_workers=cfg.DATALOADER.NUM_WORKERS)
    return DomainPairLoader(source_loader, target_loader)
