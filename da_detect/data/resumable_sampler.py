"""A training batch sampler whose stream is a function of its seed alone, so training resumed at
step k sees exactly the batches an uninterrupted run sees from step k on."""
from collections import defaultdict

import torch
from torch.utils.data import Sampler

from detectron2.utils import comm


class ResumableBatchSampler(Sampler):
    """This process's share of each step's batch, from step ``start`` on, as
    ``[(dataset index, sample seed), ...]`` lists.

    The global stream is detectron2's: random permutations of the dataset, one after another, drawn
    from a generator seeded with ``seed``. With aspect-ratio grouping, landscape and portrait images
    fill separate buckets and a full bucket becomes the step's global batch (``batch_size`` images
    per process times the number of processes); process r takes the r-th slice of it, so processes
    never share an image. The sample seed (``seed``, position in the stream) fixes that image's
    random augmentation whichever data-loader worker maps it. Starting at step k replays the index
    stream only: no image is read.
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

    def __iter__(self):
        rank, size = comm.get_rank(), self.batch_size
        for step, batch in enumerate(self._global_batches()):
            if step >= self.start:
                yield batch[rank * size:(rank + 1) * size]

    def _global_batches(self):
        total = self.batch_size * comm.get_world_size()
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        buckets = defaultdict(list)
        position = 0
        while True:
            for index in torch.randperm(len(self.groups), generator=generator).tolist():
                bucket = buckets[self.groups[index]]
                bucket.append((index, (self.seed, position)))
                position += 1
                if len(bucket) == total:
                    yield bucket[:]
                    bucket.clear()
