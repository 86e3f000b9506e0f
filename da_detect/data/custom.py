"""Datasets a user names in the config, registered without writing Python:

* ``DATASETS.COCO_DOMAINS``: ``(name, json_file, image_root)``, a COCO-JSON file and its images.
* ``DATASETS.VOC_DOMAINS``: ``(name, voc_root, image_set, "class1,class2,...")``, a VOC folder
  read for the listed classes, objects of others dropped (``image_set`` "" reads every
  annotation).
* ``DATASETS.IMAGE_FOLDER_DOMAINS``: ``(name, folder)``, unlabeled images (``*.jpg``,
  ``*.jpeg``, ``*.png``, any case) as a target domain.
"""
import os
from functools import partial
from pathlib import Path

from detectron2.data import DatasetCatalog

from . import voc
from .coco_json import load_coco_domain
from .images import IMAGE_SUFFIXES, image_files, image_size, is_image_file
from .problems import DatasetError, Problems, require_dir
from .registry import register_detection_dataset, with_note

_CONFIG_DOMAINS = set()  # names registered from a config's *_DOMAINS keys, free to re-register


def register_from_config(cfg):
    """Register every dataset the config's DATASETS.*_DOMAINS keys name."""
    claimed = set()
    for entry in cfg.DATASETS.COCO_DOMAINS:
        name, json_file, image_root = _fields(entry, 3, "DATASETS.COCO_DOMAINS")
        _claim(name, "DATASETS.COCO_DOMAINS", claimed)
        _noting_relative(_require_file, json_file)(json_file, f"DATASETS.COCO_DOMAINS {name!r}")
        _noting_relative(require_dir, image_root)(image_root,
                                                  f"DATASETS.COCO_DOMAINS {name!r} image_root")
        register_detection_dataset(
            name, load_coco_domain, {"name": name, "json_file": json_file,
                                     "image_root": image_root},
            None, json_file=json_file, image_root=image_root)
    for entry in cfg.DATASETS.VOC_DOMAINS:
        name, root, image_set, class_list = _fields(entry, 4, "DATASETS.VOC_DOMAINS")
        _claim(name, "DATASETS.VOC_DOMAINS", claimed)
        classes = tuple(c.strip() for c in class_list.split(",") if c.strip())
        if not classes:
            raise DatasetError(f"DATASETS.VOC_DOMAINS {name!r}: no class names in {class_list!r} "
                               f"(expected a comma-separated list, e.g. \"car,person\")")
        twice = sorted({c for c in classes if [d.lower() for d in classes].count(c.lower()) > 1})
        if twice:
            raise DatasetError(f"DATASETS.VOC_DOMAINS {name!r}: class names {twice} in "
                               f"{class_list!r} are one class (names match in any case)")
        image_set = image_set or None
        register_detection_dataset(
            name, _noting_relative(voc.load_voc, root),
            {"root": root, "image_set": image_set, "classes": classes},
            partial(voc.source_files, root, image_set), thing_classes=list(classes))
    for entry in cfg.DATASETS.IMAGE_FOLDER_DOMAINS:
        name, folder = _fields(entry, 2, "DATASETS.IMAGE_FOLDER_DOMAINS")
        _claim(name, "DATASETS.IMAGE_FOLDER_DOMAINS", claimed)
        register_detection_dataset(
            name, _noting_relative(load_image_folder, folder),
            {"folder": folder, "what": f"DATASETS.IMAGE_FOLDER_DOMAINS {name!r}"},
            lambda folder=folder: image_files(folder))


def _claim(name, key, claimed):
    """Refuse a domain name given twice in one config, or already taken by a dataset registered
    otherwise (da-detect's built-in splits, detectron2's, or one registered in Python), which
    the domain would silently replace."""
    if name in claimed:
        raise DatasetError(f"{key} {name!r}: the name of another domain in this config")
    if name in DatasetCatalog.list() and name not in _CONFIG_DOMAINS:
        raise DatasetError(f"{key} {name!r}: the name of a registered dataset (built-in or "
                           f"registered in Python); give the domain a name of its own")
    claimed.add(name)
    _CONFIG_DOMAINS.add(name)


def load_image_folder(folder, what="image folder"):
    """Unlabeled images of ``folder`` (not its subfolders', each a counted problem): (dicts
    without annotations, Problems). A :class:`DatasetError` naming ``what`` and the folder where
    it is none or holds no image."""
    problems = Problems()
    dicts = []
    folder = require_dir(folder, what)
    files = image_files(folder)
    in_subfolders = {sub: count for sub in sorted(folder.iterdir()) if sub.is_dir()
                     if (count := sum(map(is_image_file, sub.rglob("*"))))}
    if not files:
        nested = [sub.name for sub in in_subfolders]
        raise DatasetError(f"{what}: no {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} images in "
                           f"{folder}" + (f" (only in its subfolders {nested}, which are not read)"
                                          if nested else ""))
    for sub, count in in_subfolders.items():
        problems.add(sub, f"{count} images in this subfolder are not read: an image folder's "
                          f"images are the files directly in it")
    for path in files:
        size = image_size(path, problems)
        if size is None:
            continue
        dicts.append({"file_name": path, "image_id": Path(path).stem, "height": size[1],
                      "width": size[0]})
    return dicts, problems


def _require_file(path, what):
    if not Path(path).is_file():
        raise DatasetError(f"{what}: no such file {path}")


def _noting_relative(load, path):
    """``load``, whose :class:`DatasetError` also says, where ``path`` (a config entry's) is
    relative, the folder it is read from."""
    if os.path.isabs(path):
        return load
    return with_note(load, lambda: f"{path}: a relative path, read from the folder you run in, "
                                   f"{os.getcwd()}")


def _fields(entry, count, key):
    if not isinstance(entry, (list, tuple)) or len(entry) != count:
        raise DatasetError(f"{key}: each entry must have {count} fields, got {entry!r}")
    return [str(x) for x in entry]
