"""The training data stream: which images each step gets, from the first step or a later one."""
import logging
import random
from itertools import islice
from unittest import mock

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.structures import BoxMode
from detectron2.utils import comm
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SYNTHETIC_DA
from da_detect.config import load_config
from da_detect.data.problems import DatasetError
from da_detect.data.registry import forget_dataset
from da_detect.data.resumable_sampler import ResumableBatchSampler
from da_detect.data.synthetic import CLASSES
from da_detect.data.train_loader import build_train_loader
from da_detect.modeling.meta_arch import SOURCE, TARGET


def mapped_steps(opts, start=0, count=6):
    """The mapped inputs of each of ``count`` steps from step ``start``."""
    cfg = load_config(str(SYNTHETIC_DA), ["DATALOADER.NUM_WORKERS", "0", *opts])
    loader = build_train_loader(cfg)
    loader.start_at(start)
    return list(islice(loader, count))


def steps(opts, start=0, count=6):
    """[(domain, image_id), ...] of each of ``count`` steps from step ``start``."""
    return [[(x["domain"], x["image_id"]) for x in batch]
            for batch in mapped_steps(opts, start, count)]


def test_steps_before_start_iter_read_no_target_image():
    adapting = steps([])
    later = steps(["MODEL.DA.START_ITER", "3"])
    assert all({domain for domain, _ in batch} == {SOURCE, TARGET} for batch in adapting)
    # Steps 0-2: the source batches alone; from step 3 on, every step as without START_ITER.
    assert later[:3] == [[x for x in batch if x[0] == SOURCE] for batch in adapting[:3]]
    assert later[3:] == adapting[3:]


def test_resuming_around_start_iter_replays_the_uninterrupted_steps():
    opts = ["MODEL.DA.START_ITER", "3"]
    uninterrupted = steps(opts, count=7)
    assert steps(opts, start=1) == uninterrupted[1:]
    assert steps(opts, start=5, count=2) == uninterrupted[5:]


def test_each_step_lists_its_source_batch_then_its_target_batch_of_its_own_size():
    # the source images first, then SOLVER.TARGET_IMS_PER_BATCH target images, more or fewer
    for source_size, target_size in ((2, 3), (2, 1)):
        opts = ["SOLVER.IMS_PER_BATCH", str(source_size),
                "SOLVER.TARGET_IMS_PER_BATCH", str(target_size)]
        expected = [SOURCE] * source_size + [TARGET] * target_size
        for batch in steps(opts, count=2):
            assert [domain for domain, _ in batch] == expected


def test_source_and_target_draw_their_own_streams_even_from_one_split():
    # one split on both sides, as a check of a set-up: streams of one seed would pair each
    # source image with itself; after a checkpoint's seed is loaded, too
    opts = ["DATASETS.TARGET_TRAIN", "('synthetic_clean_train',)",
            "DATALOADER.FILTER_EMPTY_ANNOTATIONS", "False", "DATALOADER.NUM_WORKERS", "0"]
    loader = build_train_loader(load_config(str(SYNTHETIC_DA), opts))
    for seed in (None, 7):
        if seed is not None:
            loader.load_state_dict({"seed": seed})
        ids = {SOURCE: [], TARGET: []}
        for batch in islice(loader, 3):
            for x in batch:
                ids[x["domain"]].append(x["image_id"])
        assert len(ids[SOURCE]) == len(ids[TARGET]) == 6
        assert ids[SOURCE] != ids[TARGET]


def test_target_images_reach_the_mapper_and_the_model_without_their_labels():
    # the synthetic target split is labeled; its labels stay out of the data stream
    mapper_inputs = []  # (domain, whether it has annotations) of every dict the mapper maps
    map_dict = DatasetMapper.__call__

    def record(mapper, dataset_dict):
        mapper_inputs.append((dataset_dict["domain"], "annotations" in dataset_dict))
        return map_dict(mapper, dataset_dict)

    with mock.patch.object(DatasetMapper, "__call__", autospec=True, side_effect=record):
        batches = mapped_steps([], count=2)
    assert set(mapper_inputs) == {(SOURCE, True), (TARGET, False)}
    for batch in batches:
        assert [("instances" in x) for x in batch] == [x["domain"] == SOURCE for x in batch]


