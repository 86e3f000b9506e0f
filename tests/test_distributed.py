"""Two CPU processes started by torchrun train together (gloo): synchronized, one checkpoint."""
import os
import socket
import subprocess
import sys

import torch

from conftest import REPO, SYNTHETIC_DA


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_cpu_processes(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
               "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), str(REPO / "tests" / "ddp_worker.py"),
               str(SYNTHETIC_DA), "SOLVER.MAX_ITER", "8", "SOLVER.WARMUP_ITERS", "2",
               "SOLVER.IMS_PER_BATCH", "2", "SOLVER.TARGET_IMS_PER_BATCH", "2",
               # 4 source-only steps, whose domain classifiers get no gradient, then 4 adapting
               "MODEL.DA.START_ITER", "4",
               "SOLVER.CHECKPOINT_PERIOD", "100", "DATASETS.TEST", "()",
               "DATALOADER.NUM_WORKERS", "0", "WANDB.ENABLED", "False", "OUTPUT_DIR", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    rank0 = torch.load(tmp_path / "params_rank0.pt")
    rank1 = torch.load(tmp_path / "params_rank1.pt")
    saved = torch.load(tmp_path / "model_final.pth")["model"]
    assert rank0.keys() == rank1.keys() == saved.keys()
    for key in rank0:  # each rank saw other images: only synchronized gradients keep them equal
        assert torch.equal(rank0[key], rank1[key]), key
        assert torch.equal(rank0[key], saved[key]), key
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["model_final.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
