"""COCO-JSON files registered as domains (``DATASETS.COCO_DOMAINS``), read with detectron2's
``load_coco_json`` after a check of what it takes on trust.

* The whole file is refused (:class:`DatasetError` naming the file and the key) where its
  meaning is unclear: a missing or mistyped ``images`` / ``categories`` / ``annotations`` list, no
  image, two images with one id (pycocotools would keep one and give it both images' boxes), two
  categories with one id or one name, an annotation of an unknown category.
* An image is dropped, as a counted problem, where its size or one of its boxes cannot be used
  (a size that is not a whole number of pixels from 1 to 2**15; a ``bbox`` that is not 4 finite
  numbers, is empty, or lies more than a pixel outside the image: detectron2 would crash on it,
  drop it, or flip it into another box). An annotation of no image in the file is a problem too,
  and so is an image whose file does not exist.
"""
import json
import numbers
import os
import tempfile
from pathlib import Path

from detectron2.data.datasets import load_coco_json

from .problems import DatasetError, Problems, box_problem, clip_overrun, image_size_problem


def load_coco_domain(name, json_file, image_root):
    """Returns (detectron2 dataset dicts, Problems); sets the split's ``thing_classes`` (the
    categories' names in id order) as ``load_coco_json`` does."""
    what = f"DATASETS.COCO_DOMAINS {name!r}: {json_file}"
    try:
        data = json.loads(Path(json_file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DatasetError(f"{what}: cannot be read: {type(e).__name__}: {e}") from e
    problems = Problems()
    dropped = _check(data, what, json_file, problems)
    try:
        if not dropped:
            dicts = load_coco_json(json_file, image_root, name)
        else:
            # load_coco_json reads every annotation, and fails on some that drop an image: it
            # is given the file without them
            data["images"] = [image for image in data["images"] if image["id"] not in dropped]
            data["annotations"] = [a for a in data.get("annotations", [])
                                   if a.get("image_id") not in dropped]
            with tempfile.TemporaryDirectory() as folder:
                kept = Path(folder) / Path(json_file).name
                kept.write_text(json.dumps(data), encoding="utf-8")
                dicts = load_coco_json(str(kept), image_root, name)
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as e:  # it asserts, too
        raise DatasetError(f"{what}: cannot be read: {type(e).__name__}: {e}") from e
    return _with_their_images(dicts, json_file, problems), problems


def _with_their_images(dicts, json_file, problems):
    """The records whose image file exists; each other one is a problem, found as the split
    loads rather than when training first draws it."""
    kept = []
    for record in dicts:
        if os.path.isfile(record["file_name"]):
            kept.append(record)
        else:
            problems.add(json_file, f"image {record['image_id']!r}: annotation without its "
                                    f"image {record['file_name']}")
    return kept


def _check(data, what, json_file, problems):
    """The ids of the images to drop; raises a :class:`DatasetError` for the whole file."""
    if not isinstance(data, dict):
        raise DatasetError(f"{what}: expected a JSON object with 'images', 'annotations' and "
                           f"'categories', found a {type(data).__name__}")
    images = _list_of_objects(data, "images", what)
    categories = _list_of_objects(data, "categories", what)
    annotations = _list_of_objects(data, "annotations", what) if "annotations" in data else []
    if not images:
        raise DatasetError(f"{what}: 'images' is empty")
    if not categories:
        raise DatasetError(f"{what}: 'categories' is empty")

    category_ids = _unique(categories, "categories", "id", what)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in category_ids):
        raise DatasetError(f"{what}: a category 'id' that is not an integer")
    _unique(categories, "categories", "name", what)
    sizes = {}
    for k, image in enumerate(images):
        image_id = image.get("id")
        if not isinstance(image_id, (int, str)) or isinstance(image_id, bool):
            raise DatasetError(f"{what}: images[{k}] has no integer or string 'id'")
        if image_id in sizes:
            raise DatasetError(f"{what}: two images with 'id' {image_id!r}: a box could not be "
                               f"told which one it belongs to")
        sizes[image_id] = (image.get("width"), image.get("height"))
    if len({type(i) for i in sizes}) > 1:
        raise DatasetError(f"{what}: image ids mix integers and strings")

    dropped = set()
    for image_id, size in sizes.items():
        problem = image_size_problem(*size)
        if problem:
            problems.add(json_file, f"image {image_id!r}: {problem}")
            dropped.add(image_id)
    for k, annotation in enumerate(annotations):
        label = f"annotation {annotation.get('id', f'[{k}]')!r}"
        if annotation.get("category_id") not in category_ids:
            raise DatasetError(f"{what}: {label} has 'category_id' "
                               f"{annotation.get('category_id')!r}, not one of the categories' "
                               f"ids {sorted(category_ids, key=str)}")
        image_id = annotation.get("image_id")
        if image_id not in sizes:
            problems.add(json_file, f"{label}: 'image_id' {image_id!r} is no image's id")
        elif image_id not in dropped:
            problem = _box_problem(annotation.get("bbox"), *sizes[image_id])
            if problem:
                problems.add(json_file, f"image {image_id!r}: {label}: {problem}")
                dropped.add(image_id)
    return dropped


def _list_of_objects(data, key, what):
    if key not in data:
        raise DatasetError(f"{what}: no '{key}' list")
    items = data[key]
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise DatasetError(f"{what}: '{key}' is not a list of objects")
    return items


def _unique(items, key, field, what):
    """The set of ``field`` over ``items``; raises where one is missing or given twice."""
    seen = set()
    for k, item in enumerate(items):
        value = item.get(field)
        if value is None or isinstance(value, (dict, list)):
            raise DatasetError(f"{what}: {key}[{k}] has no '{field}'")
        if value in seen:
            raise DatasetError(f"{what}: two {key} with '{field}' {value!r}")
        seen.add(value)
    return seen


def _box_problem(bbox, width, height):
    """What is wrong with a COCO ``bbox`` ([x, y, width, height]), or None."""
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) for v in bbox)):
        return f"'bbox' {bbox!r} is not 4 numbers [x, y, width, height]"
    x, y, w, h = (float(v) for v in bbox)
    if not (w > 0 and h > 0):
        return f"'bbox' {bbox} has a width or height that is not above 0"
    problem = box_problem(clip_overrun([x, y, x + w, y + h], width, height), width, height)
    return problem and f"'bbox' {bbox}: {problem} (as x0, y0, x1, y1)"
