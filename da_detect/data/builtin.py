"""Registers da-detect's built-in datasets with detectron2's DatasetCatalog and MetadataCatalog.

Datasets live under ``$DA_DETECT_DATASETS`` (default ``./datasets``), as detectron2's builtin
datasets live under ``$DETECTRON2_DATASETS``; datasets/README.md gives the folder trees.
Synthetic domains are generated there on first use; the real ones are read in their native layout.
"""
import os
from functools import partial
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from . import cityscapes, kitti, voc
from .registry import register_detection_dataset, with_note
from .synthetic import CLASSES, DOMAIN_STYLES, SplitSpec, ensure_split, split_files

FOGGY_BETAS = ("0.005", "0.01", "0.02")

SYNTHETIC_SPLIT_SIZES = {"train": 400, "val": 100}


def datasets_root():
    return Path(os.environ.get("DA_DETECT_DATASETS", "datasets")).expanduser()


def _naming_the_root(load, root):
    """``load``, whose :class:`DatasetError` (a folder not found, say) also names ``root``, the
    folder da-detect's built-in datasets are read under."""
    return with_note(load, lambda: f"da-detect's built-in datasets are read under "
                                   f"{os.path.abspath(root)}, DA_DETECT_DATASETS; "
                                   f"datasets/README.md shows their layouts")


def synthetic_split_name(domain, split):
    return f"synthetic_{domain}_{split}"


def register_synthetic(root=None):
    """Register ``synthetic_<domain>_<split>`` for every style in DOMAIN_STYLES and split."""
    for domain in DOMAIN_STYLES:
        for split, size in SYNTHETIC_SPLIT_SIZES.items():
            register_synthetic_split(SplitSpec(domain, split, size), root)


def register_synthetic_split(spec, root=None):
    """Register the synthetic split ``spec`` as ``synthetic_<domain>_<split>`` (generated on first
    use under ``root``/synthetic). Returns the name."""
    root = Path(root or datasets_root()) / "synthetic"
    name = synthetic_split_name(spec.domain, spec.split)
    DatasetCatalog.register(name, lambda: _load_synthetic(spec, root, name))
    json_file, image_root = split_files(spec, root)
    MetadataCatalog.get(name).set(
        thing_classes=list(CLASSES),
        json_file=str(json_file),
        image_root=str(image_root),
        evaluator_type="coco",
        domain=spec.domain,
    )
    return name


def _load_synthetic(spec, root, name):
    json_file, image_root = ensure_split(spec, root)
    return load_coco_json(str(json_file), str(image_root), name)


def _files(*patterns):
    """A function listing the files matching (folder, glob pattern) pairs, for the cache key."""
    return lambda: sorted(str(p) for folder, pattern in patterns for p in Path(folder).glob(pattern))


def register_cityscapes(root=None):
    """``cityscapes[_car]_{train,val}`` and ``foggy_cityscapes[_car]_{train,val}_<beta>``."""
    top = root or datasets_root()
    root = Path(top) / "cityscapes"
    for split in ("train", "val"):
        gt_dir = root / "gtFine" / split
        for car_only in (False, True):
            classes = ("car",) if car_only else cityscapes.CLASSES
            tag = "_car" if car_only else ""
            for beta in (None,) + FOGGY_BETAS:
                image_dir = root / ("leftImg8bit" if beta is None else "leftImg8bit_foggy") / split
                name = (f"cityscapes{tag}_{split}" if beta is None
                        else f"foggy_cityscapes{tag}_{split}_{beta}")
                register_detection_dataset(
                    name, _naming_the_root(cityscapes.load_cityscapes_detection, top),
                    {"image_dir": str(image_dir), "gt_dir": str(gt_dir), "classes": classes,
                     "foggy_beta": beta},
                    _files((gt_dir, f"*/*{cityscapes.POLYGONS_SUFFIX}"),
                           (image_dir, f"*/*{cityscapes.image_suffix(beta)}")),
                    thing_classes=list(classes), domain="foggy_cityscapes" if beta else "cityscapes")


def register_kitti(root=None):
    """``kitti_car_train``: every image of KITTI's object ``training`` folder."""
    top = root or datasets_root()
    root = Path(top) / "kitti"
    register_detection_dataset(
        "kitti_car_train", _naming_the_root(kitti.load_kitti_car, top), {"root": str(root)},
        _files((root / "training" / "label_2", "*.txt"), (root / "training" / "image_2", "*.png")),
        thing_classes=list(kitti.CLASSES), domain="kitti")


def register_sim10k(root=None):
    """``sim10k_train`` (car, motorbike, person) and ``sim10k_car_train``: all 10k images, in
    ``sim10k/VOC2012`` (where SIM10K's archives unpack) or else in ``sim10k`` itself."""
    top = root or datasets_root()
    root = Path(top) / "sim10k"
    if (root / "VOC2012").is_dir():
        root = root / "VOC2012"
    for name, classes in (("sim10k_train", voc.SIM10K_CLASSES), ("sim10k_car_train", ("car",))):
        register_detection_dataset(
            name, _naming_the_root(voc.load_voc, top),
            {"root": str(root), "image_set": None, "classes": classes,
             "known_classes": voc.SIM10K_CLASSES},
            partial(voc.source_files, root, None), thing_classes=list(classes), domain="sim10k")


register_synthetic()
register_cityscapes()
register_kitti()
register_sim10k()
