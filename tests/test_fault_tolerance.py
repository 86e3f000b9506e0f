"""Training that survives faults: resume after SIGKILL equals an uninterrupted run, atomic
checkpoints, the NaN/Inf guard, safe checkpoint loading, and clear errors for bad training data."""
import argparse
import itertools
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import MetadataCatalog
from detectron2.utils.env import seed_all_rng
from torch import nn

from conftest import (REPO, SHORT_RUN, SMALL_IMAGES, SYNTHETIC_DA, SYNTHETIC_FPN,
                      error_line_of_two_processes, first_images, metrics, run_in_two_processes,
                      run_script_here, run_train_net_here, untrained_weights)
from da_detect.atomic_file import atomic_open
from da_detect.checkpoint import CheckpointError, DACheckpointer
from da_detect.config import load_config
from da_detect.data.classes import check_same_classes
from da_detect.data.problems import DatasetError
from da_detect.engine import DATrainer
from da_detect.engine.finite_loss import NonFiniteLossError

UNTIMED = {"time", "data_time", "eta_seconds", "iteration"}


def logged(output_dir):
    """iteration -> the scalars last logged for it (a killed run may have logged it before)."""
    return {entry["iteration"]: {k: v for k, v in entry.items() if k not in UNTIMED}
            for entry in metrics(output_dir)}


