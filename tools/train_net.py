#!/usr/bin/env python
"""Train or evaluate a detector, domain-adaptive or not, with detectron2's command line:

    python tools/train_net.py --config-file CONFIG [--eval-only] [--resume] [--num-gpus N] [KEY VALUE ...]
    torchrun --nproc_per_node N tools/train_net.py --config-file CONFIG ...   (CPU or GPU)

Logs, metrics (metrics.json, TensorBoard), checkpoints and evaluation results go to OUTPUT_DIR.
"""
import sys

import da_detect  # noqa: F401  (detectron2 compatibility, registrations; before detectron2)
from da_detect.config import ConfigError, load_config
from da_detect.engine import DATrainer
from da_detect.engine.launch import launch_main
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger


def setup(args):
    try:
        cfg = load_config(args.config_file, args.opts)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="da_detect")
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = DATrainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume)
        return DATrainer.test(cfg, model)
    trainer = DATrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    launch_main(main, default_argument_parser().parse_args())
