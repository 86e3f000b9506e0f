"""A training batch sampler whose stream is a function of its seed alone, so training resumed at
step k sees exactly the batches an uninterrupted run sees from step k on."""
import logging
from collections import Counter, defaultdict

import torch
from torch.utils.data import Sampler

from detectron2.utils import comm

logger = logging.getLogger(__name__)


class ResumableBatchSampler(Sampler):
    """This process's share of each step's batch, from step ``start`` on, as
    ``[(dataset index, sample seed), ...]`` lists.

    The global stream is detectron2's: random permutations of the dataset, one after another, drawn
    from a generator seeded with ``seed``. With aspect-ratio grouping, landscape and portrait images
    fill separate buckets and a full bucket becomes the step's global batch (``batch_size`` images
    per process times the number of processes); process r takes the r-th slice of it. An image
    drawn while it is already in its bucket (a bucket carried over from one permutation into the
    next) waits for the next bucket, so no step holds an image twice, in one process or across
    them, unless its group has fewer images than a step's batch. The sample seed (``seed``,
    position in the stream) fixes that image's random augmentation whichever data-loader worker
    maps it. Starting at step k replays the index stream only: no image is read.
    """

    def __init__(self, dataset_dicts, batch_size, seed, aspect_ratio_grouping=True, start=0):
        """
        Args:
            dataset_dicts (list[dict]): the dataset, for its size and image shapes.
            batch_size (int): images per step in this process.
            seed (int): the stream's seed, the same in every process.
            aspect_ratio_grouping (bool): batch landscape and portrait images separately.
            start (int): the first step to yield.
        """
        self.groups = [int(aspect_ratio_grouping and d.get("width", 0) > d.get("height", 0))
                       for d in dataset_dicts]
        self.batch_size = batch_size
        self.seed = seed
        self.start = start
        self.total = batch_size * comm.get_world_size()  # a step's global batch
        self.group_sizes = Counter(self.groups)
        for group, count in self.group_sizes.items():
            if count < self.total:
                which = ("portrait ", "landscape ")[group] if aspect_ratio_grouping else ""
                logger.warning(f"{count} {which}images, fewer than the {self.total} of a step: "
                               f"each of its steps repeats some of them")

    def __iter__(self):
        rank, size = comm.get_rank(), self.batch_size
        for step, batch in enumerate(self._global_batches()):
            if step >= self.start:
                yield batch[rank * size:(rank + 1) * size]

    def _global_batches(self):
        total = self.total
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        buckets = defaultdict(list)
        waiting = defaultdict(list)  # drawn while in their bucket: first into the next one
        position = 0
        while True:
            for index in torch.randperm(len(self.groups), generator=generator).tolist():
                group = self.groups[index]
                bucket = buckets[group]
                if self.group_sizes[group] >= total and any(i == index for i, _ in bucket):
                    waiting[group].append(index)
                    continue
                bucket.append((index, (self.seed, position)))
                position += 1
                if len(bucket) == total:
                    yield bucket[:]
                    bucket[:] = [(i, (self.seed, position + k))
                                 for k, i in enumerate(waiting[group])]
                    position += len(waiting[group])
                    waiting[group].clear()