def train_net_command(output_dir, *extra):
    return [sys.executable, str(REPO / "tools" / "train_net.py"), "--config-file",
            str(SYNTHETIC_DA), *extra, *SHORT_RUN, "OUTPUT_DIR", str(output_dir)]


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    uninterrupted, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    subprocess.run(train_net_command(uninterrupted), check=True, capture_output=True, cwd=REPO)

    process = subprocess.Popen(train_net_command(killed), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=REPO, start_new_session=True)
    tag, deadline = killed / "last_checkpoint", time.time() + 300
    while not (tag.exists() and tag.read_text() == "model_0000003.pth"):
        assert process.poll() is None and time.time() < deadline, "no checkpoint at iteration 3"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "model_final.pth").exists()

    result = subprocess.run(train_net_command(killed, "--resume"), capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Starting training from iteration 4" in (killed / "log.txt").read_text()

    expected = torch.load(uninterrupted / "model_final.pth")
    resumed = torch.load(killed / "model_final.pth")
    assert expected["iteration"] == resumed["iteration"] == 11
    for key, value in expected["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert logged(uninterrupted) == logged(killed)
    assert set(logged(killed)) == {11}
    assert {"loss_da_image", "loss_da_instance", "lr"} <= set(logged(killed)[11])


def test_ctrl_c_stops_training_with_one_line_naming_the_checkpoint_to_resume_from(tmp_path):
    process = subprocess.Popen(train_net_command(tmp_path), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, cwd=REPO,
                               start_new_session=True)
    tag, deadline = tmp_path / "last_checkpoint", time.time() + 300
    while not tag.exists():
        assert process.poll() is None and time.time() < deadline, "no checkpoint at iteration 3"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C signals the terminal's foreground group
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    assert re.fullmatch(r"error: interrupted \(Ctrl-C\); the checkpoints saved before it are "
                        r"intact \(--resume goes on from the last, model_00000(03|07)\.pth\)",
                        stderr.strip().splitlines()[-1])
    assert not (tmp_path / "model_final.pth").exists()


def test_evaluation_during_training_leaves_the_trained_weights_as_they_are(tmp_path):
    """Evaluation's data loader draws from torch's generator; without the generators put back,
    the steps after it sample other regions, and a run resumed from the checkpoint saved just
    before an evaluation would go on differently from the uninterrupted run."""
    (split,), domain = first_images(2, tmp_path, "synthetic_foggy_val")
    trained = {}
    for period in (0, 2):
        cfg = load_config(str(SYNTHETIC_DA), [
            "SOLVER.MAX_ITER", "3", "SOLVER.WARMUP_ITERS", "0", "DATALOADER.NUM_WORKERS", "0",
            *domain, "DATASETS.TEST", f"('{split}',)", "TEST.EVAL_PERIOD", str(period),
            "WANDB.ENABLED", "False", "OUTPUT_DIR", str(tmp_path / str(period))])
        seed_all_rng(cfg.SEED)
        trainer = DATrainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
        trained[period] = trainer.model.state_dict()
    assert (tmp_path / "2" / "inference" / split).is_dir()  # it did evaluate
    for key, value in trained[0].items():
        assert torch.equal(value, trained[2][key]), key


def test_a_save_cut_short_leaves_the_last_complete_checkpoint(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)
    checkpointer = DACheckpointer(model, str(tmp_path))
    checkpointer.save("model_final")
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)

    def save_cut_short(data, f):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # the process is stopped in the middle of the write

    monkeypatch.setattr(torch, "save", save_cut_short)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save("model_final")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_final.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    checkpointer.resume_or_load("", resume=True)
    for key, value in saved.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_a_last_checkpoint_tag_that_cannot_be_written_is_named(tmp_path):
    (tmp_path / "last_checkpoint").mkdir()
    with pytest.raises(CheckpointError) as raised:
        DACheckpointer(nn.Linear(3, 2), str(tmp_path)).save("model_final")
    assert str(raised.value) == (f"{tmp_path}/last_checkpoint: could not be written (Is a "
                                 f"directory); the checkpoints saved before it are intact")


def test_a_disk_filling_up_as_the_tag_is_written_leaves_the_earlier_tag(tmp_path, monkeypatch):
    """The disk fills up half-way through writing ``last_checkpoint``: the tag written before
    stays whole, so --resume still finds a complete checkpoint."""
    checkpointer = DACheckpointer(nn.Linear(3, 2), str(tmp_path))
    checkpointer.save("model_0000000")
    real_open = open

    class FillsUp:
        def __init__(self, file):
            self.file = file

        def write(self, text):
            self.file.write(text[:len(text) // 2])
            self.file.flush()
            raise OSError(28, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.file.__exit__(*exc)

    def filling_open(path, mode="r", *args, **kwargs):
        file = real_open(path, mode, *args, **kwargs)
        return FillsUp(file) if "last_checkpoint" in str(path) and "w" in mode else file

    monkeypatch.setattr("builtins.open", filling_open)
    with pytest.raises(CheckpointError, match="No space left on device"):
        checkpointer.save("model_0000001")
    monkeypatch.undo()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000000.pth"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "last_checkpoint", "model_0000000.pth", "model_0000001.pth"]


def test_a_checkpoint_that_cannot_be_written_gives_one_error_line(tmp_path):
    (tmp_path / "model_0000001.pth").mkdir()  # in the way of the second checkpoint
    result = run_train_net_here("--config-file", SYNTHETIC_FPN, "SOLVER.MAX_ITER", "3",
                                "SOLVER.CHECKPOINT_PERIOD", "1", "DATASETS.TEST", "()",
                                "DATALOADER.NUM_WORKERS", "0", "WANDB.ENABLED", "False",
                                "OUTPUT_DIR", tmp_path, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path}/model_0000001.pth: could not be written (Is a directory); the "
        f"checkpoints saved before it are intact")
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000000.pth"
    assert torch.load(tmp_path / "model_0000000.pth")["iteration"] == 0
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_write_that_keeps_the_earlier_file_keeps_it_only_when_the_new_one_is_whole(tmp_path):
    path = tmp_path / "results.md"
    path.write_text("earlier")
    with pytest.raises(RuntimeError):
        with atomic_open(path, keep=True) as f:
            f.write("half of the new")
            raise RuntimeError("the writer stops")
    assert [p.name for p in tmp_path.iterdir()] == ["results.md"]  # as it was
    assert path.read_text() == "earlier"
    with atomic_open(path, keep=True) as f:
        f.write("new")
    kept = [p for p in tmp_path.iterdir() if p != path]
    assert path.read_text() == "new" and [p.read_text() for p in kept] == ["earlier"]
    assert re.fullmatch(r"results\.\d{8}-\d{6}\.\d{9}\.md", kept[0].name)


def test_concurrent_writers_of_one_file_never_show_a_reader_part_of_one(tmp_path):
    path = tmp_path / "results.json"
    contents = [bytes([65 + i]) * 200_000 for i in range(4)]  # whole files: one letter each

    def write(content):
        for _ in range(20):
            with atomic_open(path, "wb", durable=False) as f:
                for start in range(0, len(content), 4096):
                    f.write(content[start:start + 4096])

    with ThreadPoolExecutor(len(contents) + 1) as pool:
        writers = [pool.submit(write, c) for c in contents]
        seen = set()
        while not all(w.done() for w in writers):
            if path.exists():
                seen.add(path.read_bytes())
        for w in writers:
            w.result()
    assert seen and seen <= set(contents) and path.read_bytes() in contents
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


@pytest.mark.parametrize("amp", [False, True])  # the CPU's mixed precision: its own step
def test_non_finite_loss_stops_before_the_weights_take_it(tmp_path, amp):
    cfg = load_config(str(SYNTHETIC_FPN), [
        "SOLVER.MAX_ITER", "8", "SOLVER.CHECKPOINT_PERIOD", "2", "DATALOADER.NUM_WORKERS", "0",
        "DATASETS.TEST", "()", "WANDB.ENABLED", "False", "SOLVER.AMP.ENABLED", str(amp),
        "OUTPUT_DIR", str(tmp_path)])
    trainer = DATrainer(cfg)
    trainer.resume_or_load(resume=False)
    model, forward, calls = trainer.model, trainer.model.forward, itertools.count()

    def forward_going_bad(batched_inputs):
        losses = forward(batched_inputs)
        if next(calls) == 4:
            losses["loss_box_reg"] = losses["loss_box_reg"] * float("nan")
            losses["loss_rpn_loc"] = losses["loss_rpn_loc"] + float("inf")
        return losses

    model.forward = forward_going_bad
    with pytest.raises(NonFiniteLossError,
                       match=r"iteration 4: .*loss_box_reg=nan, loss_rpn_loc=inf"):
        trainer.train()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000003.pth"
    assert not (tmp_path / "model_final.pth").exists()
    last_good = torch.load(tmp_path / "model_0000003.pth")["model"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, last_good[key]), key  # no step was taken with the bad loss


def test_a_non_finite_loss_in_one_process_stops_every_process_with_its_name(tmp_path):
    result = run_in_two_processes("tests/finite_loss_worker.py", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]  # each worker caught the error
    for rank in (0, 1):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == {
            "outcome": "iteration 2: loss became non-finite: process 1: loss_step=nan (the "
                       "weights were not updated with it)",
            "weight": pytest.approx(1 - 0.1 * (0 + 1)),  # the steps at 0 and 1 only
            "process_group_left": True}, rank


def test_an_error_every_process_raises_is_one_line_from_train_net(tmp_path):
    error = error_line_of_two_processes(
        "tools/train_net.py", "--config-file", SYNTHETIC_FPN, "MODEL.RPN.LOSS_WEIGHT", "1e309",
        "SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "2",
        # wandb (offline) on: process 0 closes its run after the error, before it reports it
        "DATASETS.TEST", "()", "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", tmp_path)
    # the same terms in both processes: named once, with no process
    assert error == ("error: iteration 0: loss became non-finite: loss_rpn_cls=inf, "
                     "loss_rpn_loc=inf (the weights were not updated with it); the checkpoints "
                     "saved before it are intact (--resume goes on from the last)")


def test_a_config_error_is_one_line_from_train_net_in_every_process():
    assert error_line_of_two_processes(
        "tools/train_net.py", "--config-file", SYNTHETIC_FPN, "SOLVER.MAX_ITER", "3",
        "--eval-only") == (
        "error: command-line override --eval-only: a flag among the KEY VALUE overrides (give it "
        "before them)")


def test_a_bad_image_in_one_process_s_share_of_a_step_stops_every_process(tmp_path):
    domain, bad = coco_split_with_bad_images(tmp_path / "coco")
    # each process draws 1 target image a step; at step 0 (SEED 1) process 0 draws the good
    # image 0 and process 1 the truncated image 3
    error = error_line_of_two_processes(
        "tools/train_net.py", "--config-file", SYNTHETIC_DA, *domain,
        "DATASETS.TARGET_TRAIN", "('with_bad',)", *SHORT_RUN, "DATALOADER.NUM_WORKERS", "0",
        "OUTPUT_DIR", tmp_path / "train")
    assert error.startswith(f"error: process 1: {bad[2]}: unreadable image ("), error
    assert "process 0" not in error and "check_dataset.py --read-images" in error
    assert not (tmp_path / "train" / "model_final.pth").exists()


def two_process_evaluation_error(domain, tmp_path):
    """The error line of an --eval-only run in two processes on the split 'with_bad' (its
    ``domain`` options) of :func:`coco_split_with_bad_images`, into tmp_path/eval."""
    return error_line_of_two_processes(
        "tools/train_net.py", "--config-file", SYNTHETIC_FPN, "--eval-only", *domain,
        "MODEL.WEIGHTS", untrained_weights(tmp_path / "w.pth", SYNTHETIC_FPN),
        "DATASETS.TEST", "('with_bad',)", "DATALOADER.NUM_WORKERS", "0",
        "WANDB.ENABLED", "False", "OUTPUT_DIR", tmp_path / "eval")


def test_a_bad_image_in_one_process_s_part_of_an_evaluation_stops_every_process(tmp_path):
    # process 0 evaluates images 0-2, process 1 images 3-5: the first images the processes check
    # together are 0 (good) and 3 (truncated)
    domain, bad = coco_split_with_bad_images(tmp_path / "coco")
    error = two_process_evaluation_error(domain, tmp_path)
    assert error.startswith(f"error: process 1: {bad[2]}: unreadable image ("), error
    assert "process 0" not in error
    assert not (tmp_path / "eval" / "results.json").exists()


def test_a_bad_image_past_the_end_of_the_shorter_part_stops_every_process(tmp_path):
    # 5 images: process 0 evaluates 3 (its third the empty file), process 1 evaluates 2 and
    # joins process 0's third check with none
    domain, bad = coco_split_with_bad_images(tmp_path / "coco", order=(0, 0, 1, 0, 0))
    error = two_process_evaluation_error(domain, tmp_path)
    assert error.startswith(f"error: process 0: {bad[0]}: unreadable image ("), error


def test_a_checkpoint_process_0_cannot_write_stops_every_process(tmp_path):
    (tmp_path / "model_0000001.pth").mkdir()  # in the way of the second checkpoint
    (val,), domain = first_images(4, tmp_path, "synthetic_clean_val")
    error = error_line_of_two_processes(
        "tools/train_net.py", "--config-file", SYNTHETIC_FPN, *SMALL_IMAGES, *domain,
        "SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.CHECKPOINT_PERIOD", "1",
        # step 0 is checkpointed, then evaluated, by every process in the same order
        "DATASETS.TEST", f"('{val}',)", "TEST.EVAL_PERIOD", "1",
        "DATALOADER.NUM_WORKERS", "0", "WANDB.ENABLED", "False", "OUTPUT_DIR", tmp_path)
    assert error == (f"error: process 0: {tmp_path}/model_0000001.pth: could not be written "
                     f"(Is a directory); the checkpoints saved before it are intact")
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000000.pth"
    assert list(json.loads((tmp_path / "results.json").read_text())) == [val]


def test_a_run_whose_last_step_fails_stops_without_its_final_evaluation(tmp_path):
    """detectron2 v0.6 runs the final evaluation after a failed last step too."""
    domain, bad = coco_split_with_bad_images(tmp_path / "coco")  # an evaluation would stop at 1
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model_final.pth").mkdir()  # in the way of the last step's checkpoint
    result = run_train_net_here("--config-file", SYNTHETIC_FPN, *domain, *SMALL_IMAGES,
                                "SOLVER.MAX_ITER", "2", "DATASETS.TEST", "('with_bad',)",
                                "DATALOADER.NUM_WORKERS", "0", "WANDB.ENABLED", "False",
                                "OUTPUT_DIR", tmp_path / "out", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path}/out/model_final.pth: could not be written (Is a directory); the "
        f"checkpoints saved before it are intact")


def test_detectron2s_own_divergence_check_gives_one_error_line(tmp_path):
    result = run_train_net_here("--config-file", SYNTHETIC_FPN, "SOLVER.BASE_LR", "1e8",
                                "SOLVER.WARMUP_ITERS", "0", "SOLVER.MAX_ITER", "3",
                                "SOLVER.CHECKPOINT_PERIOD", "1", "DATASETS.TEST", "()",
                                "DATALOADER.NUM_WORKERS", "0", "WANDB.ENABLED", "False",
                                "OUTPUT_DIR", tmp_path, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    iteration = re.fullmatch(
        r"error: iteration (\d+): Predicted boxes or scores contain Inf/NaN\. Training has "
        r"diverged\. \(the weights were not updated with it\); the checkpoints saved before it "
        r"are intact \(--resume goes on from the last\)", last_line)
    assert iteration, last_line
    assert (tmp_path / "last_checkpoint").read_text() == f"model_{int(iteration[1]) - 1:07d}.pth"


def test_checkpoints_load_without_unpickling_code(tmp_path):
    model = nn.Linear(3, 2)
    plain, unsafe, pkl = tmp_path / "plain.pth", tmp_path / "unsafe.pth", tmp_path / "zoo.pkl"
    torch.save({"model": model.state_dict(), "iteration": 3}, plain)
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(lr=0.1)}, unsafe)
    pkl.write_bytes(pickle.dumps({"model": {k: v.numpy() for k, v in model.state_dict().items()},
                                  "__author__": "someone"}))
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(plain.read_bytes()[:200])

    assert DACheckpointer(model).load(str(plain)) == {"iteration": 3}
    with pytest.raises(CheckpointError, match=f"{unsafe}: .*MODEL.ALLOW_UNSAFE_PICKLE"):
        DACheckpointer(model).load(str(unsafe))
    with pytest.raises(CheckpointError, match=f"{pkl}: .*MODEL.ALLOW_UNSAFE_PICKLE"):
        DACheckpointer(model).load(str(pkl))
    with pytest.raises(CheckpointError, match=f"{truncated}: not a readable checkpoint"):
        DACheckpointer(model).load(str(truncated))
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'missing.pth'}: no such checkpoint"):
        DACheckpointer(model).load(str(tmp_path / "missing.pth"))
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path}: no such checkpoint file (a "
                                                        f"folder)")):
        DACheckpointer(model).load(str(tmp_path))
    # a URL is detectron2's to fetch (its path manager), not a missing local file
    fetched = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DetectionCheckpointer, "load", lambda self, path, **_: fetched.append(path))
        DACheckpointer(model).load("https://example.com/model_final.pth")
    assert fetched == ["https://example.com/model_final.pth"]
    pyth = tmp_path / "pycls.pyth"  # pycls' format, which detectron2 loads by unpickling it
    pyth.write_bytes(pickle.dumps({"model_state": model.state_dict()}))
    with pytest.raises(CheckpointError, match=f"{pyth}: a .pyth checkpoint loads only by "
                                              f"unpickling it, .*MODEL.ALLOW_UNSAFE_PICKLE"):
        DACheckpointer(model).load(str(pyth))
    trusting = DACheckpointer(model, allow_unsafe_pickle=True)
    assert trusting.load(str(unsafe))["args"].lr == 0.1
    assert trusting.load(str(pkl)) == {"__author__": "someone"}
    arrays = tmp_path / "arrays.pth"  # weights as numpy arrays, as converters may save them
    torch.save({"model": {k: v.numpy() + 1 for k, v in model.state_dict().items()}}, arrays)
    expected = {k: v + 1 for k, v in model.state_dict().items()}
    trusting.load(str(arrays))
    for key, value in expected.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_files_that_are_no_checkpoint_are_named_as_such(tmp_path):
    model = nn.Linear(3, 2)
    text, noise, listed = tmp_path / "text.pth", tmp_path / "noise.pth", tmp_path / "list.pth"
    text.write_text("not a checkpoint\n")
    sentence = tmp_path / "sentence.pth"
    sentence.write_text("this is not a checkpoint")  # torch's unpickler: IndexError
    noise.write_bytes(bytes(range(256))[::-3] * 3)
    torch.save([1, 2], listed)
    for path in (text, sentence, noise):
        with pytest.raises(CheckpointError, match=f"{path}: not a readable checkpoint") as error:
            DACheckpointer(model).load(str(path))
        assert "ALLOW_UNSAFE_PICKLE" not in str(error.value)  # trusting it would not help
    with pytest.raises(CheckpointError, match=f"{listed}: holds no dict of weights \\(a list\\)"):
        DACheckpointer(model).load(str(listed))
    nested = tmp_path / "nested.pth"
    torch.save({"state_dict": model.state_dict()}, nested)
    with pytest.raises(CheckpointError, match=f"{nested}: holds no dict of weights at its top "
                                              f"level or under 'model' \\(not tensors: state_dict"):
        DACheckpointer(model).load(str(nested))


