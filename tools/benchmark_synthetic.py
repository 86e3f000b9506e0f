#!/usr/bin/env python
"""The paper's ablation (Table 1), over seeds, on the built-in synthetic domains.

Variants: source-only, image-level, instance-level, both, both + consistency, an oracle trained on
labeled target images, and photometric augmentation alone; and, when asked for by name, the full
method on top of that augmentation.

Protocol. Every detector starts, like the paper's from ImageNet, from one shared starting point: a
Faster R-CNN trained on the labeled clean source domain (stage 1, ``--pretrain-iters``, run once).
Each (variant, seed) then trains ``--iters`` more steps from it (stage 2) with its config under
configs/synthetic/: source-only keeps training on source; the adaptation variants add the unlabeled
target training images; the oracle trains on the labeled target images; photometric trains on
source with albumentations' fog/brightness/contrast/blur. All are evaluated on the source and the
target val splits. Seeds vary stage 2 (data order, sampling, initialization of the domain heads).
Stage-2 runs go ``--jobs`` at a time, sharing the CPU's cores (a single detectron2 process leaves a
2-core CPU partly idle). Both stages train in ``--precision``: mixed (``SOLVER.AMP.ENABLED``:
bfloat16 on a CPU, float16 on a GPU; the default where the CPU runs bf16 natively) or fp32. Each
stage-2 run is evaluated with ``--weights``: by default the mean of its weights over its second
half (``SOLVER.WEIGHT_AVERAGING``), which keeps one seed's late swing of the adversarial game
from deciding its row.

Writes OUTPUT/results.md (target AP50 mean ± std and per class, source AP50, the share of the
source-only -> oracle gap closed, seconds per iteration) and OUTPUT/results.png, and prints both.

    python tools/benchmark_synthetic.py                    # all variants, seeds 1 2 3, fog
    python tools/benchmark_synthetic.py --quick            # source-only, DA, oracle; one seed
    python tools/benchmark_synthetic.py --quick --seeds 1 2 3  # the same, over three seeds
    python tools/benchmark_synthetic.py --precision fp32 --weights last  # as before 2026-11-27
    python tools/benchmark_synthetic.py --target photoreal --variants source_only oracle
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import da_detect  # noqa: F401  (detectron2 compatibility, registrations; before detectron2)
from da_detect.argument_types import above_zero, at_least, output_folder
from da_detect.atomic_file import atomic_open, keep_earlier
from da_detect.config import ConfigError, load_config
from da_detect.data.builtin import synthetic_split_name
from da_detect.data.synthetic import CLASSES, SOURCE_DOMAIN, TARGET_DOMAINS
from da_detect.engine.cpu_mixed_precision import cpu_has_native_bfloat16
from da_detect.evaluation.comparison import gap_closed, mean_std
from tabulate import tabulate

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "synthetic"
VARIANTS = {
    "source_only": "faster_rcnn_R18_FPN_source_only.yaml",
    "photometric": "faster_rcnn_R18_FPN_photometric.yaml",
    "image": "da_faster_rcnn_R18_FPN_image_only.yaml",
    "instance": "da_faster_rcnn_R18_FPN_instance_only.yaml",
    "image+instance": "da_faster_rcnn_R18_FPN_image_instance.yaml",
    "image+instance+consistency": "da_faster_rcnn_R18_FPN.yaml",
    "oracle": "faster_rcnn_R18_FPN_oracle.yaml",
    "image+instance+consistency+photometric": "da_faster_rcnn_R18_FPN_photometric.yaml",
}
# Run only when named: the default set is the paper's table and its two references.
OPT_IN_VARIANTS = ("image+instance+consistency+photometric",)
DEFAULT_VARIANTS = [v for v in VARIANTS if v not in OPT_IN_VARIANTS]
ADAPTATION_VARIANTS = ("image", "instance", "image+instance", "image+instance+consistency",
                       "image+instance+consistency+photometric")
# the keys the benchmark sets for each run, and what from: an override of one would change
# what an option says, or every stage alike where each has its own
SET_PER_RUN = {"SEED": "--seeds", "SOLVER.MAX_ITER": "--pretrain-iters and --iters",
               "SOLVER.BASE_LR": "--lr", "SOLVER.AMP.ENABLED": "--precision",
               "MODEL.WEIGHTS": "stage 1's model", "OUTPUT_DIR": "--output",
               "DATASETS.TRAIN": "--variants", "DATASETS.TARGET_TRAIN": "--variants and --target",
               "DATASETS.TEST": "--target", "SOLVER.STEPS": "each stage's schedule",
               "SOLVER.WARMUP_ITERS": "each stage's schedule",
               "SOLVER.CHECKPOINT_PERIOD": "each stage's schedule"}
QUICK = {"variants": ["source_only", "image+instance+consistency", "oracle"], "seeds": [1],
         "pretrain_iters": 200, "iters": 100}


class RunFailed(Exception):
    """A training run that exited with an error; the message names its log."""


def train_net(config, output_dir, opts, threads=None):
    """Run tools/train_net.py (with ``threads`` CPU threads, if given); its output goes to
    output_dir/stdout.txt, and a record of what it runs to output_dir/RUN_RECORD, marked finished
    at its end. A run cut short earlier starts again (it writes its checkpoint at its end only).
    Raises :class:`RunFailed`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    write_record(output_dir, config, opts, finished=False)
    command = [sys.executable, str(REPO / "tools" / "train_net.py"), "--config-file", str(config),
               "--resume", "OUTPUT_DIR", str(output_dir), "WANDB.ENABLED", "False", *opts]
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
                              if threads else {}))
    with open(output_dir / "stdout.txt", "a") as log:  # an earlier attempt's output kept above
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    if done.returncode:
        raise RunFailed(f"training failed (exit {done.returncode}); see "
                        f"{output_dir / 'stdout.txt'}")
    write_record(output_dir, config, opts, finished=True)


