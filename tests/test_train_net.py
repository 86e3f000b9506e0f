"""tools/train_net.py end to end on the synthetic domains: training, checkpoints, evaluation,
--eval-only, --resume and clear errors for bad input."""
import json

import pytest

from conftest import SYNTHETIC_DA, SYNTHETIC_FPN, run_train_net

QUICK = ["SOLVER.WARMUP_ITERS", "10", "SOLVER.STEPS", "()", "DATALOADER.NUM_WORKERS", "0",
         "WANDB.ENABLED", "False",
         "DATASETS.TEST", "('synthetic_foggy_val',)"]


def metrics(output_dir):
    return [json.loads(line) for line in (output_dir / "metrics.json").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 60-iteration source-only run with a checkpoint at iteration 40, evaluated at the end."""
    out = tmp_path_factory.mktemp("train")
    result = run_train_net("--config-file", SYNTHETIC_FPN, *QUICK, "SOLVER.MAX_ITER", "60",
                           "SOLVER.CHECKPOINT_PERIOD", "40", "OUTPUT_DIR", out)
    return out, result


def test_training_loss_falls(trained):
    out, _ = trained
    logged = [m for m in metrics(out) if "total_loss" in m]
    assert [m["iteration"] for m in logged] == [19, 39, 59]
    assert logged[-1]["total_loss"] < logged[0]["total_loss"]
    # The RPN learns objectness first; the ROI losses grow for a while as its proposals improve.
    assert logged[-1]["loss_rpn_cls"] < 0.5 * logged[0]["loss_rpn_cls"]


def test_training_writes_checkpoints_and_per_class_ap50(trained):
    out, result = trained
    assert (out / "model_0000039.pth").exists() and (out / "model_final.pth").exists()
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    log = (out / "log.txt").read_text()
    assert "Per-category bbox AP50" in log
    results = json.loads((out / "results.json").read_text())["synthetic_foggy_val"]["bbox"]
    for cls in ("car", "person", "bus"):
        assert 0 <= results[f"AP50-{cls}"] <= 100
    assert metrics(out)[-1]["bbox/AP50-car"] == results["AP50-car"]


def test_eval_only_reproduces_the_numbers(trained, tmp_path):
    out, _ = trained
    run_train_net("--config-file", SYNTHETIC_FPN, "--eval-only", *QUICK,
                  "MODEL.WEIGHTS", out / "model_final.pth", "OUTPUT_DIR", tmp_path)
    after_training = json.loads((out / "results.json").read_text())
    evaluated = json.loads((tmp_path / "results.json").read_text())
    assert evaluated == after_training


def test_resume_continues_from_last_checkpoint(tmp_path):
    common = [*QUICK, "DATASETS.TEST", "()", "SOLVER.CHECKPOINT_PERIOD", "10",
              "OUTPUT_DIR", tmp_path]
    run_train_net("--config-file", SYNTHETIC_DA, *common, "SOLVER.MAX_ITER", "20")
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    run_train_net("--config-file", SYNTHETIC_DA, "--resume", *common, "SOLVER.MAX_ITER", "30")
    log = (tmp_path / "log.txt").read_text()
    assert "Starting training from iteration 20" in log
    iterations = [m["iteration"] for m in metrics(tmp_path)]
    assert iterations == [19, 29]
    assert "loss_da_consistency" in metrics(tmp_path)[-1]


@pytest.mark.parametrize("args,message", [
    (["--config-file", SYNTHETIC_FPN, "MODEL.NO_SUCH_KEY", "1"], "MODEL.NO_SUCH_KEY"),
    (["--config-file", "configs/missing.yaml"], "config file not found: configs/missing.yaml"),
    (["--config-file", SYNTHETIC_FPN, "DATASETS.TEST", "('synthetic_fogy_val',)"],
     "DATASETS.TEST: unknown dataset name 'synthetic_fogy_val'"),
    (["--config-file", SYNTHETIC_DA, "MODEL.DA.GRL_SCHEDULE", "linear"],
     "MODEL.DA.GRL_SCHEDULE = 'linear'"),
])
def test_bad_input_gives_one_clear_error_line(args, message):
    result = run_train_net(*args, check=False)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and message in last_line
    assert "Traceback" not in result.stderr
