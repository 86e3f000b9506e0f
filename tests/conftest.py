"""Shared fixtures. The synthetic datasets are generated into a cache under output/ (git-ignored),
set before da_detect is imported so that its registrations point there."""
import contextlib
import importlib.util
import io
import json
import logging
import os
import runpy
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ["DA_DETECT_DATASETS"] = str(REPO / "output" / "test-datasets")
os.environ["DA_DETECT_CACHE"] = str(REPO / "output" / "test-cache")
os.environ.setdefault("WANDB_MODE", "offline")

import da_detect  # noqa: E402,F401
import torch  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.utils import logger as detectron2_logger  # noqa: E402

from da_detect.config import load_config  # noqa: E402

SYNTHETIC_FPN = REPO / "configs" / "synthetic" / "Base-synthetic-R18-FPN.yaml"
SYNTHETIC_DA = REPO / "configs" / "synthetic" / "da_faster_rcnn_R18_FPN.yaml"
# Images of about 128x160 instead of the synthetic configs' 256x320: models build and run fast.
SMALL_IMAGES = ["INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "160",
                "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "160"]
# A short training run on small images: 12 steps (the learning rate falls after step 6), a
# checkpoint after steps 4, 8 and 12, no evaluation.
SHORT_RUN = [*SMALL_IMAGES, "SOLVER.WARMUP_ITERS", "2", "SOLVER.STEPS", "(6,)",
             "SOLVER.MAX_ITER", "12", "SOLVER.CHECKPOINT_PERIOD", "4",
             "DATALOADER.NUM_WORKERS", "1", "DATASETS.TEST", "()", "WANDB.ENABLED", "False"]


def run_script(script, *args, check=True, cwd=REPO):
    """Run a Python script of this repository (a path relative to it) in a subprocess, in folder
    ``cwd``; returns the CompletedProcess (text output)."""
    return _checked(script, subprocess.run([sys.executable, str(REPO / script), *map(str, args)],
                                           capture_output=True, text=True, cwd=cwd), check)


def _checked(script, result, check):
    """``result``, a CompletedProcess of ``script``; where ``check``, one that failed raises an
    AssertionError showing the ends of its output."""
    if check and result.returncode != 0:
        raise AssertionError(f"{script} failed ({result.returncode}):\n{result.stdout[-2000:]}"
                             f"\n{result.stderr[-4000:]}")
    return result


def load_script(path):
    """The repository's script at ``path`` (relative to it), imported as a module."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exit_of(script, *args, cwd=REPO):
    """Run the repository's script at ``script`` as its command line does, but in this process,
    where torch and detectron2 are already imported (a subprocess spends about 6 s importing
    them): its ``__main__`` block, with ``args`` as its command line, in folder ``cwd``. Returns
    what it exits with: SystemExit's code (a status, or the message ``sys.exit`` prints;
    argparse's errors: status 2, the message on stderr), None where it returns. The loggers
    that detectron2 sets up are put back as they were."""
    with _loggers_kept(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", [str(script), *map(str, args)])
        patch.chdir(cwd)
        try:
            runpy.run_path(str(REPO / script), run_name="__main__")
        except SystemExit as stopped:
            return stopped.code
    return None


@contextlib.contextmanager
def _loggers_kept():
    """Put back the loggers that detectron2's ``setup_logger`` sets up (their handlers, level
    and propagation) as they were. Its cache is emptied before and after, or a call with the
    arguments of an earlier one would add no handlers for its own streams."""
    loggers = [logging.getLogger(name) for name in ("detectron2", "fvcore", "da_detect")]
    kept = [(logger, logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    detectron2_logger.setup_logger.cache_clear()
    try:
        yield
    finally:
        for logger, handlers, level, propagate in kept:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        detectron2_logger.setup_logger.cache_clear()


def run_script_here(script, *args, check=True, cwd=REPO):
    """:func:`run_script`, but in this process, see :func:`exit_of`: a CompletedProcess with the
    exit status, stdout and stderr (where a ``sys.exit`` message goes, as Python writes it).
    For runs that end soon: a run in this process shares its memory and global state."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = exit_of(script, *args, cwd=cwd)
        if isinstance(code, str):
            print(code, file=sys.stderr)
    status = 0 if code is None else code if isinstance(code, int) else 1
    return _checked(script, subprocess.CompletedProcess([script, *args], status,
                                                        stdout.getvalue(), stderr.getvalue()),
                    check)


