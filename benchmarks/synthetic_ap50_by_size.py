#!/usr/bin/env python
"""Where a synthetic benchmark's target AP50 is lost: AP50 by object size, per variant.

Nearer objects are drawn larger, so size stands for distance: on the foggy target the smallest
objects are the farthest, seen through the thickest fog (transmission exp(-beta * depth)). Reads
the detections a ``tools/benchmark_synthetic.py`` run left in OUTPUT/<variant>/seed<k>/inference/,
splits the target val split's ground-truth boxes into area thirds (COCO's area ranges, with the
thirds' bounds), and prints a markdown table of AP50 (IoU 0.5, mean over classes) per third, mean
± std over seeds, with the share of the source-only -> oracle gap each variant closes per third.

    python benchmarks/synthetic_ap50_by_size.py output/benchmark/full-foggy --target foggy
"""
import argparse
import contextlib
import io
import json
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tabulate import tabulate

from da_detect.data.builtin import synthetic_split_name
from da_detect.data.synthetic import TARGET_DOMAINS
from da_detect.evaluation.coco_ap50 import ap50_per_class
from da_detect.evaluation.comparison import gap_closed, mean_std
from detectron2.data import MetadataCatalog  # after da_detect: its compatibility fixes first


def area_thirds(coco):
    """The two ground-truth box areas that split the (non-crowd) boxes into thirds."""
    areas = [a["area"] for a in coco.dataset["annotations"] if not a.get("iscrowd", 0)]
    return [float(x) for x in np.quantile(areas, [1 / 3, 2 / 3])]


def ap50_by_area(coco, detections_json, bounds):
    """AP50 (%) over all boxes and per area range [0, b0), [b0, b1), [b1, inf)."""
    try:
        detections = json.loads(Path(detections_json).read_text())
    except json.JSONDecodeError as e:  # an evaluation cut short
        raise SystemExit(f"error: {detections_json}: not a JSON file of detections ({e})") from e
    if not detections:
        return [0.0] * (len(bounds) + 2)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        try:
            results = coco.loadRes(detections)
        except (AssertionError, KeyError, TypeError, IndexError) as e:  # pycocotools asserts
            raise SystemExit(f"error: {detections_json}: not detections of {len(coco.imgs)} "
                             f"images of this split ({type(e).__name__}: {e})") from e
        evaluation = COCOeval(coco, results, "bbox")
        edges = [0.0, *bounds, 1e10]
        # pycocotools' ranges hold both ends: each upper end just below the bound, so that a box
        # on a bound counts in one range only
        evaluation.params.areaRng = [[0.0, 1e10]] + [[low, float(np.nextafter(high, 0.0))]
                                                    for low, high in zip(edges, edges[1:])]
        evaluation.params.areaRngLbl = ["all"] + [f"range{i}" for i in range(len(edges) - 1)]
        evaluation.evaluate()
        evaluation.accumulate()
    values = []
    for area in range(len(evaluation.params.areaRng)):  # "all", then the ranges
        per_class = ap50_per_class(evaluation, area)
        values.append(float(np.nanmean(per_class)) if np.isfinite(per_class).any()
                      else float("nan"))
    return values


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="a tools/benchmark_synthetic.py --output folder")
    parser.add_argument("--target", default="foggy", choices=TARGET_DOMAINS)
    args = parser.parse_args()
    if not args.output.is_dir():
        parser.error(f"{args.output}: {'a file' if args.output.exists() else 'no such folder'}, "
                     f"not a tools/benchmark_synthetic.py --output folder")

    dataset = synthetic_split_name(args.target, "val")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(MetadataCatalog.get(dataset).json_file)
    bounds = area_thirds(coco)
    found = list(args.output.glob(f"*/seed*/inference/{dataset}/coco_instances_results.json"))
    if not found:
        raise SystemExit(f"error: no detections on {dataset} under {args.output}"
                         f"/<variant>/seed<k>/inference/")
    runs = {}
    # source-only first, the oracle last, as the benchmark's table has them
    for path in sorted(found, key=lambda p: (p.parents[3].name != "source_only",
                                             p.parents[3].name == "oracle", p)):
        variant = path.parents[3].name
        runs.setdefault(variant, []).append(ap50_by_area(coco, path, bounds))

    means = {v: np.mean(r, axis=0) for v, r in runs.items()}
    names = ["all", f"small (area < {bounds[0]:.0f} px²)",
             f"medium ({bounds[0]:.0f}-{bounds[1]:.0f})", f"large (≥ {bounds[1]:.0f})"]
    closed = [gap_closed({v: m[k] for v, m in means.items()}) for k in range(len(names))]
    rows = []
    for variant, values in runs.items():
        cells = []
        for k in range(len(names)):
            cell = mean_std([v[k] for v in values])
            if variant in closed[k]:
                cell += f" [{closed[k][variant]:.0f}%]"
            cells.append(cell)
        rows.append([variant, str(len(values)), *cells])
    print(f"Target AP50 (%) on {dataset} by ground-truth box area (thirds of its boxes), mean ± "
          f"std over seeds; in brackets, the share of the source-only -> oracle gap closed, "
          f"where there is a gap.\n")
    print(tabulate(rows, headers=["variant", "seeds", *names], tablefmt="pipe",
                   disable_numparse=True))


if __name__ == "__main__":
    main()
