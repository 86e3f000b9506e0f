"""Starting one or many training processes.

* One process, or several GPUs on one or more machines: detectron2's ``launch``
  (``--num-gpus``, ``--num-machines``, ``--machine-rank``, ``--dist-url``).
* Anything else, CPU included: ``torchrun`` (env:// rendezvous), e.g.
  ``torchrun --nproc_per_node 2 tools/train_net.py --config-file ...``; the process group uses
  gloo for a model on the CPU (``MODEL.DEVICE cpu``, also on a machine with GPUs) and NCCL for
  one on a GPU. detectron2 v0.6's ``launch`` asserts CUDA, hence this path.
"""
import contextlib
import os

import torch
import torch.distributed as dist
from detectron2.engine import launch
from detectron2.utils import comm

from ..config import ConfigError, load_config


def started_by_torchrun():
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


@contextlib.contextmanager
def torchrun_process_group(on_gpu=False):
    """Join torchrun's process group (NCCL ``on_gpu``, each process on the GPU of its local
    rank; gloo otherwise), give detectron2's ``comm`` its per-machine group, and destroy the
    group on the way out, error or not: a gloo process that reaches the interpreter's
    finalization with its group alive can abort (SIGABRT, "terminate called without an active
    exception"), which torchrun reports as a failed run."""
    local_rank = int(os.environ["LOCAL_RANK"])
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    if on_gpu:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if on_gpu else "gloo", init_method="env://")
    try:
        machines = dist.get_world_size() // local_size
        for machine in range(machines):
            group = dist.new_group(list(range(machine * local_size, (machine + 1) * local_size)))
            if dist.get_rank() // local_size == machine:
                comm._LOCAL_PROCESS_GROUP = group
        comm.synchronize()
        yield
    finally:
        comm._LOCAL_PROCESS_GROUP = None
        dist.destroy_process_group()


def launch_main(main, args):
    """Run ``main(args)`` in this process under torchrun, else through detectron2's launch."""
    for flag, value in (("--num-gpus", args.num_gpus), ("--num-machines", args.num_machines)):
        if value < 1:
            raise SystemExit(f"error: {flag} {value}: must be 1 or more")
    if not 0 <= args.machine_rank < args.num_machines:
        raise SystemExit(f"error: --machine-rank {args.machine_rank}: must be in [0, "
                         f"--num-machines {args.num_machines})")
    device = _model_device(args)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"error: MODEL.DEVICE {device}: this machine has no CUDA GPU (for torch "
                         f"{torch.__version__}); MODEL.DEVICE cpu runs on the CPU")
    if started_by_torchrun():
        with torchrun_process_group(on_gpu=device.startswith("cuda")):
            return main(args)
    if args.num_gpus * args.num_machines > 1 and not torch.cuda.is_available():
        raise SystemExit(f"error: --num-gpus {args.num_gpus} --num-machines {args.num_machines} "
                         f"needs CUDA; on CPU run torchrun (--nproc_per_node, --nnodes) "
                         f"tools/train_net.py ...")
    return launch(main, args.num_gpus, num_machines=args.num_machines,
                  machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))


def _model_device(args):
    """The config's MODEL.DEVICE; "cpu" for a config that does not load (``main`` reports it)."""
    try:
        return load_config(args.config_file, args.opts).MODEL.DEVICE
    except ConfigError:
        return "cpu"
