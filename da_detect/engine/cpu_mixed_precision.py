"""Mixed precision on the CPU: ``SOLVER.AMP.ENABLED`` with ``MODEL.DEVICE cpu``.

detectron2 v0.6's AMPTrainer is CUDA's (float16 with a grad scaler, and it asserts CUDA). On a
CPU, autocast runs in bfloat16: convolutions and matrix products in bf16, on the AMX / AVX512-BF16
units of recent CPUs (an adaptation step about 1.6x faster on an Intel Xeon's AMX: README, Speed);
weights, gradients and optimizer state stay float32.
"""
import logging
import time

import torch
from detectron2.engine import SimpleTrainer


def cpu_has_native_bfloat16():
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX512-BF16 or AMX). Elsewhere bf16 is
    emulated and slower than float32."""
    try:
        return (torch.backends.mkldnn.is_available()
                and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an older torch that cannot tell
        return False


class CPUAMPTrainer(SimpleTrainer):
    """detectron2's SimpleTrainer with the forward pass under ``torch.autocast("cpu",
    torch.bfloat16)``. bf16 keeps float32's exponent range, so the loss is not scaled; backward
    and the optimizer step run outside autocast."""

    def __init__(self, model, data_loader, optimizer):
        super().__init__(model, data_loader, optimizer)
        if not cpu_has_native_bfloat16():
            logging.getLogger(__name__).warning(
                "SOLVER.AMP.ENABLED on a CPU without native bfloat16 (AVX512-BF16 or AMX): bf16 "
                "is emulated here and slower than float32; set SOLVER.AMP.ENABLED False")

    def run_step(self):
        assert self.model.training, "[CPUAMPTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss_dict = self.model(data)
        losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        losses.backward()
        self._write_metrics(loss_dict, data_time)
        self.optimizer.step()