def test_predictor_refuses_a_checkpoint_missing_weights_that_inference_uses(tmp_path):
    from da_detect.engine.predictor import Predictor

    empty = tmp_path / "empty.pth"
    torch.save({"model": {}}, empty)
    with pytest.raises(CheckpointError, match=f"{empty}: not a checkpoint of this model"):
        Predictor(load_config(str(SYNTHETIC_FPN), ["MODEL.WEIGHTS", str(empty)]))
    # a source-only model's checkpoint has no domain classifiers, which inference does not run
    plain = untrained_weights(tmp_path / "plain.pth", SYNTHETIC_FPN)
    predictor = Predictor(load_config(str(SYNTHETIC_DA), ["MODEL.WEIGHTS", str(plain)]))
    assert predictor.missing_weights
    assert {name.split(".")[0] for name in predictor.missing_weights} == {
        "image_classifiers", "instance_classifier"}


def test_predictor_loads_the_checkpoint_it_is_given_over_the_configs(tmp_path):
    from da_detect.engine.predictor import Predictor

    given, configured = (untrained_weights(tmp_path / f"{name}.pth", SYNTHETIC_FPN)
                         for name in ("given", "configured"))  # two random initializations
    cfg = load_config(str(SYNTHETIC_FPN), ["MODEL.WEIGHTS", str(configured)])
    loaded = Predictor(cfg, given).model.state_dict()
    for name, weights in torch.load(given)["model"].items():
        assert torch.equal(loaded[name], weights), name
    scores = "roi_heads.box_predictor.cls_score.weight"
    assert not torch.equal(loaded[scores], torch.load(configured)["model"][scores])


