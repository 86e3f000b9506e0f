"""The trainer of da-detect: detectron2's DefaultTrainer fed source + target batches."""
import logging
import weakref

from detectron2.engine import DefaultTrainer, TrainerBase, hooks
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import CheckpointError, DACheckpointer
from ..config import ConfigError, check_adaptation_data
from ..data.problems import DatasetError
from ..data.test_loader import build_test_loader
from ..data.train_loader import build_train_loader
from ..data.worker_processes import WorkerEndedError
from ..evaluation import COCOAP50Evaluator, VOC07AP50Evaluator
from ..evaluation.comparison import comparison_table
from ..every_process import raised_together
from ..random_generators import random_states_kept
from .finite_loss import (FiniteLossAMPTrainer, FiniteLossCPUAMPTrainer, FiniteLossTrainer,
                          NonFiniteLossError)
from .output_dir import predictions_folder, save_results
from .training_state import TrainingState
from .unwrap import unwrap_model
from .wandb_writer import WandbWriter
from .weight_averaging import WeightAveraging


class TrainingProgress(hooks.HookBase):
    """Before each step, tells the model which step it is (for MODEL.DA.START_ITER and the GRL
    schedule)."""

    def before_step(self):
        model = unwrap_model(self.trainer.model)
        if hasattr(model, "set_training_progress"):
            model.set_training_progress(self.trainer.iter, self.trainer.max_iter)


