"""Two CPU processes started by torchrun train together (gloo): synchronized, checkpoints written
once, and a resumed run goes on as the uninterrupted one."""
import json
import os
import shutil
import subprocess

import torch

from conftest import (REPO, SMALL_IMAGES, SYNTHETIC_DA, torchrun_two_processes,
                      untrained_weights)


def torchrun(output_dir, *opts):
    command = torchrun_two_processes(
        "tests/ddp_worker.py", SYNTHETIC_DA, *SMALL_IMAGES, "SOLVER.MAX_ITER", "8",
        "SOLVER.WARMUP_ITERS", "2", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.TARGET_IMS_PER_BATCH", "2",
        # 4 source-only steps, whose domain classifiers get no gradient, then 4 adapting
        "MODEL.DA.START_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "4", "DATASETS.TEST", "()",
        "DATALOADER.NUM_WORKERS", "0", "WANDB.ENABLED", "False", "OUTPUT_DIR", output_dir, *opts)
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]


def test_torchrun_two_cpu_processes(tmp_path):
    uninterrupted, resumed = tmp_path / "uninterrupted", tmp_path / "resumed"
    torchrun(uninterrupted)
    rank0 = torch.load(uninterrupted / "params_rank0.pt")
    rank1 = torch.load(uninterrupted / "params_rank1.pt")
    saved = torch.load(uninterrupted / "model_final.pth")["model"]
    assert rank0.keys() == rank1.keys() == saved.keys()
    for key in rank0:  # each rank saw other images: only synchronized gradients keep them equal
        assert torch.equal(rank0[key], rank1[key]), key
        assert torch.equal(rank0[key], saved[key]), key
    assert sorted(p.name for p in uninterrupted.glob("*.pth")) == [
        "model_0000003.pth", "model_0000007.pth", "model_final.pth"]
    assert (uninterrupted / "last_checkpoint").read_text() == "model_final.pth"

    # a run stopped after its checkpoint at step 3, resumed: each rank draws as it would have
    resumed.mkdir()
    shutil.copy(uninterrupted / "model_0000003.pth", resumed)
    (resumed / "last_checkpoint").write_text("model_0000003.pth")
    torchrun(resumed)
    assert (resumed / "model_0000003.pth").read_bytes() == (
        uninterrupted / "model_0000003.pth").read_bytes()  # it started after step 3
    for key, value in torch.load(resumed / "model_final.pth")["model"].items():
        assert torch.equal(value, saved[key]), key


def test_processes_that_would_not_load_the_same_checkpoint_stop_together(tmp_path):
    """Machines that share no storage: a --resume that would start the processes from different
    checkpoints, or weights that one process lacks, stop every process before training."""
    for rank in (0, 1):
        (tmp_path / f"process{rank}").mkdir()
    (tmp_path / "process0" / "last_checkpoint").write_text("model_0000003.pth")
    untrained_weights(tmp_path / "process1" / "ONLY_1.pth", SYNTHETIC_DA)
    command = torchrun_two_processes("tests/separate_folders_worker.py", tmp_path, SYNTHETIC_DA,
                                     "DATALOADER.NUM_WORKERS", "0", "WANDB.ENABLED", "False")
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    for rank in (0, 1):
        assert json.loads((tmp_path / f"process{rank}" / "outcome.json").read_text()) == {
            "resume=True": "the processes would not start from the same checkpoint: process 0: "
                           "loads ./model_0000003.pth (from its OUTPUT_DIR); process 1: loads "
                           "ONLY_1.pth (MODEL.WEIGHTS); --resume needs OUTPUT_DIR . to be one "
                           "folder that every machine shares",
            "resume=False": "process 0: ONLY_1.pth: no such checkpoint file"}, rank