def test_unsafe_weights_give_one_error_line(tmp_path):
    # the model's own weights, beside an object that only a full unpickling rebuilds
    weights = untrained_weights(tmp_path / "weights.pth", SYNTHETIC_FPN, args=argparse.Namespace())
    result = run_train_net_here("--config-file", SYNTHETIC_FPN, "--eval-only", "MODEL.WEIGHTS",
                                weights, "OUTPUT_DIR", tmp_path, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {weights}: torch.load(weights_only=True) refuses it (")
    assert last.endswith("set MODEL.ALLOW_UNSAFE_PICKLE True if you trust this file")


def test_a_checkpoint_of_another_model_with_buffers_gives_none_of_its_weights(tmp_path):
    other = tmp_path / "conv.pth"
    torch.save(nn.Conv2d(3, 2, 1).state_dict(), other)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))  # weights, and buffers
    checkpointer = DACheckpointer(model)
    checkpointer.load(str(other))
    with pytest.raises(CheckpointError, match="gives none of this model's weights"):
        checkpointer.require_some_weights()  # torch fills in BatchNorm's step count itself
    part = tmp_path / "linear.pth"  # some of its weights: a start, as an ImageNet backbone is
    torch.save({f"0.{k}": v for k, v in nn.Linear(3, 2).state_dict().items()}, part)
    checkpointer.load(str(part))
    checkpointer.require_some_weights()