RUN_RECORD = "benchmark_run.json"  # what a run was started with, and whether it finished
# options only a domain-adaptive model reads: left out of other runs' records, so a source-only
# or oracle run can serve benchmarks that vary them
ADAPTATION_KEYS = ("MODEL.DA.", "SOLVER.TARGET_IMS_PER_BATCH", "INPUT.ALBUMENTATIONS.TARGET")


def run_options(config, opts):
    """What a run's results depend on: its config and options, but the path of MODEL.WEIGHTS
    (the stage-1 model of its folder, which may be a link to another run's) and, for a model
    that does not adapt, the options only adaptation reads."""
    adapts = config.name in {VARIANTS[v] for v in ADAPTATION_VARIANTS}
    pairs = [(str(k), str(v)) for k, v in zip(opts[::2], opts[1::2])
             if k != "MODEL.WEIGHTS" and (adapts or not str(k).startswith(ADAPTATION_KEYS))]
    return {"config": config.name, "opts": [x for pair in pairs for x in pair]}


def write_record(output_dir, config, opts, finished):
    with atomic_open(output_dir / RUN_RECORD) as f:
        json.dump({**run_options(config, opts), "finished": finished}, f, indent=1)


def finished(config, output_dir, opts, mark):
    """Whether ``output_dir`` holds the finished run of ``config`` and ``opts`` (a folder of a
    version that wrote no records: whether it holds the file ``mark``); exits with an error
    naming the folder where it holds a run with other options."""
    record = output_dir / RUN_RECORD
    if not record.exists():
        return (output_dir / mark).exists()
    earlier = json.loads(record.read_text())
    if {k: v for k, v in earlier.items() if k != "finished"} != run_options(config, opts):
        sys.exit(f"error: {output_dir} holds a run with other options ({earlier}); give the "
                 f"benchmark another --output")
    return earlier["finished"]


