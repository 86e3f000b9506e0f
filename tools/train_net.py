#!/usr/bin/env python
"""Train or evaluate a detector, domain-adaptive or not, with detectron2's command line:

    python tools/train_net.py --config-file CONFIG [--eval-only] [--resume] [--num-gpus N] [KEY VALUE ...]
    torchrun --nproc_per_node N tools/train_net.py --config-file CONFIG ...   (CPU or GPU)

Logs, metrics (metrics.json, TensorBoard), checkpoints and evaluation results go to OUTPUT_DIR;
a new run (no --resume) refuses an OUTPUT_DIR that holds an earlier run's checkpoints.
Bad input (config, datasets, checkpoints) and a non-finite loss stop it with one ``error:`` line.
"""
import os
import sys

import da_detect  # noqa: F401  (detectron2 compatibility, registrations; before detectron2)
from da_detect.checkpoint import CheckpointError, DACheckpointer
from da_detect.config import ConfigError, load_config
from da_detect.data.problems import DatasetError
from da_detect.engine import DATrainer
from da_detect.engine.finite_loss import NonFiniteLossError
from da_detect.engine.launch import launch_main
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger


def setup(args):
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    last = os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")
    if not (args.resume or args.eval_only) and os.path.exists(last):
        raise CheckpointError(f"OUTPUT_DIR {cfg.OUTPUT_DIR} holds an earlier run's checkpoints "
                              f"({last}), which a new run would overwrite: --resume to go on "
                              f"with that run, or set another OUTPUT_DIR")
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="da_detect")
    return cfg


def main(args):
    try:
        cfg = setup(args)
        if args.eval_only:
            model = DATrainer.build_model(cfg)
            checkpointer = DACheckpointer(model, save_dir=cfg.OUTPUT_DIR,
                                          allow_unsafe_pickle=cfg.MODEL.ALLOW_UNSAFE_PICKLE)
            if not cfg.MODEL.WEIGHTS and not (args.resume and checkpointer.has_checkpoint()):
                raise CheckpointError("--eval-only: MODEL.WEIGHTS is empty (and no checkpoint "
                                      "in OUTPUT_DIR to --resume from): nothing to evaluate")
            checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
            checkpointer.require_inference_weights()
            return DATrainer.test(cfg, model)
        trainer = DATrainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        trainer.checkpointer.require_some_weights()
        return trainer.train()
    except NonFiniteLossError as e:
        fail(e, f"{e}; the checkpoints saved before it are intact (--resume goes on from the "
                f"last)")
    except (ConfigError, DatasetError, CheckpointError) as e:
        fail(e, str(e))


def fail(error, message):
    """Exit with status 1 and one ``error:`` line, written whole, so that several processes'
    lines do not mix; an error that every process raised alike is reported by process 0 alone."""
    if comm.get_rank() == 0 or not getattr(error, "raised_in_every_process", False):
        sys.stderr.write(f"error: {message}\n")
    sys.exit(1)


if __name__ == "__main__":
    launch_main(main, default_argument_parser().parse_args())
