"""Averaging the weights over the end of training (Polyak averaging, as in "Averaging Weights
Leads to Wider Optima and Better Generalization", Izmailov et al., 2018)."""
from detectron2.engine import HookBase
from torch.optim.swa_utils import AveragedModel

from .unwrap import unwrap_model


class WeightAveraging(HookBase):
    """Keeps the mean of the weights at steps ``MAX_ITER, MAX_ITER - period, ...`` down to
    ``start_iter`` (torch's :class:`AveragedModel`, buffers included); after the last step the
    model takes that mean, so the final checkpoint and evaluation use it.

    An adversarial game does not settle: the target accuracy of the weights at any one step
    swings by several points. The mean is saved with every checkpoint, so a resumed run
    averages the same weights as an uninterrupted one.
    """

    def __init__(self, start_iter, period):
        self.start_iter = start_iter
        self.period = period
        self._average = None
        self._restored = None

    def _model(self):
        return unwrap_model(self.trainer.model)

    def before_train(self):
        self._average = AveragedModel(self._model(), use_buffers=True)
        if self._restored is not None:
            self._average.load_state_dict(self._restored)
            self._restored = None

    def after_step(self):
        step = self.trainer.iter + 1  # steps taken
        if step >= self.start_iter and (self.trainer.max_iter - step) % self.period == 0:
            self._average.update_parameters(self._model())
        if step == self.trainer.max_iter:
            self._model().load_state_dict(self._average.module.state_dict())

    def state_dict(self):
        return self._average.state_dict() if self._average is not None else {}

    def load_state_dict(self, state):
        self._restored = state
