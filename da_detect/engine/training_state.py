"""What a checkpoint must hold, beyond weights, optimizer and schedule, for a resumed run to go on
exactly as an uninterrupted one: the random generators and the recent logged scalars."""
import logging

from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.events import HistoryBuffer

from ..random_generators import random_states, set_random_states

WRITE_PERIOD = 20  # steps between the writes of detectron2's DefaultTrainer (its PeriodicWriter)


class TrainingState(HookBase):
    """Saves, with each checkpoint, every process's torch, numpy and Python random states (RPN/ROI
    sampling, dropout), the last ``window`` values of every logged scalar, and the logged values
    no writer has written yet, so that a resumed run draws and writes what an uninterrupted one
    does: the same smoothed losses, and no value written twice. Restored before training.

    Only rank 0 writes the checkpoint: the other processes' random states are gathered to it at
    each step the checkpointer saves after (every ``checkpoint_period`` steps and the last).
    """

    def __init__(self, checkpoint_period, window=20):
        self.checkpoint_period = checkpoint_period
        self.window = window
        self._random_states = None  # every rank's, at the last checkpoint step
        self._restored = None

    def after_step(self):  # before the checkpointer's (registered after this hook)
        if self._is_last_step() or (self.trainer.iter + 1) % self.checkpoint_period == 0:
            self._random_states = comm.all_gather(random_states())

    def state_dict(self):
        storage = self.trainer.storage
        written_through = self._written_through()
        return {
            "random_states": self._random_states or [random_states()],
            "history": {name: [(float(v), int(i)) for v, i in buffer.values()[-self.window:]]
                        for name, buffer in storage.histories().items()},
            "unwritten": {name: (float(v), int(i)) for name, (v, i) in storage.latest().items()
                          if i > written_through},
            "smoothing_hints": dict(storage.smoothing_hints()),
        }

    def load_state_dict(self, state):
        self._restored = state

    def before_train(self):
        state, self._restored = self._restored, None
        if state is None:
            return
        set_random_states(self._own_random_states(state))
        storage = self.trainer.storage
        for name, values in state["history"].items():
            buffer = storage.histories().setdefault(name, HistoryBuffer())
            for value, iteration in values:
                buffer.update(value, iteration)
        storage.latest().update(state.get("unwritten", {}))
        storage.smoothing_hints().update(state["smoothing_hints"])

    def _is_last_step(self):
        return self.trainer.iter >= self.trainer.max_iter - 1

    def _written_through(self):
        """The last step whose values detectron2's writers will have written once this step is
        done: DefaultTrainer's PeriodicWriter writes every WRITE_PERIOD steps and after the
        last."""
        if self._is_last_step():
            return self.trainer.iter
        return (self.trainer.iter + 1) // WRITE_PERIOD * WRITE_PERIOD - 1

    @staticmethod
    def _own_random_states(state):
        """This rank's random states from a checkpoint (an earlier da-detect's holds one
        process's, at the top level); rank 0's, with a warning, when the number of processes
        changed."""
        saved = state.get("random_states", [state])
        if len(saved) == comm.get_world_size():
            return saved[comm.get_rank()]
        logging.getLogger(__name__).warning(
            f"the checkpoint holds the random states of {len(saved)} processes, this run has "
            f"{comm.get_world_size()}: each restores rank 0's, and the random draws differ from "
            f"an uninterrupted run's")
        return saved[0]
