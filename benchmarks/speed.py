#!/usr/bin/env python
"""Speed of domain-adaptive training and inference next to plain Faster R-CNN, side by side.

For one domain-adaptive config (``DomainAdaptiveRCNN`` with ``DATASETS.TARGET_TRAIN``), prints a
markdown table (and writes it to ``--output``) of:

* training, per image processed: source-only (plain ``GeneralizedRCNN``, S+T labeled source images
  per step) against adaptation (S source + T target images per step), the two stepping in turn
  from their own data loaders; medians over ``--steps`` steps after ``--warmup``. Peak memory of
  each, measured in a fresh process (CPU: peak resident set; GPU: peak allocated).
* inference, per image: a plain ``GeneralizedRCNN`` and the adapted model holding the same weights,
  image by image in turn (their predictions are checked to be identical).
* data loading: images per second the training loaders deliver on their own with the configured
  ``DATALOADER.NUM_WORKERS``, against the images per second adaptation training consumes, and the
  share of each training step spent waiting for data.

    python benchmarks/speed.py --config-file configs/synthetic/da_faster_rcnn_R18_FPN.yaml
    python benchmarks/speed.py --config-file configs/cityscapes_to_foggy/da_faster_rcnn_R50_FPN.yaml \\
        --synthetic-images 1024x512     # Cityscapes-sized synthetic scenes stand in for Cityscapes

``--profile`` adds the operators that dominate one adaptation step. ``SOLVER.AMP.ENABLED True``
(trailing ``KEY VALUE`` overrides) measures mixed precision: float16 on a GPU, bfloat16 on a CPU.
Models keep their random initial weights (speed does not depend on them); a ResNet with frozen
BatchNorm diverges from random weights, so give such configs ``MODEL.RESNETS.NORM GN
MODEL.FPN.NORM GN``.
"""
import argparse
import itertools
import multiprocessing
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import da_detect  # noqa: F401  (detectron2 compatibility, registrations; before detectron2)
import torch
from da_detect.argument_types import at_least, output_file
from da_detect.atomic_file import atomic_open
from da_detect.config import ConfigError, deployment_config, load_config
from da_detect.data.builtin import register_synthetic_split
from da_detect.data.synthetic import SplitSpec
from da_detect.data.train_loader import build_train_loader, target_batch_size
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.utils.events import EventStorage
from tabulate import tabulate

SPEED_SPLIT_IMAGES = 16


def width_x_height(text):
    """An argparse type: "WIDTHxHEIGHT" as (width, height)."""
    try:
        width, height = (int(v) for v in text.split("x"))
    except ValueError:
        width = height = 0
    if min(width, height) < 1:
        raise argparse.ArgumentTypeError(f"{text}: not WIDTHxHEIGHT (e.g. 320x256)")
    return width, height


def load(args):
    """The DA config, and its source-only twin with S+T source images per step."""
    opts = list(args.opts)
    if args.synthetic_images:
        width, height = args.synthetic_images
        names = [register_synthetic_split(SplitSpec(domain, f"speed{width}x{height}",
                                                    SPEED_SPLIT_IMAGES, height, width))
                 for domain in ("clean", "foggy")]
        opts += ["DATASETS.TRAIN", f"('{names[0]}',)", "DATASETS.TARGET_TRAIN", f"('{names[1]}',)",
                 "DATASETS.TEST", "()"]
    if not torch.cuda.is_available():
        opts += ["MODEL.DEVICE", "cpu"]
    cfg = load_config(args.config_file, opts)
    if cfg.MODEL.META_ARCHITECTURE != "DomainAdaptiveRCNN" or not cfg.DATASETS.TARGET_TRAIN:
        raise SystemExit(f"error: {args.config_file} is not a domain-adaptive config "
                         f"(MODEL.META_ARCHITECTURE DomainAdaptiveRCNN and DATASETS.TARGET_TRAIN)")
    source_only = deployment_config(cfg)
    source_only.SOLVER.IMS_PER_BATCH = cfg.SOLVER.IMS_PER_BATCH + target_batch_size(cfg)
    return {"source-only": source_only, "adaptation": cfg}


def synchronize(cfg):
    if cfg.MODEL.DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


