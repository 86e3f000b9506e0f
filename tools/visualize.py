#!/usr/bin/env python
"""Pictures of what adaptation does, for a source-only and an adapted model of the same config:
detections side by side on target images, and both models' features of both domains in a t-SNE.

* OUT/detections_<image>.png: target images with their ground truth, the source-only model's
  detections and the adapted model's, side by side;
* OUT/features.png: t-SNE of each model's backbone features of source and target images,
  colored by domain (aligned domains overlap).

    python tools/visualize.py --config-file CONFIG --source-only A.pth --adapted B.pth \
        --output OUT [--images 4] [--features 100] [--score-threshold 0.5] [KEY VALUE ...]

OUT must be a new or empty folder.
Source and target splits: the config's DATASETS.TEST, first and last; where it holds one split,
the target, the source is DATASETS.TRAIN's first (override with --source-split /
--target-split). An image that cannot be read is skipped, named in a warning.
"""
import argparse
import sys

import da_detect  # noqa: F401  (detectron2 compatibility, registrations; before detectron2)
from da_detect.argument_types import at_least, fraction, new_output_folder
from da_detect.checkpoint import CheckpointError
from da_detect.config import ConfigError, load_config, require_registered
from da_detect.data.classes import detected_classes
from da_detect.data.images import readable_images
from da_detect.data.problems import DatasetError, Problems
from da_detect.engine.predictor import Predictor
from da_detect.visualization import (
    draw_detections,
    draw_ground_truth,
    save_feature_plot,
    save_panels,
)
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import convert_image_to_rgb
from tqdm import tqdm


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--source-only", required=True, help="weights of the source-only model")
    parser.add_argument("--adapted", required=True, help="weights of the adapted model")
    parser.add_argument("--output", required=True, type=new_output_folder,
                        help="a new or empty folder")
    parser.add_argument("--source-split", help="default: the config's first DATASETS.TEST "
                                               "(its first DATASETS.TRAIN where TEST holds one)")
    parser.add_argument("--target-split", help="default: the config's last DATASETS.TEST")
    parser.add_argument("--images", type=at_least(1), default=4, help="target images to draw")
    parser.add_argument("--features", type=at_least(2), default=100,
                        help="images per domain to embed (t-SNE; at least 2)")
    parser.add_argument("--score-threshold", type=fraction, default=0.5,
                        help="the least score of a detection drawn (default: %(default)s)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()
    try:
        cfg = load_config(args.config_file, args.opts)
        detected_classes(cfg)  # the models' class names, for their detections
        test = cfg.DATASETS.TEST
        if not test and not args.target_split:
            raise ConfigError("DATASETS.TEST is empty: give --target-split")
        target_split = args.target_split or test[-1]
        source_split = args.source_split or (test[0] if len(test) > 1 else cfg.DATASETS.TRAIN[0])
        if source_split == target_split:
            raise ConfigError(f"the source and target splits are both {source_split!r}: the "
                              f"t-SNE would compare a split with itself (give --source-split or "
                              f"--target-split)")
        for option, split in (("--source-split", source_split), ("--target-split", target_split)):
            require_registered(split, option)
        print(f"source split {source_split}, target split {target_split}")
        source, target = DatasetCatalog.get(source_split), DatasetCatalog.get(target_split)
        models = {"source-only": Predictor(cfg, args.source_only),
                  "adapted": Predictor(cfg, args.adapted)}
    except (ConfigError, DatasetError, CheckpointError) as e:
        sys.exit(f"error: {e}")
    metadata = MetadataCatalog.get(target_split)  # its ground truth
    model_metadata = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])  # the classes the models detect
    args.output.mkdir(parents=True, exist_ok=True)

    problems = Problems()
    for record, image in tqdm(readable_images(target[:args.images], cfg.INPUT.FORMAT, problems),
                              total=len(target[:args.images]), desc="drawing detections",
                              unit="image"):
        rgb = convert_image_to_rgb(image, cfg.INPUT.FORMAT)
        panels = [draw_ground_truth(rgb, record, metadata)]
        panels += [draw_detections(rgb, model(image)["instances"].to("cpu"), model_metadata,
                                   args.score_threshold) for model in models.values()]
        save_panels(args.output / f"detections_{record['image_id']}.png", panels,
                    [f"ground truth ({target_split})", *models])

    domains, embeddings = [], {name: [] for name in models}
    for domain, records in (("source", source[:args.features]), ("target", target[:args.features])):
        for _, image in tqdm(readable_images(records, cfg.INPUT.FORMAT, problems),
                             total=len(records), desc=f"embedding {domain} images", unit="image"):
            domains.append(domain)
            for name, model in models.items():
                embeddings[name].append(model.backbone_embedding(image))
    problems.log(f"{source_split} and {target_split}")
    if min(domains.count("source"), domains.count("target")) < 2:
        sys.exit(f"error: fewer than 2 readable images of {source_split} or {target_split} to "
                 f"embed (any unreadable one is named above): no t-SNE")
    save_feature_plot(args.output / "features.png", list(embeddings.values()), domains,
                      [f"{name}: {source_split} vs {target_split}" for name in models])
    print(f"pictures written to {args.output}")


if __name__ == "__main__":
    main()
