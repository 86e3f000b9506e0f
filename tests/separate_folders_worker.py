"""One torchrun worker for test_distributed.py: each process works in a folder of its own,
ROOT/process<r>, as on machines that share no storage. It builds a DATrainer for CONFIG with
OUTPUT_DIR "." and MODEL.WEIGHTS "ONLY_1.pth" (KEY VALUE ... after them), which only process 1's
folder holds, and loads its weights twice: with --resume, where only process 0's folder holds a
last_checkpoint, then without. Writes the outcomes (the CheckpointError's message, or "loaded")
to outcome.json in its folder. Args: ROOT CONFIG [KEY VALUE ...]."""
import json
import os
import sys

import da_detect  # noqa: F401
from da_detect.checkpoint import CheckpointError
from da_detect.config import load_config
from da_detect.engine import DATrainer
from da_detect.engine.launch import torchrun_process_group
from detectron2.utils import comm

with torchrun_process_group():
    os.chdir(f"{sys.argv[1]}/process{comm.get_rank()}")
    cfg = load_config(sys.argv[2],
                      ["OUTPUT_DIR", ".", "MODEL.WEIGHTS", "ONLY_1.pth", *sys.argv[3:]])
    cfg.freeze()
    trainer = DATrainer(cfg)
    outcome = {}
    for resume in (True, False):
        try:
            trainer.resume_or_load(resume=resume)
            outcome[f"resume={resume}"] = "loaded"
        except CheckpointError as e:
            outcome[f"resume={resume}"] = str(e)
    with open("outcome.json", "w") as f:
        json.dump(outcome, f)