def test_a_checkpoint_of_another_model_is_refused_for_training_and_evaluation(tmp_path):
    other = tmp_path / "linear.pth"
    torch.save(nn.Linear(3, 2).state_dict(), other)
    for mode in ([], ["--eval-only"]):
        result = run_train_net_here("--config-file", SYNTHETIC_FPN, *mode, "MODEL.WEIGHTS", other,
                                    "WANDB.ENABLED", "False", "OUTPUT_DIR", tmp_path / "out",
                                    check=False)
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith(
            f"error: {other}: not a checkpoint of this model: it gives no weights for "
            if mode else f"error: {other}: gives none of this model's weights")
    assert not (tmp_path / "out" / "model_final.pth").exists()


@pytest.mark.parametrize("opts,message", [
    (["DATASETS.VOC_DOMAINS", "[['two_classes', '/nowhere', '', 'car,bus']]",
      "DATASETS.TARGET_TRAIN", "('two_classes',)"],
     "dataset 'two_classes' has classes ['car', 'bus'], but 'synthetic_clean_train' has"),
    (["DATASETS.IMAGE_FOLDER_DOMAINS", "[['no_frames', '{empty}']]",
      "DATASETS.TARGET_TRAIN", "('no_frames',)"],
     "DATASETS.IMAGE_FOLDER_DOMAINS 'no_frames': no jpg/jpeg/png images in {empty}"),
    (["DATASETS.IMAGE_FOLDER_DOMAINS", "[['a_file', '{empty}/../notes.txt']]",
      "DATASETS.TARGET_TRAIN", "('a_file',)"],
     "DATASETS.IMAGE_FOLDER_DOMAINS 'a_file': expected a folder, but "
     "{empty}/../notes.txt is a file"),
    (["DATASETS.VOC_DOMAINS", "[['cased', '/nowhere', '', 'Car,person,bus']]",
      "DATASETS.TEST", "('cased',)"], "must share one class list (they differ in case or spaces "
                                      "only)"),
    (["DATASETS.VOC_DOMAINS", "[['reordered', '/nowhere', '', 'bus,car,person']]",
      "DATASETS.TEST", "('reordered',)"], "(the same classes in another order: a class's place "
                                          "is its id)"),
    # unlabeled images where boxes are needed: found before training, not at its end
    (["DATASETS.IMAGE_FOLDER_DOMAINS", "[['frames', '{empty}/../frames']]",
      "DATASETS.TEST", "('synthetic_foggy_val', 'frames')"],
     "DATASETS.TEST: 'frames' is unlabeled (no classes, no boxes), but an evaluation compares "
     "detections with its boxes; unlabeled images adapt the detector from DATASETS.TARGET_TRAIN"),
    (["DATASETS.IMAGE_FOLDER_DOMAINS", "[['frames', '{empty}/../frames']]",
      "DATASETS.TRAIN", "('frames',)"],
     "DATASETS.TRAIN: 'frames' is unlabeled (no classes, no boxes), but the detector learns "
     "from its boxes"),
])
def test_bad_training_data_gives_one_error_line_before_training(tmp_path, opts, message):
    from PIL import Image

    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not images")
    (tmp_path / "frames").mkdir()
    Image.new("RGB", (80, 64)).save(tmp_path / "frames" / "0.png")
    opts = [o.replace("{empty}", str(tmp_path / "empty")) for o in opts]
    message = message.replace("{empty}", str(tmp_path / "empty"))
    result = run_train_net_here("--config-file", SYNTHETIC_DA, *opts, "OUTPUT_DIR",
                                tmp_path / "out", check=False)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and message in last_line, last_line
    assert "Starting training" not in result.stdout + result.stderr



