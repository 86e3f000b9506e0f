#!/usr/bin/env python
"""Train or evaluate a detector, domain-adaptive or not, with detectron2's command line:

    python tools/train_net.py --config-file CONFIG [--eval-only] [--resume] [--num-gpus N] [KEY VALUE ...]
    torchrun --nproc_per_node N tools/train_net.py --config-file CONFIG ...   (CPU or GPU)

Logs, metrics (metrics.json, TensorBoard), checkpoints and evaluation results go to OUTPUT_DIR;
a new run (no --resume) refuses an OUTPUT_DIR that holds an earlier run's checkpoints, and
--eval-only keeps the config.yaml there (its own goes to config.eval-only.yaml) and keeps an
earlier evaluation's results and predictions under timestamped names; --resume with other
values keeps the earlier config.yaml the same way, once the checkpoint has loaded, and a
finished run resumed to train on keeps its model_final.pth and final predictions.
Bad input (config, datasets, checkpoints), a non-finite loss and a data loader worker that ends
stop it with one ``error:`` line.
"""
import glob
import logging
import os
import sys
from pathlib import Path

import da_detect  # noqa: F401  (detectron2 compatibility, registrations; before detectron2)
from da_detect.atomic_file import atomic_open, keep_earlier
from da_detect.checkpoint import CheckpointError, DACheckpointer
from da_detect.config import ConfigError, config_differences, load_config
from da_detect.data.classes import check_same_classes, require_labeled
from da_detect.data.problems import DatasetError
from da_detect.data.worker_processes import WorkerEndedError
from da_detect.engine import DATrainer
from da_detect.engine.finite_loss import NonFiniteLossError
from da_detect.engine.launch import launch_main
from da_detect.engine.output_dir import keep_earlier_predictions, make_output_folders
from da_detect.every_process import raise_for_problems, raised_together
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger


def setup(args):
    with raised_together(ConfigError):  # a file that one machine lacks stops every process
        cfg = load_config(args.config_file, args.opts)
        cfg.freeze()
        if args.eval_only and not cfg.DATASETS.TEST:
            raise ConfigError("--eval-only: DATASETS.TEST is empty: no split to evaluate on")
    earlier = sorted(path for pattern in ("last_checkpoint", "model_*.pth")
                     for path in glob.glob(os.path.join(glob.escape(cfg.OUTPUT_DIR), pattern))
                     if os.path.isfile(path))
    raise_for_problems(
        f"OUTPUT_DIR {cfg.OUTPUT_DIR} holds an earlier run's checkpoints ({earlier[0]}), which "
        f"a new run would overwrite: --resume to go on with that run, or set another OUTPUT_DIR"
        if earlier and not (args.resume or args.eval_only) else None, CheckpointError)
    with raised_together(ConfigError):
        make_output_folders(cfg)
    config_yaml = Path(cfg.OUTPUT_DIR, "config.yaml")
    earlier = (config_yaml.read_bytes() if (args.eval_only or args.resume) and config_yaml.is_file()
               else None)
    default_setup(cfg, args)  # writes the config it runs with to config.yaml
    if earlier is not None and comm.is_main_process():
        # An evaluation keeps the training run's config.yaml, and writes its own beside it once
        # it has its model (write_eval_config); a resumed run, once its checkpoint has loaded
        # (write_resumed_config)
        with atomic_open(config_yaml, "wb") as f:
            f.write(earlier)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="da_detect")
    return cfg


def write_resumed_config(cfg):
    """config.yaml of a resumed run, once its checkpoint has loaded: where it runs with other
    values than the run's config.yaml, the earlier one is kept under its time, with a warning."""
    if not comm.is_main_process():
        return
    config_yaml = Path(cfg.OUTPUT_DIR, "config.yaml")
    before, now = config_yaml.read_text() if config_yaml.is_file() else None, cfg.dump()
    if before == now:
        return
    if before is not None:
        changed = config_differences(before, now)
        kept = keep_earlier(config_yaml)
        logging.getLogger("da_detect").warning(
            f"--resume with other values than the run's config.yaml: {'; '.join(changed)}. The "
            f"steps from here on take them; the earlier config.yaml is kept as {kept.name}")
    with atomic_open(config_yaml) as f:
        f.write(now)


def keep_finished_model(cfg, trainer):
    """A finished run resumed to train on (SOLVER.MAX_ITER raised) ends by replacing its
    model_final.pth and its final evaluation's predictions: they are kept under timestamped names
    first (the model as a second name of the same file: --resume still finds it)."""
    checkpointer = trainer.checkpointer  # resuming: loaded from OUTPUT_DIR, not MODEL.WEIGHTS
    if (not comm.is_main_process() or not checkpointer.resuming
            or os.path.basename(checkpointer.loaded) != "model_final.pth"
            or trainer.start_iter >= trainer.max_iter):
        return
    kept = keep_earlier(checkpointer.loaded, link=True)
    keep_earlier_predictions(cfg)
    logging.getLogger("da_detect").warning(
        f"the finished run in {cfg.OUTPUT_DIR} trains on to SOLVER.MAX_ITER = {trainer.max_iter}: "
        f"its model_final.pth is kept as {kept.name}, and its final predictions likewise")


