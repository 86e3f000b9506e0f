#!/usr/bin/env python
"""Check registered datasets and print, per split, the images found, the boxes per class (crowd /
ignore regions apart) and every problem met while reading them.

    python tools/check_dataset.py cityscapes_car_train foggy_cityscapes_val_0.02 kitti_car_train
    python tools/check_dataset.py --config-file my_domains.yaml my_target_train
    python tools/check_dataset.py --read-images my_target_train

With ``--read-images`` every image is also decoded, as training reads it, and checked against the
size its annotation gives: each one that training or evaluation would stop at is listed.

Exits non-zero if a split cannot be read at all, has no usable image, or any problem was met.
"""
import argparse
import collections
import sys

import da_detect  # noqa: F401
from da_detect.config import ConfigError, load_config, require_registered
from da_detect.data.images import readable_images
from da_detect.data.problems import DatasetError, Problems
from da_detect.data.registry import load_with_problems, registered_here
from detectron2.data import DatasetCatalog, MetadataCatalog
from tabulate import tabulate
from tqdm import tqdm

UNREGISTERED_HINT = ("; a domain that a config names (DATASETS.*_DOMAINS) is registered by "
                     "giving the config: --config-file CONFIG")


def check(name, read_images=False):
    """(number of usable images, Counter of their boxes per class name, Problems); with
    ``read_images``, the images that cannot be used are among the problems, not counted."""
    if registered_here(name):
        dicts, problems = load_with_problems(name)
    else:
        dicts, problems = DatasetCatalog.get(name), Problems()
    if read_images:
        dicts = [record for record, _ in tqdm(
            readable_images(dicts, "BGR", problems), total=len(dicts),
            desc=f"{name}: reading images", unit="image", file=sys.stderr)]
    classes = MetadataCatalog.get(name).get("thing_classes") or []
    boxes = collections.Counter()
    for d in dicts:
        for a in d.get("annotations", []):
            label = classes[a["category_id"]] if a["category_id"] < len(classes) else a["category_id"]
            boxes[f"{label} (crowd/ignore)" if a.get("iscrowd") else label] += 1
    return len(dicts), boxes, problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="+", help="registered dataset names")
    parser.add_argument("--config-file", help="a config whose DATASETS.*_DOMAINS to register")
    parser.add_argument("--read-images", action="store_true",
                        help="also decode every image and check its size against its annotation")
    args = parser.parse_args()
    if args.config_file:
        try:
            load_config(args.config_file)
        except ConfigError as e:
            sys.exit(f"error: {e}")
    failed = False
    for name in args.datasets:
        try:
            require_registered(name)
        except ConfigError as e:
            print(f"{e}{'' if args.config_file else UNREGISTERED_HINT}")
            failed = True
            continue
        try:
            images, boxes, problems = check(name, args.read_images)
        except DatasetError as e:
            print(f"{name}: cannot be read: {e}")
            failed = True
            continue
        except Exception as e:  # detectron2's own loaders (coco_2017_val, ...) raise anything
            if registered_here(name):
                raise
            print(f"{name}: cannot be read: {type(e).__name__}: {e}")
            failed = True
            continue
        print(f"{name}: {images} images, {sum(boxes.values())} boxes")
        if boxes:
            print(tabulate(sorted(boxes.items()), headers=["class", "boxes"], tablefmt="pipe"))
        if problems.objects_left_out:
            print(f"  {problems.left_out_line()}")
        for path, message in problems:
            print(f"  problem: {path}: {message}")
        if not images:
            print(f"  {name} has no usable image: training or evaluating on it stops")
        failed |= bool(problems) or not images
        print()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
