"""The training data: each step, a labeled source batch and, when adapting, an unlabeled target
batch, drawn so that a resumed run replays the uninterrupted run's batches exactly."""
import logging
import random

import numpy as np
import torch
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data.build import (
    filter_images_with_only_crowd_annotations,
    print_instances_class_histogram,
    trivial_batch_collator,
)
from detectron2.data.common import DatasetFromList
from detectron2.utils import comm

from ..modeling.meta_arch import SOURCE, TARGET
from ..random_generators import random_states_kept
from .albumentations_augmentation import build_albumentations
from .classes import check_same_classes, require_labeled
from .images import checked_in_every_process, map_or_bad_image
from .problems import DatasetError
from .resumable_sampler import ResumableBatchSampler
from .worker_processes import batches, start_workers_safely

logger = logging.getLogger(__name__)


class SeededMapDataset(torch.utils.data.Dataset):
    """Maps ``(index, sample seed)`` to ``mapper(dataset[index])`` with the global random
    generators (numpy's and Python's, which detectron2's and albumentations' augmentations draw
    from, and torch's on the CPU) seeded by the sample seed and put back afterwards; an image
    that cannot be used maps to a :class:`BadImage`."""

    def __init__(self, dataset_dicts, mapper):
        self.dataset = DatasetFromList(dataset_dicts, copy=False)
        self.mapper = mapper

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index_and_seed):
        index, seed = index_and_seed
        sample_seed = int(np.random.SeedSequence(seed).generate_state(1)[0])
        with random_states_kept():
            np.random.seed(sample_seed)
            random.seed(sample_seed)
            torch.default_generator.manual_seed(sample_seed)
            return map_or_bad_image(self.mapper, self.dataset[index])


class TrainLoader:
    """Iterates over training steps: the concatenated batches of its data loaders (source first).

    The target loaders join at step ``target_from`` (MODEL.DA.START_ITER): the steps before it,
    which the model trains on source images alone, read no target image. Each loader's batch k
    goes to step k, whatever step its first batch is.

    A step with an image that cannot be used, in any process's share of it, raises one
    :class:`DatasetError` naming it in every process (:func:`checked_in_every_process`). (So,
    with several processes, the time a step waits for its data, detectron2's ``data_time``, also
    counts the wait for the slowest process to reach the step: the wait the gradient exchange
    would otherwise count.) Its state (the data seed) is checkpointed; :meth:`start_at` makes the
    next iteration begin at a given step.
    """

    def __init__(self, loaders, seed, target_from=0):
        self.loaders = loaders
        self.seed = seed
        self.target_from = target_from
        self.start_at(0)

    def __iter__(self):
        source, *targets = self.loaders
        source_batches = batches(source)
        # the target loaders (and their workers) start only once these steps are done
        for _ in range(source.batch_sampler.start, self.target_from):
            yield checked_in_every_process(next(source_batches))
        for step in zip(source_batches, *map(batches, targets)):
            yield checked_in_every_process([x for batch in step for x in batch])

    def start_at(self, step):
        source, *targets = self.loaders
        source.batch_sampler.start = step
        for loader in targets:
            loader.batch_sampler.start = max(step, self.target_from)

    def state_dict(self):
        return {"seed": self.seed}

    def load_state_dict(self, state):
        self.seed = state["seed"]
        for offset, loader in enumerate(self.loaders):
            loader.batch_sampler.seed = self.seed + offset


def unlabeled(dataset_dicts):
    """Copies of the dicts without their annotations, marked as target: no label can leak."""
    return [{k: v for k, v in d.items() if k != "annotations"} | {"domain": TARGET}
            for d in dataset_dicts]


def target_batch_size(cfg):
    size = cfg.SOLVER.TARGET_IMS_PER_BATCH
    return cfg.SOLVER.IMS_PER_BATCH if size == -1 else size


def load_training_dicts(names, key):
    """The dataset dicts of every split in ``names`` (config key ``key``); an empty one is an
    error naming it."""
    dicts = []
    for name in names:
        split = DatasetCatalog.get(name)
        if not split:
            raise DatasetError(f"{key}: dataset {name!r} has no images")
        dicts.extend(split)
    return dicts


