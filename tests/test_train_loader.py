"""The training data stream: which images each step gets, from the first step or a later one."""
from itertools import islice

from conftest import SYNTHETIC_DA
from da_detect.config import load_config
from da_detect.data.train_loader import build_train_loader
from da_detect.modeling.meta_arch import SOURCE, TARGET


def steps(opts, start=0, count=6):
    """[(domain, image_id), ...] of each of ``count`` steps from step ``start``."""
    cfg = load_config(str(SYNTHETIC_DA), ["DATALOADER.NUM_WORKERS", "0", *opts])
    loader = build_train_loader(cfg)
    loader.start_at(start)
    return [[(x["domain"], x["image_id"]) for x in batch] for batch in islice(loader, count)]


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