def metrics(output_dir):
    """The entries of ``output_dir``/metrics.json, one dict per line, in order."""
    lines = (Path(output_dir) / "metrics.json").read_text().splitlines()
    return [json.loads(line) for line in lines]


def run_train_net(*args, check=True, cwd=REPO):
    """Run tools/train_net.py, see :func:`run_script`."""
    return run_script("tools/train_net.py", *args, check=check, cwd=cwd)


def run_train_net_here(*args, check=True, cwd=REPO):
    """Run tools/train_net.py in this process, see :func:`run_script_here`."""
    return run_script_here("tools/train_net.py", *args, check=check, cwd=cwd)


def untrained_weights(path, config, **entries):
    """A checkpoint of an untrained model of ``config`` (a config file's path), with ``entries``
    beside its weights: what ``--eval-only`` needs to go on to its data."""
    torch.save({"model": build_model(load_config(str(config))).state_dict(), **entries}, path)
    return path


def first_images(count, folder, *splits):
    """The first ``count`` images of each built-in synthetic split in ``splits`` as a COCO-JSON
    domain ``<split>_first_<count>``, its JSON written into ``folder``: a few images to evaluate
    on, where a split's hundred would take most of a short test's time. Returns (the domains'
    names, the DATASETS.COCO_DOMAINS override registering them)."""
    names, domains = [], []
    for split in splits:
        DatasetCatalog.get(split)  # generated on first use
        metadata = MetadataCatalog.get(split)
        coco = json.loads(Path(metadata.json_file).read_text())
        images = coco["images"][:count]
        kept = {image["id"] for image in images}
        name = f"{split}_first_{count}"
        json_file = Path(folder) / f"{name}.json"
        json_file.write_text(json.dumps({
            **coco, "images": images,
            "annotations": [a for a in coco["annotations"] if a["image_id"] in kept]}))
        names.append(name)
        domains.append([name, str(json_file), metadata.image_root])
    return names, ["DATASETS.COCO_DOMAINS", repr(domains)]


def run_in_two_processes(script, *args, environment=(), timeout=300):
    """Run the repository's ``script`` with ``args`` in two processes started by torchrun on this
    machine, at a free port, one thread each; returns the CompletedProcess (text output).
    ``environment``: variables set over this process's, or removed where their value is None.
    Past ``timeout`` seconds the test fails, once torchrun has stopped its processes (each in a
    session of its own, with their data loader workers): torchrun stops them on SIGTERM, where
    SIGKILL would leave them running."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
               "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port),
               str(REPO / script), *map(str, args)]
    variables = {**os.environ, "OMP_NUM_THREADS": "1", **dict(environment)}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          cwd=REPO, env={name: value for name, value in variables.items()
                                         if value is not None}) as torchrun:
        try:
            stdout, stderr = torchrun.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            torchrun.terminate()
            try:  # torchrun gives its processes 30 s after SIGTERM, then SIGKILL
                stderr = torchrun.communicate(timeout=60)[1][-3000:]
            except subprocess.TimeoutExpired:  # a process it no longer knows holds the pipes
                torchrun.kill()
                stderr = "(its output is held by a process left running)"
            pytest.fail(f"{script} ran past {timeout} s:\n{stderr}")
    return subprocess.CompletedProcess(command, torchrun.returncode, stdout, stderr)


def error_line_of_two_processes(script, *args, environment=()):
    """Run the repository's ``script`` with ``args`` in two processes started by torchrun, which
    must fail with one ``error:`` line (an error raised in every process is reported by process 0
    alone); returns that line. ``environment``: as for :func:`run_in_two_processes`."""
    result = run_in_two_processes(script, *args, environment=environment)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error: " in line]
    assert len(errors) == 1 and result.stderr.count("error: ") == 1, result.stderr[-3000:]
    return errors[0]


def wandb_records(path):
    """The Record protobufs of a .wandb file: a 7-byte header (":W&B", magic, version), then a
    LevelDB-style log of 32 KiB blocks holding chunks with a 7-byte header (crc32, length, type:
    1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto.wandb_internal_pb2 import Record  # wandb only where a test reads it

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, records, pending, pos = 32768, [], b"", 7
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if kind == 0:  # end-of-block padding
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@pytest.fixture(scope="session")
def repo():
    return REPO