def coco_split_with_bad_images(root, classes=("car", "person", "bus"), order=range(6)):
    """A COCO-JSON split (COCO splits open no image when registered) of 6 images, numbered 0-5:
    one good, then an empty, a corrupt and a truncated file, a 16-bit image (read clipped), and
    a good image its annotation gives the wrong size; or of the images ``order`` numbers, in its
    order. Returns
    the config options that register it as 'with_bad', and the bad files (1-5)."""
    from PIL import Image

    images = root / "images"
    images.mkdir(parents=True)
    records = [{"id": k, "file_name": f"{i}.jpg", "height": 64, "width": 100 if i == 5 else 80}
               for k, i in enumerate(order)]
    Image.new("RGB", (80, 64), (90, 120, 30)).save(images / "0.jpg")
    good = (images / "0.jpg").read_bytes()
    (images / "1.jpg").write_bytes(b"")
    (images / "2.jpg").write_bytes(b"\xff\xd8 not a JPEG")
    (images / "3.jpg").write_bytes(good[:len(good) // 2])
    Image.fromarray(np.full((64, 80), 4000, np.uint16)).save(images / "4.jpg", format="PNG")
    (images / "5.jpg").write_bytes(good)
    (root / "split.json").write_text(json.dumps({
        "images": records,
        "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [10, 10, 20, 20],
                         "area": 400, "iscrowd": 0} for i in range(len(records))],
        "categories": [{"id": k + 1, "name": name} for k, name in enumerate(classes)]}))
    options = ["DATASETS.COCO_DOMAINS", f"[['with_bad', '{root}/split.json', '{images}']]"]
    return options, [str(images / f"{i}.jpg") for i in range(1, 6)]