def write_eval_config(cfg):
    """config.eval-only.yaml: the config of an evaluation in a training run's OUTPUT_DIR (an
    earlier one kept under its time)."""
    config_yaml = Path(cfg.OUTPUT_DIR, "config.yaml")
    if comm.is_main_process() and config_yaml.is_file():
        with atomic_open(config_yaml.with_name("config.eval-only.yaml"), keep=True) as f:
            f.write(cfg.dump())


def warn_of_another_model(cfg, checkpointer, resume):
    """An evaluation in a training run's OUTPUT_DIR of other weights than its last checkpoint
    (the config's MODEL.WEIGHTS may be the model the run started from) writes its results there:
    say so."""
    if not resume and checkpointer.has_checkpoint():
        last = checkpointer.get_checkpoint_file()
        if os.path.realpath(cfg.MODEL.WEIGHTS) != os.path.realpath(last):
            logging.getLogger("da_detect").warning(
                f"--eval-only evaluates MODEL.WEIGHTS {cfg.MODEL.WEIGHTS}, not OUTPUT_DIR's last "
                f"checkpoint {last} (--resume evaluates that one), and writes its results into "
                f"OUTPUT_DIR {cfg.OUTPUT_DIR}")


def main(args):
    cfg = None
    try:
        cfg = setup(args)
        if args.eval_only:
            # the test splits' labels and classes, before the checkpoint is blamed for them (a
            # NUM_CLASSES override)
            with raised_together(DatasetError):
                require_labeled(cfg.DATASETS.TEST, "DATASETS.TEST")
                check_same_classes(cfg, cfg.DATASETS.TEST)
            model = DATrainer.build_model(cfg)
            checkpointer = DACheckpointer(model, save_dir=cfg.OUTPUT_DIR,
                                          allow_unsafe_pickle=cfg.MODEL.ALLOW_UNSAFE_PICKLE)
            checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
            with raised_together(CheckpointError):
                if not checkpointer.loaded:
                    raise CheckpointError(
                        f"--eval-only: MODEL.WEIGHTS is empty: nothing to evaluate (--resume "
                        f"evaluates OUTPUT_DIR's last checkpoint, "
                        f"{checkpointer.get_checkpoint_file()})" if checkpointer.has_checkpoint()
                        else "--eval-only: MODEL.WEIGHTS is empty (and no checkpoint in "
                             "OUTPUT_DIR to --resume from): nothing to evaluate")
                checkpointer.require_inference_weights()
            warn_of_another_model(cfg, checkpointer, args.resume)
            write_eval_config(cfg)
            if comm.is_main_process():
                keep_earlier_predictions(cfg)
            return DATrainer.test(cfg, model)
        trainer = DATrainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        with raised_together(CheckpointError):
            trainer.checkpointer.require_some_weights()
        if args.resume:
            write_resumed_config(cfg)
            keep_finished_model(cfg, trainer)
        return trainer.train()
    except (NonFiniteLossError, WorkerEndedError) as e:  # met in training or evaluation
        fail(e, str(e) if args.eval_only else f"{e}; the checkpoints saved before it are intact "
                                              f"(--resume goes on from the last)")
    except (ConfigError, DatasetError, CheckpointError) as e:
        fail(e, str(e))
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback, and how to go on
        tag = Path(cfg.OUTPUT_DIR, "last_checkpoint") if cfg is not None else None
        if comm.get_rank() == 0:
            sys.stderr.write("error: interrupted (Ctrl-C)" + (
                f"; the checkpoints saved before it are intact (--resume goes on from the last, "
                f"{tag.read_text().strip()})" if tag and tag.is_file() and not args.eval_only
                else "") + "\n")
        sys.exit(130)


def fail(error, message):
    """Exit with status 1 and one ``error:`` line, written whole, so that several processes'
    lines do not mix. An error marked ``raised_in_every_process`` is reported by process 0
    alone, and the others wait until it has been (torchrun stops every process as soon as one
    exits with an error)."""
    in_every_process = getattr(error, "raised_in_every_process", False)
    if comm.get_rank() == 0 or not in_every_process:
        sys.stderr.write(f"error: {message}\n")
    if in_every_process:
        comm.all_gather(None)  # every process reaches this point
    sys.exit(1)


if __name__ == "__main__":
    launch_main(main, default_argument_parser().parse_args())
