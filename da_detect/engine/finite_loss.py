"""The NaN/Inf guard: training stops before a non-finite loss can reach the weights."""
import math

from detectron2.engine import AMPTrainer, SimpleTrainer

from ..every_process import raise_for_problems
from .cpu_mixed_precision import CPUAMPTrainer


class NonFiniteLossError(FloatingPointError):
    """Training diverged: a loss term became NaN or infinite (the message names the iteration
    and the terms), or detectron2's own check found NaN or Inf in the RPN's boxes or scores."""


class FiniteLossCheck:
    """Before the optimizer step, checks every loss term of every process; on NaN or Inf raises
    :class:`NonFiniteLossError` naming the iteration and the bad terms (and, with several
    processes, whose they are) in every process, so none is left waiting for the others. The step
    is not taken, and nothing saved before is touched."""

    def run_step(self):
        """detectron2's step; its own divergence check (a ``FloatingPointError`` raised in the
        forward pass, before any loss) becomes a :class:`NonFiniteLossError` naming the
        iteration: in the process whose proposals diverged alone, where there are several."""
        try:
            super().run_step()
        except FloatingPointError as e:
            if isinstance(e, NonFiniteLossError):
                raise
            raise NonFiniteLossError(f"iteration {self.iter}: {e} (the weights were not updated "
                                     f"with it)") from e

    def _write_metrics(self, loss_dict, data_time, prefix=""):
        values = {name: loss.detach().item() for name, loss in loss_dict.items()}
        bad = ", ".join(f"{name}={value}" for name, value in sorted(values.items())
                        if not math.isfinite(value))
        raise_for_problems(bad or None, NonFiniteLossError,
                           lambda terms: f"iteration {self.iter}: loss became non-finite: "
                                         f"{terms} (the weights were not updated with it)")
        super()._write_metrics(loss_dict, data_time, prefix)


class FiniteLossTrainer(FiniteLossCheck, SimpleTrainer):
    """detectron2's SimpleTrainer with the NaN/Inf guard."""


class FiniteLossAMPTrainer(FiniteLossCheck, AMPTrainer):
    """detectron2's AMPTrainer (mixed precision on GPU) with the NaN/Inf guard."""


class FiniteLossCPUAMPTrainer(FiniteLossCheck, CPUAMPTrainer):
    """:class:`CPUAMPTrainer` (bfloat16 mixed precision on CPU) with the NaN/Inf guard."""