class DATrainer(DefaultTrainer):
    """detectron2's DefaultTrainer, with adaptation data, per-class AP50 evaluation, and training
    that survives faults.

    * Each step's batch is a labeled source batch, followed by an unlabeled target batch when
      ``DATASETS.TARGET_TRAIN`` is set (:func:`build_train_loader`).
    * Checkpoints are written atomically and loaded safely (:class:`DACheckpointer`); they hold
      the data seed, random states and recent logged scalars too, so ``--resume`` after a kill
      continues exactly as the uninterrupted run: same steps, learning rate, GRL schedule, data
      and random draws (bit for bit on CPU).
    * A NaN or infinite loss stops training before the weights take it
      (:class:`NonFiniteLossError`).
    * With several processes, an error that one process meets (a non-finite loss, an image that
      cannot be used, a checkpoint process 0 cannot write) stops every process at that step, with
      the same error naming whose it was.
    * With ``SOLVER.WEIGHT_AVERAGING.ENABLED`` the final model is the mean of the weights over
      the last steps (:class:`WeightAveraging`).
    * With ``SOLVER.AMP.ENABLED``: detectron2's AMPTrainer (float16) on a GPU,
      :class:`CPUAMPTrainer` (bfloat16) on a CPU.
    """

    def __init__(self, cfg):
        with raised_together(ConfigError):
            check_adaptation_data(cfg)
        TrainerBase.__init__(self)
        cfg = self.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        if comm.get_world_size() > 1:
            # detectron2 v0.6's create_ddp_model names a GPU even for a model on the CPU.
            on_gpu = next(model.parameters()).device.type == "cuda"
            # Before MODEL.DA.START_ITER the domain classifiers get no gradient.
            model = DistributedDataParallel(
                model, device_ids=[comm.get_local_rank()] if on_gpu else None,
                broadcast_buffers=False, find_unused_parameters=cfg.MODEL.DA.START_ITER > 0)
        trainer = FiniteLossTrainer
        if cfg.SOLVER.AMP.ENABLED:
            trainer = (FiniteLossCPUAMPTrainer if cfg.MODEL.DEVICE.startswith("cpu")
                       else FiniteLossAMPTrainer)
        self._trainer = trainer(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = DACheckpointer(
            model, cfg.OUTPUT_DIR, allow_unsafe_pickle=cfg.MODEL.ALLOW_UNSAFE_PICKLE,
            trainer=weakref.proxy(self), data=data_loader)
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def resume_or_load(self, resume=True):
        """detectron2's, then the data stream moves on to the first step to run. With several
        processes, every process raises the same :class:`CheckpointError` where one could not
        load its file or where they would not load the same one
        (:meth:`DACheckpointer.resume_or_load`)."""
        super().resume_or_load(resume)
        if self.start_iter:
            self.data_loader.start_at(self.start_iter)
            # SimpleTrainer took its iterator at construction; take a new one from this step.
            self._trainer._data_loader_iter = iter(self.data_loader)

    def train(self):
        """detectron2's. An error that tools/train_net.py reports in one line of its own
        (:data:`ERRORS_REPORTED_BY_TRAIN_NET`) is not also logged with its traceback by
        detectron2's loop. A run resumed at its last step (finished, or stopped in its final
        evaluation) trains nothing and evaluates again, saying so."""
        if self.start_iter >= self.max_iter:
            logging.getLogger("da_detect").warning(
                "the run in %s has finished its SOLVER.MAX_ITER = %d steps: nothing to train, "
                "only its final evaluation runs again (raise SOLVER.MAX_ITER to train on)",
                self.cfg.OUTPUT_DIR, self.max_iter)
        loop_logger = logging.getLogger("detectron2.engine.train_loop")
        loop_logger.addFilter(not_an_error_reported_by_train_net)
        try:
            return super().train()
        finally:
            loop_logger.removeFilter(not_an_error_reported_by_train_net)

    def after_train(self):
        """detectron2's, except that after a step that failed, the last one included, the final
        evaluation does not run (detectron2 v0.6's EvalHook runs it when the last step fails):
        the error is reported at once, and no results are written for a model that did not
        finish training."""
        if self.iter >= self.max_iter:  # the loop finished: TrainerBase.train counts one past
            return super().after_train()
        self.storage.iter = self.iter
        for hook in self._hooks:
            if not isinstance(hook, hooks.EvalHook):
                hook.after_train()

    def state_dict(self):
        """detectron2 v0.6's DefaultTrainer leaves out the optimizer (momentum, current learning
        rate) and AMP's grad scaler; they are saved here."""
        state = super().state_dict()
        state["_trainer"] = self._trainer.state_dict()
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self._trainer.load_state_dict(state["_trainer"])

    @staticmethod
    def auto_scale_workers(cfg, num_workers):
        """detectron2's scaling to ``num_workers`` processes from SOLVER.REFERENCE_WORLD_SIZE
        (batch and learning rate up, steps down), with da-detect's keys along: the target batch
        like the source batch, MODEL.DA.START_ITER and SOLVER.WEIGHT_AVERAGING's steps like
        the other steps."""
        scaled = DefaultTrainer.auto_scale_workers(cfg, num_workers)
        if scaled is cfg:
            return cfg
        scale = num_workers / cfg.SOLVER.REFERENCE_WORLD_SIZE
        frozen = scaled.is_frozen()
        scaled.defrost()
        if cfg.SOLVER.TARGET_IMS_PER_BATCH != -1:
            scaled.SOLVER.TARGET_IMS_PER_BATCH = int(round(cfg.SOLVER.TARGET_IMS_PER_BATCH * scale))
        scaled.MODEL.DA.START_ITER = int(round(cfg.MODEL.DA.START_ITER / scale))
        averaging = scaled.SOLVER.WEIGHT_AVERAGING
        averaging.START_ITER = int(round(averaging.START_ITER / scale))
        averaging.PERIOD = max(1, int(round(averaging.PERIOD / scale)))
        if frozen:
            scaled.freeze()
        return scaled

    @classmethod
    def build_train_loader(cls, cfg):
        """:func:`build_train_loader`; a dataset that one machine lacks stops every process."""
        with raised_together(DatasetError):
            return build_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """:func:`build_test_loader`; a dataset that one machine lacks stops every process."""
        with raised_together(DatasetError):
            return build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if cfg.TEST.AP_METHOD == "voc07":
            return VOC07AP50Evaluator(dataset_name)
        return COCOAP50Evaluator(dataset_name,
                                 output_dir=output_folder or predictions_folder(cfg, dataset_name))

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """detectron2's evaluation on every DATASETS.TEST split; also saves the results, keyed by
        split name (detectron2 drops that key when there is one split), and logs a table comparing
        the splits class by class. Leaves the random generators as it found them."""
        with random_states_kept():
            results = super().test(cfg, model, evaluators)
        if comm.is_main_process() and results:
            by_split = results if len(cfg.DATASETS.TEST) > 1 else {cfg.DATASETS.TEST[0]: results}
            save_results(by_split, cfg.OUTPUT_DIR)
            if len(by_split) > 1:
                logging.getLogger("da_detect").info(
                    "AP50 (%) by split:\n" + comparison_table(by_split))
        return results

    def build_writers(self):
        """detectron2's writers (console, metrics.json, TensorBoard), and wandb when enabled."""
        writers = super().build_writers()
        if self.cfg.WANDB.ENABLED:
            writers.append(WandbWriter(self.cfg))
        return writers

    def build_hooks(self):
        ours = [TrainingProgress(), TrainingState(self.cfg.SOLVER.CHECKPOINT_PERIOD)]
        averaging = self.cfg.SOLVER.WEIGHT_AVERAGING
        if averaging.ENABLED:
            # Before detectron2's checkpointer: the last step's checkpoint holds the mean.
            ours.append(WeightAveraging(averaging.START_ITER, averaging.PERIOD))
        with raised_together(ConfigError):  # wandb failing to start, in process 0 alone
            theirs = super().build_hooks()
        if not comm.is_main_process():
            # detectron2 runs the checkpointer hook in process 0 alone. In every process, its
            # saves are where each learns whether process 0 could write (DACheckpointer.save).
            evaluation = next(i for i, hook in enumerate(theirs)
                              if isinstance(hook, hooks.EvalHook))
            theirs.insert(evaluation, hooks.PeriodicCheckpointer(
                self.checkpointer, self.cfg.SOLVER.CHECKPOINT_PERIOD))
        return ours + theirs


# bad input met in training (an unusable image, a checkpoint that cannot be written), a
# non-finite loss and a data loader worker that ended: tools/train_net.py reports each in one
# line, naming the file, the step or the worker
ERRORS_REPORTED_BY_TRAIN_NET = (DatasetError, CheckpointError, NonFiniteLossError,
                                WorkerEndedError)


def not_an_error_reported_by_train_net(record):
    """A logging filter: False for a record that carries one of ERRORS_REPORTED_BY_TRAIN_NET."""
    return not (record.exc_info and isinstance(record.exc_info[1], ERRORS_REPORTED_BY_TRAIN_NET))
