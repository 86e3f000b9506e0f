"""Mixed precision on the CPU (SOLVER.AMP.ENABLED with MODEL.DEVICE cpu): the forward pass runs in
bfloat16, weights, gradients and checkpoints stay float32, the NaN/Inf guard stays on, and a CPU
without native bf16 gets a warning."""
import logging

import pytest
import torch
from torch import nn

from conftest import SYNTHETIC_DA
from da_detect.config import load_config
from da_detect.engine import DATrainer, cpu_mixed_precision
from da_detect.engine.cpu_mixed_precision import CPUAMPTrainer
from da_detect.engine.finite_loss import FiniteLossCheck


@pytest.mark.parametrize("amp, dtype", [(True, torch.bfloat16), (False, torch.float32)])
def test_cpu_amp_trains_in_bfloat16_with_float32_weights(tmp_path, amp, dtype):
    cfg = load_config(str(SYNTHETIC_DA), [
        "SOLVER.AMP.ENABLED", str(amp), "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "0",
        "DATALOADER.NUM_WORKERS", "0", "DATASETS.TEST", "()", "WANDB.ENABLED", "False",
        "OUTPUT_DIR", str(tmp_path)])
    trainer = DATrainer(cfg)
    trainer.resume_or_load(resume=False)
    assert isinstance(trainer._trainer, CPUAMPTrainer) == amp
    assert isinstance(trainer._trainer, FiniteLossCheck)
    model = trainer.model
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen.setdefault(name, output.dtype)
        return hook

    model.proposal_generator.rpn_head.conv.register_forward_hook(record("RPN conv"))
    model.instance_classifier.fc1.register_forward_hook(record("D_ins"))
    before = {k: v.clone() for k, v in model.state_dict().items()}

    trainer.train()

    assert seen == {"RPN conv": dtype, "D_ins": dtype}
    state = model.state_dict()
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}
    assert {p.grad.dtype for p in model.parameters() if p.grad is not None} == {torch.float32}
    for part in ("backbone.", "instance_classifier.", "image_classifiers."):
        assert any(not torch.equal(v, before[k]) for k, v in state.items() if k.startswith(part))
    saved = torch.load(tmp_path / "model_final.pth")["model"]
    assert all(v.dtype == torch.float32 for v in saved.values() if v.is_floating_point())


@pytest.mark.parametrize("native", [True, False])
def test_cpu_amp_warns_where_bfloat16_is_emulated(monkeypatch, caplog, native):
    monkeypatch.setattr(cpu_mixed_precision, "cpu_has_native_bfloat16", lambda: native)
    model = nn.Linear(2, 1)
    with caplog.at_level(logging.WARNING, logger=cpu_mixed_precision.__name__):
        CPUAMPTrainer(model, [], torch.optim.SGD(model.parameters(), lr=0.1))
    assert ("bf16 is emulated here and slower than float32" in caplog.text) != native
