"""The trainer of da-detect: detectron2's DefaultTrainer fed source + target batches."""
import os

from detectron2.engine import DefaultTrainer, hooks

from ..data.adaptation_loader import build_adaptation_train_loader
from ..evaluation import COCOAP50Evaluator


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

    @classmethod
    def build_train_loader(cls, cfg):
        if cfg.DATASETS.TARGET_TRAIN:
            return build_adaptation_train_loader(cfg)
        return super().build_train_loader(cfg)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return COCOAP50Evaluator(dataset_name, output_dir=output_folder)

    def build_hooks(self):
        return [TrainingProgress()] + super().build_hooks()
