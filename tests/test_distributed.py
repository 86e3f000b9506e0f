"""Two CPU processes started by torchrun train together (gloo): synchronized, checkpoints written
once, and a resumed run goes on as the uninterrupted one; a file that one machine lacks stops
both; processes on two machines each know their machine's own."""
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch
from PIL import Image

from conftest import (REPO, SMALL_IMAGES, SYNTHETIC_DA, error_line_of_two_processes,
                      run_in_two_processes, untrained_weights)


# One process of several machines joining the process group, as torchrun starts each (RANK,
# WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT); prints what detectron2's
# comm sees.
MACHINE_PROCESS = """
from da_detect.engine.launch import torchrun_process_group
from detectron2.utils import comm
with torchrun_process_group():
    print(comm.get_rank(), comm.get_local_rank(), comm.get_local_size(), flush=True)
"""


def test_each_of_two_machines_of_one_process_is_its_own_local_group():
    """As ``torchrun --nnodes 2 --nproc_per_node 1`` starts them: comm's local rank and size
    (each machine's own processes) are not the whole group's."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    machines = [subprocess.Popen(
        [sys.executable, "-c", MACHINE_PROCESS], stdout=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": "0",
             "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
             "OMP_NUM_THREADS": "1"}) for rank in (0, 1)]
    outputs = [machine.communicate(timeout=120)[0].split() for machine in machines]
    assert [machine.returncode for machine in machines] == [0, 0]
    assert outputs == [["0", "0", "1"], ["1", "0", "1"]]  # rank, local rank, local size


def torchrun(output_dir, *opts):
    result = run_in_two_processes(
        "tests/ddp_worker.py", SYNTHETIC_DA, *SMALL_IMAGES, "SOLVER.MAX_ITER", "8",
        "SOLVER.WARMUP_ITERS", "2", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.TARGET_IMS_PER_BATCH", "2",
        # 4 source-only steps, whose domain classifiers get no gradient, then 4 adapting
        "MODEL.DA.START_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "4", "DATASETS.TEST", "()",
        # one worker per loader, in processes that run gloo's threads (start_workers_safely)
        "DATALOADER.NUM_WORKERS", "1", "WANDB.ENABLED", "False", "OUTPUT_DIR", output_dir, *opts,
        timeout=600)
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


def separate_folders(root):
    """root/process0 and root/process1: the folders of two processes, as on two machines that
    share no storage (tests/separate_folders_train_net.py)."""
    folders = root / "process0", root / "process1"
    for folder in folders:
        folder.mkdir()
    return folders


def error_line_in_separate_folders(root, *args):
    """train_net.py on SYNTHETIC_DA with ``args`` (flags first), OUTPUT_DIR ".", in two processes
    each in its folder under ``root``: the one error line they stop with."""
    return error_line_of_two_processes(
        "tests/separate_folders_train_net.py", root, "--config-file", SYNTHETIC_DA, *args,
        "OUTPUT_DIR", ".", "DATALOADER.NUM_WORKERS", "0", "WANDB.ENABLED", "False")


@pytest.mark.parametrize("flags", [("--resume",), ("--resume", "--eval-only")])
def test_processes_that_would_not_resume_from_the_same_checkpoint_stop_together(tmp_path, flags):
    process0, process1 = separate_folders(tmp_path)
    (process0 / "last_checkpoint").write_text("model_0000003.pth")
    untrained_weights(process1 / "ONLY_1.pth", SYNTHETIC_DA)
    assert error_line_in_separate_folders(tmp_path, *flags, "MODEL.WEIGHTS", "ONLY_1.pth") == (
        "error: the processes would not load the same checkpoint: process 0: loads "
        "./model_0000003.pth (from its OUTPUT_DIR); process 1: loads ONLY_1.pth "
        "(MODEL.WEIGHTS); --resume needs OUTPUT_DIR . to be one folder that every machine shares")


@pytest.mark.parametrize("flags", [(), ("--eval-only",)])
def test_weights_that_one_machine_lacks_stop_every_process(tmp_path, flags):
    _, process1 = separate_folders(tmp_path)
    untrained_weights(process1 / "ONLY_1.pth", SYNTHETIC_DA)
    assert error_line_in_separate_folders(tmp_path, *flags, "MODEL.WEIGHTS", "ONLY_1.pth") == (
        "error: process 0: ONLY_1.pth: no such checkpoint file")


def test_data_that_one_machine_lacks_stops_every_process(tmp_path):
    """A COCO-JSON file, which the config's loading reads, and an image folder, which the
    training data's building reads."""
    process0, process1 = separate_folders(tmp_path)
    (process1 / "frames").mkdir()
    for i in range(2):
        Image.new("RGB", (80, 64)).save(process1 / "frames" / f"{i}.png")
    (process1 / "mine.json").write_text("{}")
    assert error_line_in_separate_folders(
        tmp_path, "DATASETS.COCO_DOMAINS", "[['mine', 'mine.json', 'frames']]") == (
        f"error: process 0: DATASETS.COCO_DOMAINS 'mine': no such file mine.json (mine.json: a "
        f"relative path, read from the folder you run in, {process0})")
    assert error_line_in_separate_folders(
        tmp_path, "DATASETS.IMAGE_FOLDER_DOMAINS", "[['frames', 'frames']]",
        "DATASETS.TARGET_TRAIN", "('frames',)",
        "SEED", "-1") == (  # a seed the processes draw together, before their data
        f"error: process 0: DATASETS.IMAGE_FOLDER_DOMAINS 'frames': expected the folder frames, "
        f"which does not exist (frames: a relative path, read from the folder you run in, "
        f"{process0})")
