"""KITTI object detection (``training/image_2/*.png``, ``training/label_2/*.txt``), car only.

Each label line has the devkit's 15 columns: type, truncated, occluded, alpha, the 2D box
(left, top, right, bottom: 0-based pixels), 3D size, 3D location, rotation_y. ``Car`` is car.
``Van`` and ``DontCare`` become ignore regions (``iscrowd=1``): a van is no car in the
literature's KITTI<->Cityscapes car task, but a detector that fires on one should not be
punished, and DontCare marks objects KITTI did not label. The other types are not cars. An
ignore region of no area (a width or height of 0) is left out: it ignores nothing.
"""
import math
from pathlib import Path

from detectron2.structures import BoxMode
from tqdm import tqdm

from .images import image_size
from .problems import DatasetError, Problems, box_problem, require_dir

CLASSES = ("car",)
TYPES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc",
         "DontCare")
IGNORED_TYPES = ("Van", "DontCare")
COLUMNS = ("type", "truncated", "occluded", "alpha", "left", "top", "right", "bottom", "height",
           "width", "length", "x", "y", "z", "rotation_y")  # the devkit's names


def load_kitti_car(root):
    """Returns (detectron2 dataset dicts, Problems) for ``root/training``."""
    image_dir = require_dir(Path(root) / "training" / "image_2", "KITTI images")
    label_dir = require_dir(Path(root) / "training" / "label_2", "KITTI labels")
    problems = Problems()
    dicts = []
    labels = sorted(label_dir.glob("*.txt"))
    if not labels:
        raise DatasetError(f"no KITTI label files (*.txt) in {label_dir}")
    for label_file in tqdm(labels, desc="KITTI labels", unit="file", mininterval=2):
        image = image_dir / f"{label_file.stem}.png"
        if not image.is_file():
            problems.add(label_file, f"annotation without its image {image}")
            continue
        lines = _parse(label_file, problems)
        if lines is None:
            continue
        size = image_size(image, problems)
        if size is None:
            continue
        width, height = size
        outside = [(number, problem) for number, a in lines
                   if (problem := box_problem(a["bbox"], width, height))]
        if outside:
            problems.add(f"{label_file}:{outside[0][0]}", outside[0][1])
            continue
        dicts.append({"file_name": str(image), "image_id": label_file.stem, "height": height,
                      "width": width, "annotations": [a for _, a in lines]})
    labelled = {label_file.stem for label_file in labels}
    for image in sorted(image_dir.glob("*.png")):
        if image.stem not in labelled:  # a label archive unpacked in part
            problems.add(image, f"image without its label file {label_dir / image.stem}.txt")
    return dicts, problems


def _parse(label_file, problems):
    """The file's car and ignore annotations as (line number, annotation) pairs, or None (and a
    problem naming file:line) if any line is malformed."""
    try:
        text = Path(label_file).read_text(encoding="utf-8-sig")  # a byte order mark is no type
    except (OSError, UnicodeDecodeError) as e:
        problems.add(label_file, f"unreadable label file: {e}")
        return None
    annotations = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        where = f"{label_file}:{number}"
        if len(fields) != 15:
            problems.add(where, f"expected 15 columns, found {len(fields)}")
            return None
        if fields[0] not in TYPES:
            problems.add(where, f"unknown KITTI type {fields[0]!r}")
            return None
        not_numbers = [f"{COLUMNS[k]} {v!r}" for k, v in enumerate(fields[1:], 1)
                       if not _is_number(v)]
        if not_numbers:
            problems.add(where, f"columns that are not numbers: {', '.join(not_numbers)}")
            return None
        x0, y0, x1, y1 = box = [float(v) for v in fields[4:8]]
        if (fields[0] in IGNORED_TYPES and all(map(math.isfinite, box))
                and (x1 == x0 or y1 == y0)):
            continue  # an ignore region of no area ignores nothing
        problem = box_problem(box, math.inf, math.inf)
        if problem:
            problems.add(where, problem)
            return None
        if fields[0] == "Car" or fields[0] in IGNORED_TYPES:
            annotations.append((number, {"bbox": box, "bbox_mode": BoxMode.XYXY_ABS,
                                         "category_id": 0, "iscrowd": int(fields[0] != "Car")}))
    return annotations


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True