class TrainingRun:
    """A model, its optimizer and its data stream, trained one step at a time."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.model = build_model(cfg).train()
        self.optimizer = build_optimizer(cfg, self.model)
        self.data = iter(build_train_loader(cfg))
        self.amp = cfg.SOLVER.AMP.ENABLED
        # float16 on a GPU needs its loss scaled; bfloat16 on a CPU does not
        on_gpu = cfg.MODEL.DEVICE.startswith("cuda")
        self.scaler = torch.amp.GradScaler(enabled=self.amp and on_gpu)

    def step(self):
        """One training step. Returns (seconds waiting for data, seconds computing, images)."""
        start = time.perf_counter()
        batch = next(self.data)
        loaded = time.perf_counter()
        with torch.autocast(self.cfg.MODEL.DEVICE.split(":")[0], enabled=self.amp):
            loss = sum(self.model(batch).values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        synchronize(self.cfg)
        return loaded - start, time.perf_counter() - loaded, len(batch)


def peak_memory_mib(args, mode, steps):
    """Run in a fresh process: peak memory (MiB) over ``steps`` training steps of ``mode``."""
    cfg = load(args)[mode]
    with EventStorage():
        run = TrainingRun(cfg)
        for _ in range(steps):
            run.step()
    if cfg.MODEL.DEVICE.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure_peak_memory(args, mode, steps):
    """:func:`peak_memory_mib` in a fresh (spawned) process; its error is raised here, and a
    process that dies (out of memory) raises BrokenProcessPool instead of leaving this waiting."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(peak_memory_mib, args, mode, steps).result()


def measure_training(cfgs, warmup, steps):
    """Per mode: lists of (data wait, compute, images) per measured step; modes step in turn."""
    runs = {mode: TrainingRun(cfg) for mode, cfg in cfgs.items()}
    runs["source-only"].model.load_state_dict(runs["adaptation"].model.state_dict(), strict=False)
    measured = {mode: [] for mode in runs}
    with EventStorage():
        for i in range(warmup + steps):
            runs["adaptation"].model.set_training_progress(i, warmup + steps)
            for mode, run in runs.items():
                result = run.step()
                if i >= warmup:
                    measured[mode].append(result)
    return measured, runs


def measure_inference(cfgs, runs, repetitions):
    """Seconds per image of the plain and the adapted model with the same weights, in turn."""
    adapted = runs["adaptation"].model.eval()
    plain = build_model(cfgs["source-only"]).eval()
    missing, _ = plain.load_state_dict(adapted.state_dict(), strict=False)
    assert not missing, missing
    images = [{"image": x["image"], "height": x["image"].shape[1], "width": x["image"].shape[2]}
              for x in next(runs["adaptation"].data)]
    times = {"plain GeneralizedRCNN": [], "adapted model": []}
    identical = True
    with torch.no_grad():
        for _, image in itertools.product(range(repetitions), images):
            outputs = []
            for name, model in (("plain GeneralizedRCNN", plain), ("adapted model", adapted)):
                start = time.perf_counter()
                outputs.append(model([image])[0]["instances"])
                synchronize(cfgs["adaptation"])
                times[name].append(time.perf_counter() - start)
            identical &= torch.equal(outputs[0].pred_boxes.tensor, outputs[1].pred_boxes.tensor)
    return times, identical


def measure_loading(cfg, batches):
    """Images per second the training loaders deliver alone (after a first batch)."""
    data = iter(build_train_loader(cfg))
    next(data)
    start = time.perf_counter()
    images = sum(len(next(data)) for _ in range(batches))
    return images / (time.perf_counter() - start)


def profile_step(run, rows):
    """The operators that take most of one adaptation step, and the share of the step's time
    the domain losses' forward takes (their backward is spread over the operators)."""
    with EventStorage(), torch.profiler.profile() as profiler:
        _, compute, _ = run.step()
    events = profiler.key_averages()
    domain = next(e.cpu_time_total for e in events if e.key == "da_detect.domain_losses")
    return (f"forward of the domain losses (target proposals, D_img, D_ins, L_cst): "
            f"{domain / 1e6:.3f} s of a {compute:.3f} s step\n"
            + events.table(sort_by="self_cpu_time_total", row_limit=rows))


def median_per_image(results):
    return statistics.median(compute / images for _, compute, images in results)