def test_bad_image_stops_training_and_evaluation_with_one_error_line(tmp_path):
    domain, bad = coco_split_with_bad_images(tmp_path / "coco")
    # 5 of the 6 target images are bad and each step draws 2: step 0 meets one.
    train = run_train_net_here("--config-file", SYNTHETIC_DA, *domain, "DATASETS.TARGET_TRAIN",
                               "('with_bad',)", *SHORT_RUN, "OUTPUT_DIR", tmp_path / "train",
                               check=False)
    weights = untrained_weights(tmp_path / "w.pth", SYNTHETIC_FPN)
    evaluate = run_train_net_here("--config-file", SYNTHETIC_FPN, "--eval-only", *domain,
                                  "MODEL.WEIGHTS", weights, "DATASETS.TEST", "('with_bad',)",
                                  "DATALOADER.NUM_WORKERS", "1", "WANDB.ENABLED", "False",
                                  "OUTPUT_DIR", tmp_path / "eval", check=False)
    for result in (train, evaluate):
        assert result.returncode != 0
        last_line = result.stderr.strip().splitlines()[-1]
        named = [path for path in bad if last_line.startswith(f"error: {path}: ")]
        assert len(named) == 1, last_line
        assert "check_dataset.py --read-images" in last_line
        assert "Traceback" not in result.stdout + result.stderr  # not logged by detectron2 too
    # evaluation reads in order: the first bad image is the empty file
    assert evaluate.stderr.strip().splitlines()[-1].startswith(
        f"error: {bad[0]}: unreadable image (UnidentifiedImageError: ")
    assert not (tmp_path / "train" / "model_final.pth").exists()


