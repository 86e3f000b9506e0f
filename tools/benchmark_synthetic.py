#!/usr/bin/env python
"""Train and evaluate detectors on the built-in synthetic domains and compare them on the target.

Each variant is a config under configs/synthetic/; each (variant, seed) is one run of
tools/train_net.py into OUTPUT/<variant>/seed<k>. The table (markdown, also saved as
OUTPUT/results.md) gives target and source AP50 and the seconds per training iteration.

    python tools/benchmark_synthetic.py                       # source-only vs DA Faster R-CNN
    python tools/benchmark_synthetic.py --variants all --seeds 1 2 3
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

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
}
DEFAULT_VARIANTS = ["source_only", "image+instance+consistency"]
SOURCE_VAL, TARGET_VAL = "synthetic_clean_val", "synthetic_foggy_val"


def train(variant, seed, output_dir, opts):
    output_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(REPO / "tools" / "train_net.py"),
               "--config-file", str(CONFIGS / VARIANTS[variant]),
               "SEED", str(seed), "OUTPUT_DIR", str(output_dir),
               "DATASETS.TEST", f"('{SOURCE_VAL}', '{TARGET_VAL}')", *opts]
    print(f"[{time.strftime('%H:%M:%S')}] training {variant} (seed {seed}) -> {output_dir}",
          flush=True)
    with open(output_dir / "stdout.txt", "w") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True, cwd=REPO)
    results = json.loads((output_dir / "results.json").read_text())
    iteration_times = [m["time"] for m in map(json.loads, (output_dir / "metrics.json").open())
                       if "time" in m]
    return {
        "target": results[TARGET_VAL]["bbox"],
        "source": results[SOURCE_VAL]["bbox"],
        "seconds_per_iter": statistics.median(iteration_times),
    }


def mean_std(values):
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def table(runs, classes):
    header = ["variant", "target AP50", *[f"target {c}" for c in classes], "source AP50",
              "s/iter"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant, seeds in runs.items():
        row = [variant, mean_std([r["target"]["AP50"] for r in seeds])]
        row += [mean_std([r["target"][f"AP50-{c}"] for r in seeds]) for c in classes]
        row += [mean_std([r["source"]["AP50"] for r in seeds]),
                f"{statistics.mean(r['seconds_per_iter'] for r in seeds):.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS,
                        help=f"any of {list(VARIANTS)}, or 'all'")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--output", type=Path,
                        default=REPO / "output" / "benchmark" / time.strftime("%Y%m%d-%H%M%S"))
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()
    variants = list(VARIANTS) if args.variants == ["all"] else args.variants
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")

    from da_detect.data.synthetic import CLASSES

    runs = {v: [train(v, s, args.output / v.replace("+", "_") / f"seed{s}", args.opts)
                for s in args.seeds] for v in variants}
    report = (f"Synthetic clean -> foggy, AP50 (%) on {TARGET_VAL} (target) and {SOURCE_VAL} "
              f"(source), seeds {args.seeds}:\n\n" + table(runs, CLASSES) + "\n")
    (args.output / "results.md").write_text(report)
    print("\n" + report)


if __name__ == "__main__":
    main()
