"""The files a run writes into OUTPUT_DIR besides its checkpoints: the folders made before it
starts, the split predictions and results an evaluation writes, and earlier ones kept."""
import json
import math
import os
from pathlib import Path

from ..atomic_file import atomic_open, keep_earlier
from ..config import ConfigError
from ..evaluation import COCOAP50Evaluator


def predictions_folder(cfg, dataset_name):
    """Where an evaluation of split ``dataset_name`` writes its predictions."""
    return os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)


# the files a run writes into OUTPUT_DIR under fixed names, besides its checkpoints
RUN_FILES = ("config.yaml", "config.eval-only.yaml", "log.txt", "metrics.json", "results.json")


def make_output_folders(cfg):
    """Make OUTPUT_DIR and the folder where the evaluation of each DATASETS.TEST split writes its
    predictions (the VOC07 evaluator writes none). One that cannot be made (a file in the way),
    or a folder in the way of one of RUN_FILES, raises ConfigError naming it: found before
    training or evaluating, not at their end."""
    for name in RUN_FILES:
        path = os.path.join(cfg.OUTPUT_DIR, name)
        if os.path.isdir(path):
            raise ConfigError(f"{path}: a folder, where the run writes its file {name}")
    folders = {cfg.OUTPUT_DIR: f"OUTPUT_DIR {cfg.OUTPUT_DIR}"}
    if cfg.TEST.AP_METHOD != "voc07":
        for split in cfg.DATASETS.TEST:
            folder = predictions_folder(cfg, split)
            folders[folder] = f"{folder}, where the evaluation of {split} writes its predictions"
    for folder, what in folders.items():
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"{what}: cannot be made a folder ({e.strerror}: "
                              f"{e.filename})") from e


def keep_earlier_predictions(cfg):
    """Keep the prediction files an earlier evaluation wrote for each DATASETS.TEST split under
    timestamped names (:func:`keep_earlier`), so that an evaluation run does not replace them.
    (Evaluations during training replace their own: they are the model of the moment's.)"""
    for split in cfg.DATASETS.TEST:
        for name in COCOAP50Evaluator.PREDICTION_FILES:
            keep_earlier(Path(predictions_folder(cfg, split), name))


def save_results(results, output_dir):
    """Write ``results`` to ``output_dir/results.json``, atomically, each NaN (the AP of a class
    or area range with no ground truth) as ``null``: JSON has no NaN.

    An earlier results.json is kept, renamed after the time it was written.
    """
    path = Path(output_dir) / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, keep=True) as f:
        json.dump(_nan_as_null(results), f, indent=2)
    return path


def _nan_as_null(results):
    """``results`` (dicts of dicts of numbers) with None for each NaN."""
    if isinstance(results, dict):
        return {key: _nan_as_null(value) for key, value in results.items()}
    return None if isinstance(results, float) and math.isnan(results) else results
