"""One torchrun worker for test_distributed.py: adaptation training with DATrainer (resumed from
OUTPUT_DIR's last checkpoint, if any), then this rank's parameters saved to
OUTPUT_DIR/params_rank<r>.pt. Args: CONFIG [KEY VALUE ...]."""
import sys

import torch

import da_detect  # noqa: F401
from da_detect.config import load_config
from da_detect.engine import DATrainer
from da_detect.engine.launch import torchrun_process_group
from da_detect.engine.unwrap import unwrap_model
from detectron2.utils import comm


def main():
    with torchrun_process_group():
        cfg = load_config(sys.argv[1], sys.argv[2:])
        cfg.freeze()
        trainer = DATrainer(cfg)
        trainer.resume_or_load(resume=True)
        trainer.train()
        torch.save(unwrap_model(trainer.model).state_dict(),
                   f"{cfg.OUTPUT_DIR}/params_rank{comm.get_rank()}.pt")


if __name__ == "__main__":  # not in the data loader workers, which import this file
    main()
