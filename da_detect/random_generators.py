"""The global random generators: torch's (CPU), numpy's and Python's. Their states, in a form a
checkpoint can hold, and a block that leaves them as it found them."""
import random
from contextlib import contextmanager

import numpy as np
import torch


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
    """Run the block, then put the three generators back as they were. So an evaluation during
    training (its data loader draws from torch's) leaves the training's draws as they would be
    without it, and a run resumed from a checkpoint taken before that evaluation goes on as the
    uninterrupted run does; and a training image's augmentation, seeded for that image, leaves
    the generators of the process that maps it as they were."""
    state = random_states()
    try:
        yield
    finally:
        set_random_states(state)
