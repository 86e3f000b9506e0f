"""The trainer of da-detect: detectron2's DefaultTrainer fed source + target batches."""
import json
import os
import time
from pathlib import Path

from detectron2.engine import DefaultTrainer, hooks
from detectron2.utils import comm

from ..data.adaptation_loader import build_adaptation_train_loader
from ..evaluation import COCOAP50Evaluator, VOC07AP50Evaluator
from .launch import ddp_for_cpu_models
from .wandb_writer import WandbWriter


class TrainingProgress(hooks.HookBase):
    """Before each step, tells the model how far training has got (for the GRL schedule)."""

    def before_step(self):
        model = self.trainer.model
        model = getattr(model, "module", model)  # DistributedDataParallel
        if hasattr(model, "set_training_progress"):
            model.set_training_progress(self.trainer.iter / max(1, self.trainer.max_iter))


class DATrainer(DefaultTrainer):
    """detectron2's DefaultTrainer, with adaptation data and per-class AP50 evaluation.

    When ``DATASETS.TARGET_TRAIN`` is set, each step's batch is a labeled source batch followed
    by an unlabeled target batch (:func:`build_adaptation_train_loader`); otherwise it is
    detectron2's usual training loader (source-only and oracle baselines).
    """

    def __init__(self, cfg):
        with ddp_for_cpu_models():
            super().__init__(cfg)

    @classmethod
    def build_train_loader(cls, cfg):
        if cfg.DATASETS.TARGET_TRAIN:
            return build_adaptation_train_loader(cfg)
        return super().build_train_loader(cfg)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if cfg.TEST.AP_METHOD == "voc07":
            return VOC07AP50Evaluator(dataset_name)
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return COCOAP50Evaluator(dataset_name, output_dir=output_folder)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """detectron2's evaluation on every DATASETS.TEST split; also saves the results, keyed by
        split name (detectron2 drops that key when there is one split)."""
        results = super().test(cfg, model, evaluators)
        if comm.is_main_process() and results:
            by_split = results if len(cfg.DATASETS.TEST) > 1 else {cfg.DATASETS.TEST[0]: results}
            save_results(by_split, cfg.OUTPUT_DIR)
        return results

    def build_writers(self):
        """detectron2's writers (console, metrics.json, TensorBoard), and wandb when enabled."""
        writers = super().build_writers()
        if self.cfg.WANDB.ENABLED:
            writers.append(WandbWriter(self.cfg))
        return writers

    def build_hooks(self):
        return [TrainingProgress()] + super().build_hooks()


def save_results(results, output_dir):
    """Write ``results`` to ``output_dir/results.json``, atomically.

    An earlier results.json is kept, renamed after the time it was written.
    """
    path = Path(output_dir) / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
        path.rename(path.with_name(f"results.{stamp}.{time.time_ns() % 10**9:09d}.json"))
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(path)
    return path
