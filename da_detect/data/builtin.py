"""Registers da-detect's built-in datasets with detectron2's DatasetCatalog and MetadataCatalog.

Datasets live under ``$DA_DETECT_DATASETS`` (default ``./datasets``), as detectron2's builtin
datasets live under ``$DETECTRON2_DATASETS``. Synthetic domains are generated there on first use.
"""
import os
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .synthetic import CLASSES, DOMAIN_STYLES, SplitSpec, ensure_split

SYNTHETIC_SPLIT_SIZES = {"train": 400, "val": 100}


def datasets_root():
    return Path(os.environ.get("DA_DETECT_DATASETS", "datasets"))


def synthetic_split_name(domain, split):
    return f"synthetic_{domain}_{split}"


def register_synthetic(root=None):
    """Register ``synthetic_<domain>_<split>`` for every style in DOMAIN_STYLES and split."""
    root = Path(root or datasets_root()) / "synthetic"
    for domain in DOMAIN_STYLES:
        for split, size in SYNTHETIC_SPLIT_SIZES.items():
            spec = SplitSpec(domain, split, size)
            name = synthetic_split_name(domain, split)
            DatasetCatalog.register(name, lambda spec=spec, name=name: _load_synthetic(spec, root, name))
            MetadataCatalog.get(name).set(
                thing_classes=list(CLASSES),
                json_file=str(root / domain / f"{split}.json"),
                image_root=str(root / domain / split),
                evaluator_type="coco",
                domain=domain,
            )


def _load_synthetic(spec, root, name):
    json_file, image_root = ensure_split(spec, root)
    return load_coco_json(str(json_file), str(image_root), name)


register_synthetic()
