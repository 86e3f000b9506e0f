"""Data loader workers: forked from a forkserver where CPython has gh-112275, and gone once the
process that started them is, however it ended."""
import multiprocessing
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, SHORT_RUN, SMALL_IMAGES, SYNTHETIC_DA, run_train_net_here
from da_detect.data import worker_processes
from da_detect.data.worker_processes import (WorkerEndedError, batches, forks_can_deadlock,
                                             start_workers_safely)

# Takes a training step's batch with a worker per loader, says how it started its workers, then
# waits to be killed.
TRAINING_PROCESS = f"""
import multiprocessing, sys, time
from da_detect.config import load_config
from da_detect.data.train_loader import build_train_loader
cfg = load_config({str(SYNTHETIC_DA)!r}, ["DATALOADER.NUM_WORKERS", "1", *{SMALL_IMAGES!r}])
loader = build_train_loader(cfg)
batches = iter(loader)  # its workers live as long as it does
next(batches)
context = loader.loaders[0].multiprocessing_context or multiprocessing.get_context()
print(context.get_start_method(), flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("version, affected", [
    ((3, 11, 7), True), ((3, 11, 10), False), ((3, 10, 14), True), ((3, 10, 15), False),
    ((3, 9, 0), True), ((3, 12, 0), False), ((3, 13, 5), False), ((4, 0, 0), False)])
def test_the_cpython_versions_whose_forks_can_deadlock(version, affected):
    assert forks_can_deadlock(version) == affected


class WorkerMarks(torch.utils.data.Dataset):
    """Two items, each the mark that :func:`mark_worker` left in the worker that loads it."""

    def __len__(self):
        return 2

    def __getitem__(self, index):
        return os.environ.get("DA_DETECT_TEST_WORKER_MARK")


def mark_worker(worker_id):
    os.environ["DA_DETECT_TEST_WORKER_MARK"] = f"worker {worker_id}"


def test_a_loaders_own_worker_init_fn_still_runs():
    loader = start_workers_safely(torch.utils.data.DataLoader(
        WorkerMarks(), batch_size=None, num_workers=1, worker_init_fn=mark_worker))
    assert list(loader) == ["worker 0", "worker 0"]


def process_table():
    """{pid: (parent pid, state, start time)} of every process (Linux: read from /proc)."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended while being read
            continue
        table[int(stat.parent.name)] = (int(fields[1]), fields[0], fields[19])
    return table


def descendants(pid):
    """{pid: start time} of every process below ``pid``."""
    table = process_table()
    below, stack = {}, [pid]
    while stack:
        parent = stack.pop()
        for child, (ppid, _, started) in table.items():
            if ppid == parent:
                below[child] = started
                stack.append(child)
    return below


def still_running(processes):
    """The pids of ``processes`` ({pid: start time}) that run on (not zombies, nor their pids
    taken by others since)."""
    table = process_table()
    return [pid for pid, started in processes.items()
            if pid in table and table[pid][1] != "Z" and table[pid][2] == started]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_end_with_a_killed_training_process():
    process = subprocess.Popen([sys.executable, "-c", TRAINING_PROCESS], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert select.select([process.stdout], [], [], 300)[0], "no batch within 300 s"
        default = multiprocessing.get_all_start_methods()[0]
        assert process.stdout.readline().strip() == (
            "forkserver" if default == "fork" and forks_can_deadlock() else default)
        below = descendants(process.pid)
        assert len(below) >= 2  # a worker for the source loader, one for the target loader
    finally:
        process.kill()
        process.wait()
    deadline = time.monotonic() + 30
    while still_running(below) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = still_running(below)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "processes left running by a killed training process"


def exit_with_status_3(*_):
    os._exit(3)


def kill_with_sigkill(*_):
    os.kill(os.getpid(), signal.SIGKILL)  # what the system's out-of-memory killer sends


class EndsItsWorker(torch.utils.data.Dataset):
    """One item, whose loading ends the worker that loads it with ``end()``."""

    def __init__(self, end):
        self.end = end

    def __len__(self):
        return 1

    def __getitem__(self, index):
        self.end()


@pytest.mark.parametrize("end, how", [
    (exit_with_status_3, "exited with status 3"),
    (kill_with_sigkill, "was killed by SIGKILL, as the system kills a process when memory runs "
                        "out: fewer DATALOADER.NUM_WORKERS, or fewer images per step, use less")])
def test_a_worker_that_ends_while_it_reads_is_named_with_how_it_ended(end, how):
    loader = start_workers_safely(torch.utils.data.DataLoader(
        EndsItsWorker(end), batch_size=None, num_workers=1))
    with pytest.raises(WorkerEndedError) as ended:
        list(batches(loader))
    pid = int(str(ended.value).split("(pid ")[1].split(")")[0])
    assert pid != os.getpid() and str(ended.value) == f"a data loader worker (pid {pid}) {how}"


class RaisesInItsWorker(torch.utils.data.Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, index):
        raise RuntimeError("a mapper's own error")


def test_an_error_raised_in_a_worker_that_goes_on_is_raised_as_it_is():
    loader = start_workers_safely(torch.utils.data.DataLoader(
        RaisesInItsWorker(), batch_size=None, num_workers=1))
    with pytest.raises(RuntimeError, match="a mapper's own error") as raised:
        list(batches(loader))
    assert not isinstance(raised.value, WorkerEndedError)


@pytest.mark.parametrize("gone", [ProcessLookupError, PermissionError])
def test_a_worker_exits_once_the_pid_it_watches_is_gone_or_another_users(monkeypatch, gone):
    def kill(pid, signal_number):
        raise gone()

    def exit_(status):
        raise SystemExit(status)

    monkeypatch.setattr(worker_processes.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(worker_processes.os, "kill", kill)
    monkeypatch.setattr(worker_processes.os, "_exit", exit_)
    with pytest.raises(SystemExit):
        worker_processes._exit_once_ended(12345)


def killing_mapper(cfg, role):
    """A ``train_mapper`` whose mapper kills the worker process that maps an image."""
    return kill_with_sigkill


def test_a_worker_killed_in_training_stops_train_net_with_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setattr("da_detect.data.train_loader.train_mapper", killing_mapper)
    result = run_train_net_here("--config-file", SYNTHETIC_DA, *SHORT_RUN,  # one worker a loader
                                "OUTPUT_DIR", tmp_path, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: a data loader worker (pid ")
    assert last_line.endswith(") was killed by SIGKILL, as the system kills a process when "
                              "memory runs out: fewer DATALOADER.NUM_WORKERS, or fewer images "
                              "per step, use less; the checkpoints saved before it are intact "
                              "(--resume goes on from the last)")
