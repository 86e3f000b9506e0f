"""Shared fixtures. The synthetic datasets are generated into a cache under output/ (git-ignored),
set before da_detect is imported so that its registrations point there."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ["DA_DETECT_DATASETS"] = str(REPO / "output" / "test-datasets")
os.environ["DA_DETECT_CACHE"] = str(REPO / "output" / "test-cache")
os.environ.setdefault("WANDB_MODE", "offline")

import da_detect  # noqa: E402,F401

SYNTHETIC_FPN = REPO / "configs" / "synthetic" / "Base-synthetic-R18-FPN.yaml"
SYNTHETIC_DA = REPO / "configs" / "synthetic" / "da_faster_rcnn_R18_FPN.yaml"


def run_train_net(*args, check=True):
    """Run tools/train_net.py in a subprocess; returns the CompletedProcess (text output)."""
    result = subprocess.run([sys.executable, str(REPO / "tools" / "train_net.py"), *map(str, args)],
                            capture_output=True, text=True, cwd=REPO)
    if check and result.returncode != 0:
        raise AssertionError(f"train_net failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="session")
def repo():
    return REPO