def report(args, cfgs, training, memory, inference, identical, loading):
    cfg = cfgs["adaptation"]
    device = (torch.cuda.get_device_name() if cfg.MODEL.DEVICE.startswith("cuda")
              else f"CPU, {torch.get_num_threads()} threads")
    size = f"{cfg.INPUT.MIN_SIZE_TRAIN[0]}/{cfg.INPUT.MAX_SIZE_TRAIN}"
    source_only, adaptation = (median_per_image(training[m]) for m in ("source-only", "adaptation"))
    plain, adapted = (statistics.median(inference[m]) for m in inference)
    consumed = 1 / adaptation
    wait = statistics.median(w / (w + c) for w, c, _ in training["adaptation"])
    lines = [
        f"`{args.config_file}` on {device}; AMP {'on' if cfg.SOLVER.AMP.ENABLED else 'off'}; "
        f"train/test size (short side/max) {size}; random initial weights"
        + (f" (MODEL.WEIGHTS {cfg.MODEL.WEIGHTS} not loaded: speed does not depend on them)"
           if cfg.MODEL.WEIGHTS else "")
        + (", synthetic {}x{} images".format(*args.synthetic_images) if args.synthetic_images
           else "")
        + (f"; overrides `{' '.join(args.opts)}`" if args.opts else "")
        + f"; {cfg.SOLVER.IMS_PER_BATCH} source + {target_batch_size(cfg)} target images per "
        f"adaptation step, {cfgs['source-only'].SOLVER.IMS_PER_BATCH} source images per "
        f"source-only step; medians of {args.steps} steps after {args.warmup}, of "
        f"{len(inference['adapted model'])} images at inference.",
        "",
        tabulate([
            ("training, s per image", f"{source_only:.3f}", f"{adaptation:.3f}",
             f"{adaptation / source_only:.3f}"),
            ("training, peak memory (MiB)", f"{memory['source-only']:.0f}",
             f"{memory['adaptation']:.0f}", f"{memory['adaptation'] / memory['source-only']:.3f}"),
            ("inference, s per image", f"{plain:.4f}", f"{adapted:.4f}", f"{adapted / plain:.3f}"),
            (f"data loading, images/s (alone, DATALOADER.NUM_WORKERS "
             f"{cfg.DATALOADER.NUM_WORKERS}) vs images/s adaptation training consumes",
             f"{loading:.1f}", f"{consumed:.1f}", f"{loading / consumed:.1f}"),
            ("share of an adaptation step waiting for data", "", f"{100 * wait:.1f}%", ""),
        ], headers=["measure", "source-only / plain", "adaptation / adapted", "ratio"],
            tablefmt="pipe", disable_numparse=True),
        "",
        f"Plain and adapted predictions identical: {'yes' if identical else 'NO'}.",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--synthetic-images", metavar="WIDTHxHEIGHT", type=width_x_height,
                        help="train on synthetic scenes of this size instead of the config's data")
    parser.add_argument("--warmup", type=at_least(0), default=2)
    parser.add_argument("--steps", type=at_least(1), default=8, help="measured steps per mode")
    parser.add_argument("--inference-repetitions", type=at_least(1), default=3)
    parser.add_argument("--loader-batches", type=at_least(1), default=20)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--output", type=output_file, help="also write the table to this file")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()

    try:
        cfgs = load(args)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from e
    print(f"[{time.strftime('%H:%M:%S')}] peak memory, each mode in a fresh process", flush=True)
    memory = {mode: measure_peak_memory(args, mode, args.warmup + 1) for mode in cfgs}
    print(f"[{time.strftime('%H:%M:%S')}] training, modes in turn", flush=True)
    training, runs = measure_training(cfgs, args.warmup, args.steps)
    profile = profile_step(runs["adaptation"], 20) if args.profile else None
    print(f"[{time.strftime('%H:%M:%S')}] inference, models in turn", flush=True)
    inference, identical = measure_inference(cfgs, runs, args.inference_repetitions)
    print(f"[{time.strftime('%H:%M:%S')}] data loading alone", flush=True)
    loading = measure_loading(cfgs["adaptation"], args.loader_batches)

    table = report(args, cfgs, training, memory, inference, identical, loading)
    print("\n" + table)
    if profile:
        print("\nOne adaptation step, by operator:\n" + profile)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(args.output, keep=True) as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