def source_dicts(cfg):
    dicts = load_training_dicts(cfg.DATASETS.TRAIN, "DATASETS.TRAIN")
    if cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS:
        dicts = filter_images_with_only_crowd_annotations(dicts)
        if not dicts:
            raise DatasetError(f"DATASETS.TRAIN {list(cfg.DATASETS.TRAIN)}: no image has a "
                               f"non-crowd box to train on")
    classes = MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).get("thing_classes")
    if classes:
        print_instances_class_histogram(dicts, classes)
    for d in dicts:
        d["domain"] = SOURCE
    return dicts


def train_mapper(cfg, role):
    """detectron2's training DatasetMapper, followed by the albumentations of ``role``."""
    kwargs = DatasetMapper.from_config(cfg, is_train=True)
    albumentations = build_albumentations(cfg, role)
    if albumentations:
        kwargs["augmentations"] = kwargs["augmentations"] + [albumentations]
    return DatasetMapper(**kwargs)


def build_train_loader(cfg):
    """A :class:`TrainLoader` over DATASETS.TRAIN (labeled, SOLVER.IMS_PER_BATCH images per step
    over all processes) and, when DATASETS.TARGET_TRAIN is set, over it too (annotations dropped,
    SOLVER.TARGET_IMS_PER_BATCH images per step). Images without objects are kept on the target
    side: unlabeled data has no annotations to filter by."""
    # first: every process reaches this collective, whichever dataset it cannot load below
    seed = cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        raise DatasetError(f"DATALOADER.SAMPLER_TRAIN = {cfg.DATALOADER.SAMPLER_TRAIN!r}: "
                           f"only 'TrainingSampler' is supported")
    require_labeled(cfg.DATASETS.TRAIN, "DATASETS.TRAIN")
    require_labeled(cfg.DATASETS.TEST, "DATASETS.TEST")  # found now, not after training
    check_same_classes(cfg, [*cfg.DATASETS.TRAIN[1:], *cfg.DATASETS.TARGET_TRAIN,
                             *cfg.DATASETS.TEST])
    datasets = [(source_dicts(cfg), cfg.SOLVER.IMS_PER_BATCH, train_mapper(cfg, "SOURCE"))]
    if cfg.INPUT.ALBUMENTATIONS.TARGET and not cfg.DATASETS.TARGET_TRAIN:
        logger.warning("INPUT.ALBUMENTATIONS.TARGET is set, but DATASETS.TARGET_TRAIN is empty: "
                       "no target image to apply it to")
    if cfg.DATASETS.TARGET_TRAIN:
        target = unlabeled(load_training_dicts(cfg.DATASETS.TARGET_TRAIN, "DATASETS.TARGET_TRAIN"))
        datasets.append((target, target_batch_size(cfg), train_mapper(cfg, "TARGET")))
    logger.info("Training data: " + ", ".join(
        f"{len(dicts)} {role} images, {size} per step"
        for role, (dicts, size, _) in zip(("source", "target"), datasets)))
    world = comm.get_world_size()
    loaders = []
    for offset, (dicts, total_batch_size, mapper) in enumerate(datasets):
        if total_batch_size % world:
            raise DatasetError(f"{total_batch_size} images per step cannot be split evenly "
                               f"over {world} processes")
        sampler = ResumableBatchSampler(dicts, total_batch_size // world, seed + offset,
                                        cfg.DATALOADER.ASPECT_RATIO_GROUPING)
        loaders.append(start_workers_safely(torch.utils.data.DataLoader(
            SeededMapDataset(dicts, mapper), batch_sampler=sampler,
            num_workers=cfg.DATALOADER.NUM_WORKERS, collate_fn=trivial_batch_collator,
            # Its own generator: making workers draws nothing from torch's global one, which
            # training's checkpoints restore.
            generator=torch.Generator().manual_seed(seed + offset))))
    return TrainLoader(loaders, seed, target_from=cfg.MODEL.DA.START_ITER)
