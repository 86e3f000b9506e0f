"""One torchrun worker for test_fault_tolerance.py: four steps of FiniteLossTrainer on a
one-weight model, whose loss turns NaN at step 2 in process 1 only. Writes what happened (the
NonFiniteLossError's message, or "finished"), the weight and whether the process group was
left on the way out to OUTPUT_DIR/rank<r>.json.
Args: OUTPUT_DIR."""
import json
import sys

import torch
import torch.distributed as dist

import da_detect  # noqa: F401
from da_detect.engine.finite_loss import FiniteLossTrainer, NonFiniteLossError
from da_detect.engine.launch import torchrun_process_group
from detectron2.utils import comm


class OneWeight(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(()))

    def forward(self, step):
        loss = self.weight * step
        if comm.get_rank() == 1 and step == 2:
            loss = loss * float("nan")
        return {"loss_step": loss, "loss_const": self.weight * 0 + 1}


with torchrun_process_group():
    rank = comm.get_rank()
    model = OneWeight()
    trainer = FiniteLossTrainer(model, [torch.tensor(float(step)) for step in range(4)],
                                torch.optim.SGD(model.parameters(), lr=0.1))
    try:
        trainer.train(0, 4)
        outcome = "finished"
    except NonFiniteLossError as e:
        outcome = str(e)
with open(f"{sys.argv[1]}/rank{rank}.json", "w") as f:
    json.dump({"outcome": outcome, "weight": model.weight.item(),
               "process_group_left": not dist.is_initialized()}, f)