def test_check_dataset_reading_images_lists_every_bad_one(tmp_path):
    domain, bad = coco_split_with_bad_images(tmp_path / "coco")
    config = tmp_path / "domain.yaml"
    config.write_text(f"_BASE_: {SYNTHETIC_FPN}\nDATASETS:\n  COCO_DOMAINS: {domain[1]}\n")
    command = ["tools/check_dataset.py", "--config-file", config, "with_bad"]
    assert run_script_here(*command).stdout.startswith("with_bad: 6 images, 6 boxes\n")
    result = run_script_here(*command, "--read-images", check=False)
    assert result.returncode == 1
    # the images counted are those training can use
    assert result.stdout.startswith("with_bad: 1 images, 1 boxes\n")
    problems = [line for line in result.stdout.splitlines() if line.startswith("  problem: ")]
    assert [line.split(": ")[1] for line in problems] == bad
    *unreadable, sixteen_bits, wrong_size = problems
    assert all(": unreadable image (" in line for line in unreadable)
    assert ": a I;16 image (more than 8 bits a pixel): " in sixteen_bits
    assert "got (80, 64), expect (100, 64)" in wrong_size


@pytest.mark.parametrize("role", ["DATASETS.TARGET_TRAIN", "DATASETS.TEST", "--eval-only"])
def test_a_split_with_other_classes_is_refused_before_its_images_are_read(tmp_path, role):
    # A COCO split's classes are known only once its JSON is loaded; its bad images are never
    # reached: the class lists are compared first.
    domain, _ = coco_split_with_bad_images(tmp_path / "coco", classes=("car", "truck", "bus"))
    split = ["DATASETS.TEST" if role == "--eval-only" else role, "('with_bad',)"]
    flags = (["--eval-only", "MODEL.WEIGHTS", untrained_weights(tmp_path / "w.pth", SYNTHETIC_DA)]
             if role == "--eval-only" else [])
    result = run_train_net_here("--config-file", SYNTHETIC_DA, *flags, *domain, *split,
                                "SOLVER.MAX_ITER", "2", "DATALOADER.NUM_WORKERS", "0",
                                "WANDB.ENABLED", "False", "OUTPUT_DIR", tmp_path / "out",
                                check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "error: dataset 'with_bad' has classes ['car', 'truck', 'bus'], but "
        "'synthetic_clean_train' has ['car', 'person', 'bus']: the splits a model trains and is "
        "evaluated on must share one class list")
    assert "Starting training" not in result.stdout + result.stderr


def test_the_same_classes_in_another_order_are_other_classes():
    # class ids are positions in the list: bus would be trained as car, car as bus
    MetadataCatalog.get("reordered_val").set(thing_classes=["bus", "person", "car"])
    MetadataCatalog.get("same_order_val").set(thing_classes=["car", "person", "bus"])
    cfg = load_config(str(SYNTHETIC_DA))
    check_same_classes(cfg, ["same_order_val", "synthetic_foggy_train"])
    with pytest.raises(DatasetError, match=r"^dataset 'reordered_val' has classes \['bus', "
                                           r"'person', 'car'\], but 'synthetic_clean_train' has"):
        check_same_classes(cfg, ["same_order_val", "reordered_val"])

