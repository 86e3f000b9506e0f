"""Cityscapes and Foggy Cityscapes, as shipped, read as detection datasets.

Layout (under a root)::

    leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    leftImg8bit_foggy/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit_foggy_beta_<beta>.png
    gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_polygons.json

A box is the tightest rectangle around an object's *visible* pixels: the polygons are drawn in
file order, later ones over earlier ones (as cityscapesscripts' json2instanceImg draws the
instance masks the DA literature takes boxes from), except those it leaves out of its masks (label
id < 0: the license plate), which hide nothing. Label names are cityscapesscripts' own; a group
label (e.g. ``cargroup``) becomes a crowd region (``iscrowd=1``), which evaluation ignores.
"""
import json
from pathlib import Path

import numpy as np
from cityscapesscripts.helpers.labels import assureSingleInstanceName, name2label
from detectron2.structures import BoxMode
from PIL import Image, ImageDraw
from scipy.ndimage import find_objects
from tqdm import tqdm

from .problems import DatasetError, Problems, image_size_problem, require_dir

CLASSES = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
POLYGONS_SUFFIX = "_gtFine_polygons.json"


def image_suffix(foggy_beta=None):
    return "_leftImg8bit.png" if foggy_beta is None else f"_leftImg8bit_foggy_beta_{foggy_beta}.png"


def list_files(image_dir, gt_dir, suffix, problems):
    """(image, polygons json) pairs of every city; a json without its image, or an image without
    its json, is a problem."""
    image_dir = require_dir(image_dir, "Cityscapes images")
    gt_dir = require_dir(gt_dir, "Cityscapes annotations")
    pairs = []
    for gt in sorted(gt_dir.glob(f"*/*{POLYGONS_SUFFIX}")):
        image = image_dir / gt.parent.name / (gt.name[: -len(POLYGONS_SUFFIX)] + suffix)
        if image.is_file():
            pairs.append((image, gt))
        else:
            problems.add(gt, f"annotation without its image {image}")
    annotated = {image for image, _ in pairs}
    for image in sorted(image_dir.glob(f"*/*{suffix}")):
        if image not in annotated:
            gt = gt_dir / image.parent.name / (image.name[: -len(suffix)] + POLYGONS_SUFFIX)
            problems.add(image, f"image without its annotation {gt}")
    if not pairs:
        raise DatasetError(f"no Cityscapes images with annotations under {image_dir} and {gt_dir}"
                           f" (images named <city>/*{suffix})")
    return pairs


def load_cityscapes_detection(image_dir, gt_dir, classes=CLASSES, foggy_beta=None):
    """Returns (detectron2 dataset dicts, Problems). Boxes are XYXY_ABS, ``category_id`` indexes
    ``classes``; objects of other classes are left out (they still occlude)."""
    problems = Problems()
    dicts = []
    files = list_files(Path(image_dir), Path(gt_dir), image_suffix(foggy_beta), problems)
    for image, gt in tqdm(files, desc="Cityscapes polygons", unit="file", mininterval=2):
        record = _parse(gt, classes, problems)
        if record is not None:
            record.update(file_name=str(image), image_id=image.name[: image.name.index("_leftImg8bit")])
            dicts.append(record)
    return dicts, problems


def _parse(gt_file, classes, problems):
    try:
        annotation = json.loads(Path(gt_file).read_text())
        height, width = annotation["imgHeight"], annotation["imgWidth"]
        objects = [o for o in annotation["objects"] if not o.get("deleted", 0)]
        polygons = [[(float(x), float(y)) for x, y in o["polygon"]] for o in objects]
        labels = [str(o["label"]) for o in objects]
    except OSError as e:
        problems.add(gt_file, f"unreadable polygon file: {type(e).__name__}: {e}")
        return None
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as e:
        problems.add(gt_file, f"not a Cityscapes polygon file: {type(e).__name__}: {e}")
        return None
    problem = image_size_problem(width, height) or next(
        (f"polygon of object {k} has a coordinate that is not a finite number below 2**20"
         for k, polygon in enumerate(polygons) if not (np.abs(polygon) < 2**20).all()), None)
    if problem:
        problems.add(gt_file, problem)
        return None
    height, width = int(height), int(width)
    names = [assureSingleInstanceName(label) for label in labels]  # "cargroup" -> "car"
    unknown = sorted({label for label, name in zip(labels, names) if name is None})
    if unknown:
        problems.add(gt_file, f"unknown Cityscapes labels {unknown}")
        return None

    drawn = [(k, polygon) for k, (polygon, name) in enumerate(zip(polygons, names))
             if name2label[name].id >= 0]  # as json2instanceImg: no plates
    short = next(((k, polygon) for k, polygon in drawn if len(polygon) < 2), None)
    if short:  # json2instanceImg stops at it: PIL draws no polygon of fewer than 2 points
        k, polygon = short
        problems.add(gt_file, f"polygon of object {k} ({labels[k]!r}) has {len(polygon)} "
                              f"points: too few to draw (2 or more)")
        return None
    # drawn on the polygons' part of the image only: a mask of the whole image takes 4 bytes a
    # pixel, gigabytes where a size is mistyped
    x0, y0, x1, y1 = _region([polygon for _, polygon in drawn], width, height)
    extents = [None] * len(polygons)
    if x1 > x0 and y1 > y0:
        ids = Image.new("I", (x1 - x0, y1 - y0), 0)
        draw = ImageDraw.Draw(ids)
        for k, polygon in drawn:
            draw.polygon([(x - x0, y - y0) for x, y in polygon], fill=k + 1)
        extents = find_objects(np.asarray(ids, dtype=np.int32), max_label=len(polygons))

    annotations = []
    for label, name, extent in zip(labels, names, extents):
        if name not in classes or extent is None:  # other class, or hidden behind others
            continue
        rows, cols = extent
        annotations.append({
            "bbox": [float(cols.start + x0), float(rows.start + y0), float(cols.stop + x0),
                     float(rows.stop + y0)],
            "bbox_mode": BoxMode.XYXY_ABS,
            "category_id": classes.index(name),
            "iscrowd": int(name != label),
        })
    return {"height": height, "width": width, "annotations": annotations}


def _region(polygons, width, height):
    """(x0, y0, x1, y1): a rectangle of the ``width`` x ``height`` image holding every pixel the
    polygons can cover (their extent, a pixel wider); empty (x1 <= x0) where they cover none."""
    if not polygons:
        return 0, 0, 0, 0
    points = np.concatenate([np.asarray(polygon, dtype=np.float64) for polygon in polygons])
    x0, y0 = np.maximum(np.floor(points.min(axis=0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(points.max(axis=0)).astype(int) + 2, (width, height))
    return int(x0), int(y0), int(x1), int(y1)
