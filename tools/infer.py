#!/usr/bin/env python
"""Run a trained detector on a folder of images; write the detections as COCO JSON and drawn images.

    python tools/infer.py --config-file CONFIG --input FOLDER --output OUT \
        [--score-threshold 0.5] MODEL.WEIGHTS model_final.pth [KEY VALUE ...]

OUT/detections.json is a COCO file (images, categories, and one annotation per detection with
its "score"), which tools and DATASETS.COCO_DOMAINS can read back; OUT/<image's file name> shows
the detections drawn with detectron2's Visualizer. OUT must be a new or empty folder (never the
input folder). An image that cannot be read is skipped, named in a warning, and left out of both.
"""
import argparse
import json
import sys
from pathlib import Path

import da_detect  # noqa: F401  (detectron2 compatibility, registrations; before detectron2)
from da_detect.argument_types import fraction, new_output_folder
from da_detect.atomic_file import atomic_open
from da_detect.checkpoint import CheckpointError
from da_detect.config import ConfigError, load_config
from da_detect.data.classes import detected_classes
from da_detect.data.custom import load_image_folder
from da_detect.data.images import readable_images
from da_detect.data.problems import DatasetError
from da_detect.engine.predictor import Predictor
from da_detect.visualization import draw_detections
from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import convert_image_to_rgb
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from PIL import Image
from tqdm import tqdm


def category_ids(name, num_classes):
    """The COCO category id of each of the split ``name``'s classes: a COCO-JSON split's own
    ids, 1..K for the others."""
    to_contiguous = MetadataCatalog.get(name).get("thing_dataset_id_to_contiguous_id")
    if to_contiguous:
        return [id_ for id_, _ in sorted(to_contiguous.items(), key=lambda item: item[1])]
    return list(range(1, num_classes + 1))


def coco_detections(records, outputs, classes, ids, score_threshold):
    """COCO dict of ``records`` (image dicts) and their predicted ``outputs`` above the threshold;
    class k is the category ``ids[k]``."""
    images, annotations = [], []
    for number, (record, output) in enumerate(zip(records, outputs), start=1):
        images.append({"id": number, "file_name": Path(record["file_name"]).name,
                       "width": record["width"], "height": record["height"]})
        for detection in instances_to_coco_json(output[output.scores >= score_threshold], number):
            _, _, width, height = detection["bbox"]
            annotations.append({**detection, "id": len(annotations) + 1,
                                "category_id": ids[detection["category_id"]],
                                "area": width * height, "iscrowd": 0})
    categories = [{"id": id_, "name": name} for id_, name in zip(ids, classes)]
    return {"images": images, "annotations": annotations, "categories": categories}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--input", required=True, help="folder of .jpg/.jpeg/.png images")
    parser.add_argument("--output", required=True, type=new_output_folder,
                        help="a new or empty folder")
    parser.add_argument("--score-threshold", type=fraction, default=0.5,
                        help="the least score of a detection written and drawn "
                             "(default: %(default)s)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()
    try:
        cfg = load_config(args.config_file, args.opts)
        records, problems = load_image_folder(args.input)
        if not records:
            raise DatasetError(f"no readable .jpg/.jpeg/.png images in {args.input}")
        classes = detected_classes(cfg)
        predictor = Predictor(cfg)
    except (ConfigError, DatasetError, CheckpointError) as e:
        sys.exit(f"error: {e}")
    metadata = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
    made = not args.output.exists()
    args.output.mkdir(parents=True, exist_ok=True)
    detected, outputs = [], []
    # an image can fail to decode after its header read fine (a truncated file)
    for record, image in tqdm(readable_images(records, cfg.INPUT.FORMAT, problems),
                              total=len(records), desc="detecting", unit="image"):
        instances = predictor(image)["instances"].to("cpu")
        detected.append(record)
        outputs.append(instances)
        drawn = draw_detections(convert_image_to_rgb(image, cfg.INPUT.FORMAT), instances,
                                metadata, args.score_threshold)
        Image.fromarray(drawn).save(args.output / Path(record["file_name"]).name)
    problems.log(args.input)
    if not detected:
        if made:
            args.output.rmdir()  # nothing was written in it
        sys.exit(f"error: none of the images in {args.input} could be decoded ({len(problems)} "
                 f"named above)")
    coco = coco_detections(detected, outputs, classes,
                           category_ids(cfg.DATASETS.TRAIN[0], len(classes)), args.score_threshold)
    with atomic_open(args.output / "detections.json") as f:
        json.dump(coco, f)
    skipped = f" ({len(problems)} skipped, named above)" if problems else ""
    print(f"{len(coco['annotations'])} detections in {len(detected)} images{skipped} -> "
          f"{args.output}")


if __name__ == "__main__":
    main()