def test_drawing_steps_in_the_training_process_leaves_its_random_generators_as_they_were():
    """With DATALOADER.NUM_WORKERS 0 the images are mapped in the training process itself: each
    is seeded for itself, and what training draws next is as without the step."""
    loader = iter(build_train_loader(load_config(str(SYNTHETIC_DA),
                                                 ["DATALOADER.NUM_WORKERS", "0"])))

    def draws(step):
        torch.manual_seed(0), np.random.seed(0), random.seed(0)
        if step:
            next(loader)
        return torch.rand(1).item(), np.random.rand(), random.random()

    assert draws(step=True) == draws(step=False)


@pytest.mark.parametrize("opts, message", [
    (["DATALOADER.SAMPLER_TRAIN", "RepeatFactorTrainingSampler"],
     "DATALOADER.SAMPLER_TRAIN = 'RepeatFactorTrainingSampler': only 'TrainingSampler' is "
     "supported"),
    (["DATASETS.TRAIN", "('no_images',)"], "DATASETS.TRAIN: dataset 'no_images' has no images"),
    (["DATASETS.TRAIN", "('crowds_only',)"],
     "DATASETS.TRAIN ['crowds_only']: no image has a non-crowd box to train on"),
])
def test_training_data_that_cannot_train_is_named(opts, message):
    for name, dicts in (("no_images", []), ("crowds_only", [{
            "file_name": "x.png", "image_id": 1, "height": 32, "width": 32, "annotations": [{
                "bbox": [1, 1, 9, 9], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0,
                "iscrowd": 1}]}])):
        forget_dataset(name)
        DatasetCatalog.register(name, lambda dicts=dicts: dicts)
        MetadataCatalog.get(name).set(thing_classes=list(CLASSES))
    with pytest.raises(DatasetError) as raised:
        build_train_loader(load_config(str(SYNTHETIC_DA), ["DATALOADER.NUM_WORKERS", "0", *opts]))
    assert str(raised.value) == message


@settings(max_examples=100, deadline=None, derandomize=True)
@given(landscape=st.integers(0, 40), portrait=st.integers(0, 40), world=st.integers(1, 3),
       per_process=st.integers(1, 4))
def test_no_step_holds_an_image_twice_in_one_process_or_across_them(landscape, portrait, world,
                                                                     per_process):
    dicts = [{"width": 4, "height": 3}] * landscape + [{"width": 3, "height": 4}] * portrait
    if not dicts:
        return
    shares = []  # each process's first 300 steps
    for rank in range(world):
        with mock.patch.object(comm, "get_rank", return_value=rank), \
                mock.patch.object(comm, "get_world_size", return_value=world):
            shares.append(list(islice(ResumableBatchSampler(dicts, per_process, seed=3), 300)))
    total = world * per_process
    for step in zip(*shares):
        images = [index for share in step for index, _ in share]
        orientations = {index >= landscape for index in images}
        assert len(images) == total and len(orientations) == 1
        group_size = portrait if images[0] >= landscape else landscape
        if group_size >= total:
            assert len(set(images)) == total
        assert len({sample_seed for share in step for _, sample_seed in share}) == total


def test_the_stream_starts_with_the_seeded_permutation_and_square_images_batch_with_portrait():
    # without grouping: the first step is the head of the seed's first permutation, each image
    # with its sample seed (the stream's seed, its place in the stream)
    dicts = [{"width": 4, "height": 3}] * 6
    first = next(iter(ResumableBatchSampler(dicts, 4, seed=5, aspect_ratio_grouping=False)))
    permutation = torch.randperm(6, generator=torch.Generator().manual_seed(5)).tolist()
    assert first == [(index, (5, k)) for k, index in enumerate(permutation[:4])]
    # as detectron2 groups them: landscape (width > height) apart, square with portrait
    dicts = [{"width": 4, "height": 3}] * 4 + [{"width": 3, "height": 3}] * 2 + [
        {"width": 3, "height": 4}] * 2
    for batch in islice(ResumableBatchSampler(dicts, 2, seed=1), 40):
        assert len({index < 4 for index, _ in batch}) == 1, batch


def test_a_group_of_fewer_images_than_a_step_is_named_in_a_warning(caplog):
    # 2 landscape images for steps of 3: each landscape step repeats one; 3 portrait ones fill it
    dicts = [{"width": 4, "height": 3}] * 2 + [{"width": 3, "height": 4}] * 3
    with caplog.at_level(logging.WARNING, logger="da_detect"):
        sampler = ResumableBatchSampler(dicts, 3, seed=0)
    assert [r.getMessage() for r in caplog.records] == [
        "2 landscape images, fewer than the 3 of a step: each of its steps repeats some of them"]
    for batch in islice(sampler, 8):
        indices = [index for index, _ in batch]
        assert len(set(indices)) == (2 if indices[0] < 2 else 3), batch