def precision_opts(args):
    return ["SOLVER.AMP.ENABLED", str(args.precision == "mixed")]


def pretrain_opts(args):
    return ["SOLVER.MAX_ITER", str(args.pretrain_iters),
            "SOLVER.STEPS", f"({int(0.8 * args.pretrain_iters)},)",
            "SOLVER.WARMUP_ITERS", str(min(100, args.pretrain_iters // 5)),
            "SOLVER.CHECKPOINT_PERIOD", str(args.pretrain_iters), "DATASETS.TEST", "()",
            *precision_opts(args), *args.opts]


def pretrain(args):
    """Stage 1: the shared source-only starting point. Returns its weights."""
    output_dir = args.output / "pretrain"
    config = CONFIGS / VARIANTS["source_only"]
    opts = pretrain_opts(args)
    if not finished(config, output_dir, opts, "model_final.pth"):
        log(f"stage 1: source-only pretraining, {args.pretrain_iters} iterations -> {output_dir}")
        train_net(config, output_dir, opts)
    return output_dir / "model_final.pth"


def stage2_opts(variant, seed, weights, args):
    target_train = synthetic_split_name(args.target, "train")
    target_val = synthetic_split_name(args.target, "val")
    source_val = synthetic_split_name(SOURCE_DOMAIN, "val")
    opts = ["SEED", str(seed), "MODEL.WEIGHTS", str(weights), "SOLVER.BASE_LR", str(args.lr),
            "SOLVER.WARMUP_ITERS", "0", "SOLVER.MAX_ITER", str(args.iters), "SOLVER.STEPS", "()",
            "SOLVER.CHECKPOINT_PERIOD", str(args.iters),
            "DATASETS.TEST", f"('{source_val}', '{target_val}')"]
    if variant in ADAPTATION_VARIANTS:
        opts += ["DATASETS.TARGET_TRAIN", f"('{target_train}',)"]
    if variant == "oracle":
        opts += ["DATASETS.TRAIN", f"('{target_train}',)"]
    if args.weights == "averaged":
        opts += ["SOLVER.WEIGHT_AVERAGING.ENABLED", "True",
                 "SOLVER.WEIGHT_AVERAGING.START_ITER", str(args.iters // 2),
                 "SOLVER.WEIGHT_AVERAGING.PERIOD", str(max(1, args.iters // 8))]
    return opts + precision_opts(args) + list(args.opts)


def stage2(variant, seed, weights, args):
    """(config, output folder, options) of a stage-2 run."""
    return (CONFIGS / VARIANTS[variant], args.output / variant.replace("+", "_") / f"seed{seed}",
            stage2_opts(variant, seed, weights, args))


def run(variant, seed, weights, args):
    config, output_dir, opts = stage2(variant, seed, weights, args)
    if not finished(config, output_dir, opts, "results.json"):
        log(f"stage 2: {variant}, seed {seed} -> {output_dir}")
        threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
        train_net(config, output_dir, opts, threads)
    results = json.loads((output_dir / "results.json").read_text())

    def metrics(split):  # null: a metric of nothing to find (NaN)
        return {k: math.nan if v is None else v for k, v in results[split]["bbox"].items()}

    return {"target": metrics(synthetic_split_name(args.target, "val")),
            "source": metrics(synthetic_split_name(SOURCE_DOMAIN, "val")),
            "seconds_per_iter": median_iteration_time(output_dir / "metrics.json")}


def median_iteration_time(metrics):
    """The median time of an iteration in the last attempt logged to the file ``metrics``
    (detectron2's metrics.json; an attempt cut short and started again appends its lines from
    iteration 0 again). Only the timed lines count: an evaluation's line can follow a later
    step's. None where none is timed: detectron2 times iterations after the first few."""
    times, last = [], None
    for entry in map(json.loads, metrics.open()):
        if "time" not in entry:
            continue
        if last is not None and entry["iteration"] <= last:
            times = []  # a new attempt
        last = entry["iteration"]
        times.append(entry["time"])
    return statistics.median(times) if times else None


def seconds_per_iter(values):
    values = [v for v in values if v is not None]
    return f"{statistics.mean(values):.2f}" if values else "n/a"


def table(runs, classes):
    closed = gap_closed({v: statistics.mean(r["target"]["AP50"] for r in seeds)
                         for v, seeds in runs.items()})
    header = ["variant", "target AP50", *[f"target {c}" for c in classes], "source AP50",
              "gap closed", "s/iter"]
    rows = []
    for variant, seeds in runs.items():
        row = [variant, mean_std([r["target"]["AP50"] for r in seeds])]
        row += [mean_std([r["target"][f"AP50-{c}"] for r in seeds]) for c in classes]
        row += [mean_std([r["source"]["AP50"] for r in seeds]),
                f"{closed[variant]:.0f}%" if variant in closed else "",
                seconds_per_iter([r["seconds_per_iter"] for r in seeds])]
        rows.append(row)
    return tabulate(rows, headers=header, tablefmt="pipe", disable_numparse=True)


def chart(runs, target, path):
    """Bars of target and source AP50 (mean, with the std over seeds) per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(runs)
    fig, ax = plt.subplots(figsize=(1.6 * len(variants) + 2, 4))
    for offset, (domain, color) in enumerate((("target", "tab:blue"), ("source", "tab:gray"))):
        values = [[r[domain]["AP50"] for r in runs[v]] for v in variants]
        ax.bar([i + 0.4 * offset for i in range(len(variants))],
               [statistics.mean(v) for v in values], width=0.4, color=color,
               yerr=[statistics.stdev(v) if len(v) > 1 else 0 for v in values], capsize=3,
               label=f"{domain} ({target if domain == 'target' else SOURCE_DOMAIN} val)")
    ax.set_xticks([i + 0.2 for i in range(len(variants))])
    ax.set_xticklabels([v.replace("+", "+\n") for v in variants], fontsize=8)
    ax.set_ylabel("AP50 (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="lower right")
    ax.set_title(f"synthetic {SOURCE_DOMAIN} -> {target}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def log(message):
    sys.stdout.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")  # one write: runs in threads
    sys.stdout.flush()


def parse_args(argv=None):
    """The command line; ``--quick`` sets QUICK's values, and a flag given beside it wins."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="foggy",
                        choices=TARGET_DOMAINS)
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS,
                        help=f"any of {list(VARIANTS)} (default: all but {list(OPT_IN_VARIANTS)})")
    parser.add_argument("--seeds", nargs="+", type=at_least(0), default=[1, 2, 3])
    parser.add_argument("--pretrain-iters", type=at_least(1), default=800)
    parser.add_argument("--iters", type=at_least(1), default=200, help="stage-2 iterations per run")
    parser.add_argument("--lr", type=above_zero, default=0.005, help="stage-2 learning rate")
    parser.add_argument("--precision", choices=["mixed", "fp32"],
                        default="mixed" if cpu_has_native_bfloat16() else "fp32",
                        help="mixed: SOLVER.AMP.ENABLED (bfloat16 autocast on a CPU, float16 on a "
                             "GPU); the default where the CPU runs bf16 natively (AVX512-BF16 or "
                             "AMX), fp32 elsewhere")
    parser.add_argument("--weights", choices=["averaged", "last"], default="averaged",
                        help="the stage-2 weights evaluated: their mean over the second half of "
                             "stage 2, every eighth of it (SOLVER.WEIGHT_AVERAGING), or the last "
                             "step's")
    parser.add_argument("--jobs", type=at_least(1), default=2,
                        help="stage-2 runs at a time, the CPU's cores shared between them (one "
                             "detectron2 process keeps about 1.2 of 2 cores busy)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a short run: {QUICK['variants']}, seeds {QUICK['seeds']}, "
                             f"{QUICK['pretrain_iters']} + {QUICK['iters']} iterations (each "
                             "replaced by its own flag, if given)")
    parser.add_argument("--output", type=output_folder,
                        default=REPO / "output" / "benchmark" / time.strftime("%Y%m%d-%H%M%S"),
                        help="a folder; runs already finished there are reused")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="KEY VALUE config overrides for every run")
    if parser.parse_known_args(argv)[0].quick:
        parser.set_defaults(**QUICK)
    args = parser.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    for name in ("variants", "seeds"):
        twice = sorted({v for v in getattr(args, name) if getattr(args, name).count(v) > 1})
        if twice:
            parser.error(f"--{name}: {twice} given twice")
    overridden = [key for key in args.opts[::2] if key in SET_PER_RUN]
    if overridden:
        parser.error(f"override {overridden[0]}: the benchmark sets it for each run (from "
                     f"{SET_PER_RUN[overridden[0]]})")
    runs = [("stage 1", VARIANTS["source_only"], pretrain_opts(args))] + [
        (variant, VARIANTS[variant], stage2_opts(variant, args.seeds[0], "", args))
        for variant in args.variants]
    for name, config, opts in runs:  # a bad override named now, not in a run's log
        try:
            load_config(str(CONFIGS / config), opts)
        except ConfigError as e:
            parser.error(f"{name} ({config}): {e}")
    return args


def main():
    args = parse_args()

    start = time.time()
    try:
        weights = pretrain(args)
    except RunFailed as e:
        sys.exit(f"error: stage 1: {e}")
    runs, failures = run_all(weights, args)
    minutes = (time.time() - start) / 60
    evaluated = ("weights averaged over its second half" if args.weights == "averaged"
                 else "its last weights")
    report = (f"Synthetic {SOURCE_DOMAIN} -> {args.target}: AP50 (%) on "
              f"{synthetic_split_name(args.target, 'val')} (target) and "
              f"{synthetic_split_name(SOURCE_DOMAIN, 'val')} (source); seeds {args.seeds}; "
              f"{args.pretrain_iters} source-only iterations, then {args.iters} per variant "
              f"(lr {args.lr}; {evaluated}), {args.jobs} at a time, "
              f"{'mixed precision' if args.precision == 'mixed' else 'fp32'}; "
              f"{minutes:.0f} min on this machine "
              f"({os.cpu_count()} cores).\n\n"
              + table(runs, CLASSES) + "\n")
    if failures:
        report += ("\nNot in the table, failed: " + "; ".join(failures)
                   + f". Run the same command with --output {args.output} to train them again "
                     f"and reuse the runs that finished.\n")
    # a run of other --variants or --seeds may have written them: they are kept
    keep_earlier(args.output / "results.png")
    with atomic_open(args.output / "results.md", keep=True) as f:
        f.write(report)
    chart(runs, args.target, args.output / "results.png")
    print("\n" + report + f"\nChart: {args.output / 'results.png'}")
    if failures:
        sys.exit(f"error: {len(failures)} runs failed (named above)")


def run_all(weights, args):
    """Every (variant, seed) run, ``args.jobs`` at a time: ({variant: [run, ...]} of the runs
    that finished, ["variant seed N: why", ...] of those that failed)."""
    for variant in args.variants:  # before any training: no folder holds other options
        for seed in args.seeds:
            finished(*stage2(variant, seed, weights, args), "results.json")
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {(v, s): pool.submit(run, v, s, weights, args)
                   for v in args.variants for s in args.seeds}
    runs, failures = {}, []
    for (variant, seed), future in futures.items():
        try:
            runs.setdefault(variant, []).append(future.result())
        except RunFailed as e:
            failures.append(f"{variant} seed {seed}: {e}")
    return {v: r for v, r in runs.items() if r}, failures


if __name__ == "__main__":
    main()
