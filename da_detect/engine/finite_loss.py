"""The NaN/Inf guard: training stops before a non-finite loss can reach the weights."""
import math

from detectron2.engine import AMPTrainer, SimpleTrainer
from detectron2.utils import comm

from .cpu_mixed_precision import CPUAMPTrainer


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; the message names the iteration and the terms."""


class FiniteLossCheck:
    """Before the optimizer step, checks every loss term of every process; on NaN or Inf raises
    :class:`NonFiniteLossError` naming the iteration and the bad terms (and, with several
    processes, whose they are) in every process, so none is left waiting for the others. The step
    is not taken, and nothing saved before is touched."""

    def _write_metrics(self, loss_dict, data_time, prefix=""):
        values = {name: loss.detach().item() for name, loss in loss_dict.items()}
        bad = {name: value for name, value in values.items() if not math.isfinite(value)}
        bad_by_rank = comm.all_gather(bad) if comm.get_world_size() > 1 else [bad]
        if any(bad_by_rank):
            named = {rank: ", ".join(f"{name}={value}" for name, value in sorted(its.items()))
                     for rank, its in enumerate(bad_by_rank) if its}
            terms = "; ".join(f"process {rank}: {text}" if len(bad_by_rank) > 1 else text
                              for rank, text in named.items())
            raise NonFiniteLossError(f"iteration {self.iter}: loss became non-finite: {terms} "
                                     f"(the weights were not updated with it)")
        super()._write_metrics(loss_dict, data_time, prefix)


class FiniteLossTrainer(FiniteLossCheck, SimpleTrainer):
    """detectron2's SimpleTrainer with the NaN/Inf guard."""


class FiniteLossAMPTrainer(FiniteLossCheck, AMPTrainer):
    """detectron2's AMPTrainer (mixed precision on GPU) with the NaN/Inf guard."""


class FiniteLossCPUAMPTrainer(FiniteLossCheck, CPUAMPTrainer):
    """:class:`CPUAMPTrainer` (bfloat16 mixed precision on CPU) with the NaN/Inf guard."""
