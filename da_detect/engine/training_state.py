"""What a checkpoint must hold, beyond weights, optimizer and schedule, for a resumed run to go on
exactly as an uninterrupted one: the random generators and the recent logged scalars."""
import random
from contextlib import contextmanager

import numpy as np
import torch
from detectron2.engine import HookBase
from detectron2.utils.events import HistoryBuffer


def random_states():
    """torch's (CPU), numpy's and Python's global random states, as tensors and plain values
    that a checkpoint can hold."""
    numpy_state = np.random.get_state()
    return {
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": {"keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
                      "pos": numpy_state[2], "has_gauss": numpy_state[3],
                      "gauss": numpy_state[4]},
        "python_rng": random.getstate(),
    }


def set_random_states(state):
    """Restore what :func:`random_states` returned."""
    torch.set_rng_state(state["torch_rng"])
    numpy_rng = state["numpy_rng"]
    np.random.set_state(("MT19937", numpy_rng["keys"].numpy().astype(np.uint32),
                         numpy_rng["pos"], numpy_rng["has_gauss"], numpy_rng["gauss"]))
    random.setstate(state["python_rng"])


@contextmanager
def random_states_kept():
    """Run the block, then put the random generators back as they were: an evaluation during
    training (its data loader draws from torch's generator) leaves the training's draws as they
    would be without it, so a run resumed from a checkpoint taken before that evaluation goes on
    as the uninterrupted run does."""
    state = random_states()
    try:
        yield
    finally:
        set_random_states(state)


class TrainingState(HookBase):
    """Saves, with each checkpoint, torch's, numpy's and Python's random states (RPN/ROI sampling,
    dropout) and the last ``window`` values of every logged scalar, so that the smoothed losses
    written after a resume are the ones an uninterrupted run writes. Restored before training.

    Random states are this process's: with several processes, each restores rank 0's.
    """

    def __init__(self, window=20):
        self.window = window
        self._restored = None

    def state_dict(self):
        storage = self.trainer.storage
        return {
            **random_states(),
            "history": {name: [(float(v), float(i)) for v, i in buffer.values()[-self.window:]]
                        for name, buffer in storage.histories().items()},
            "smoothing_hints": dict(storage.smoothing_hints()),
        }

    def load_state_dict(self, state):
        self._restored = state

    def before_train(self):
        state, self._restored = self._restored, None
        if state is None:
            return
        set_random_states(state)
        storage = self.trainer.storage
        for name, values in state["history"].items():
            buffer = storage.histories().setdefault(name, HistoryBuffer())
            for value, iteration in values:
                buffer.update(value, iteration)
            storage.latest()[name] = values[-1]
        storage.smoothing_hints().update(state["smoothing_hints"])
