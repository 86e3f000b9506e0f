"""Experiment tracking: a short training run logs its losses and config to an offline wandb run;
wandb missing or failing to start is a config error."""
import sys

import pytest
import wandb
from detectron2.utils.events import EventStorage

from conftest import (SMALL_IMAGES, SYNTHETIC_DA, error_line_of_two_processes, metrics,
                      run_train_net, wandb_records)
from da_detect.config import ConfigError, load_config
from da_detect.engine.wandb_writer import WandbWriter


def test_training_logs_losses_and_config_to_offline_wandb(tmp_path):
    run_train_net("--config-file", SYNTHETIC_DA, *SMALL_IMAGES, "SOLVER.MAX_ITER", "10",
                  "SOLVER.WARMUP_ITERS", "5", "DATASETS.TEST", "()", "DATALOADER.NUM_WORKERS", "0",
                  "WANDB.NAME", "adapt-test", "OUTPUT_DIR", tmp_path)
    (run_file,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    records = wandb_records(run_file)
    history = [{item.key or "/".join(item.nested_key): item.value_json for item in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    logged = history[-1]
    assert logged["_step"] == "9"
    (written,) = [entry for entry in metrics(tmp_path) if entry["iteration"] == 9]
    for key in ("total_loss", "loss_cls", "loss_rpn_cls", "loss_da_image", "loss_da_instance",
                "loss_da_consistency", "lr", "da/image_accuracy"):
        assert float(logged[key]) == pytest.approx(written[key], rel=1e-6), key
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.display_name == "adapt-test"
    config = {item.key: item.value_json for item in run.config.update}
    assert '"DomainAdaptiveRCNN"' in config["MODEL"] and '"synthetic_foggy_train"' in config["DATASETS"]


def test_the_writer_starts_wandb_as_configured_and_logs_each_step_once(tmp_path, monkeypatch):
    cfg = load_config(str(SYNTHETIC_DA), ["OUTPUT_DIR", str(tmp_path), "WANDB.MODE", "disabled",
                                          "WANDB.PROJECT", "mine", "WANDB.NAME", "run-1"])
    started, logged = {}, []

    class Run:
        def log(self, values, step):
            logged.append((step, values))

    monkeypatch.setattr(wandb, "init", lambda **options: started.update(options) or Run())
    writer = WandbWriter(cfg)
    with EventStorage(0) as storage:
        storage.put_scalar("loss", 4.0, smoothing_hint=False)
        writer.write()
        storage.step()
        storage.put_scalar("loss", 2.0, smoothing_hint=False)
        writer.write()
        writer.write()  # nothing new since
    assert (started["mode"], started["project"], started["name"]) == ("disabled", "mine", "run-1")
    assert logged == [(0, {"loss": 4.0}), (1, {"loss": 2.0})]


def test_wandb_missing_or_failing_is_a_config_error_naming_the_key(tmp_path, monkeypatch):
    cfg = load_config(str(SYNTHETIC_DA), ["OUTPUT_DIR", str(tmp_path), "WANDB.MODE", "online"])

    def no_api_key(**kwargs):
        raise wandb.errors.UsageError("api_key not configured (no-tty)")

    monkeypatch.setattr(wandb, "init", no_api_key)
    with pytest.raises(ConfigError, match="WANDB.MODE 'online': wandb could not start the run "
                                          r"\(UsageError: api_key not configured"):
        WandbWriter(cfg)
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if it were not installed
    with pytest.raises(ConfigError, match="WANDB.ENABLED True needs the wandb package"):
        WandbWriter(cfg)


def test_wandb_failing_to_start_in_process_0_stops_every_process(tmp_path):
    """Only process 0 starts the wandb run: online, with no API key (none in the environment,
    an empty home), it cannot."""
    error = error_line_of_two_processes(
        "tools/train_net.py", "--config-file", SYNTHETIC_DA, "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.TARGET_IMS_PER_BATCH", "2", "DATASETS.TEST", "()", "DATALOADER.NUM_WORKERS", "0",
        "WANDB.MODE", "online", "OUTPUT_DIR", tmp_path / "out",
        environment={"WANDB_API_KEY": None, "HOME": str(tmp_path)})
    assert error.startswith("error: process 0: WANDB.MODE 'online': wandb could not start the "
                            "run (UsageError: "), error
