"""PASCAL VOC folders (``JPEGImages``, ``Annotations/*.xml``, ``ImageSets/Main/<set>.txt``),
such as SIM10K, read as detection datasets for a chosen list of classes.

VOC boxes are 1-based inclusive pixel indices; they become 0-based XYXY_ABS boxes as in
detectron2's own VOC loader, clipped to the image where they overrun it by at most a pixel (as
0-based boxes written by some tools do: xmin 0, xmax the width). ``difficult`` objects become
ignore regions (``iscrowd=1``). Class names match in any case; images are ``.jpg``, ``.jpeg`` or
``.png`` files named by the image id; a missing ``<size>`` is read from the image.
"""
import xml.etree.ElementTree as ET
from pathlib import Path

from detectron2.structures import BoxMode
from tqdm import tqdm

from .images import IMAGE_SUFFIXES, image_files, image_size
from .problems import (DatasetError, Problems, box_problem, clip_overrun, image_size_problem,
                       require_dir)

SIM10K_CLASSES = ("car", "motorbike", "person")


def image_ids(root, image_set):
    """Ids listed in ImageSets/Main/<image_set>.txt; every annotation if ``image_set`` is None."""
    if image_set is None:
        annotations = require_dir(Path(root) / "Annotations", "VOC annotations")
        ids = sorted(p.stem for p in annotations.glob("*.xml") if p.is_file())
        if not ids:
            raise DatasetError(f"VOC annotations: no .xml files in {annotations}")
        return ids
    listing = image_set_file(root, image_set)
    if not listing.is_file():
        raise DatasetError(f"VOC image set: expected the file {listing}, which {_absent(listing)}")
    try:
        text = listing.read_text(encoding="utf-8-sig")  # a byte order mark is no part of an id
    except UnicodeDecodeError as e:
        raise DatasetError(f"VOC image set: {listing} is not UTF-8 text ({e})") from None
    ids = [line.split()[0] for line in text.splitlines() if line.strip()]
    if not ids:
        raise DatasetError(f"VOC image set: {listing} lists no images")
    return ids


def _absent(path):
    """Why the file ``path`` cannot be read: it is a folder, or it does not exist."""
    return "is a folder" if Path(path).is_dir() else "does not exist"


def image_set_file(root, image_set):
    return Path(root) / "ImageSets" / "Main" / f"{image_set}.txt"


def images_by_id(root):
    """Image id -> its file in ``root``/JPEGImages (a ``.jpg`` before a ``.png`` of that id)."""
    images = map(Path, image_files(Path(root) / "JPEGImages"))
    files = {}
    for path in sorted(images, key=lambda p: (IMAGE_SUFFIXES.index(p.suffix.lower()), p.name)):
        files.setdefault(path.stem, path)
    return files


def source_files(root, image_set):
    """The files :func:`load_voc` reads for ``image_set`` (None: every annotation), for the cache
    key: the annotations, the images and the image set's listing."""
    root = Path(root)
    files = [*root.glob("Annotations/*.xml"), *images_by_id(root).values()]
    if image_set is not None and image_set_file(root, image_set).is_file():
        files.append(image_set_file(root, image_set))
    return sorted(str(p) for p in files)


def load_voc(root, image_set, classes, known_classes=None):
    """Returns (detectron2 dataset dicts, Problems).

    Objects of ``classes`` are kept. With ``known_classes`` (the dataset's full class list, as
    for SIM10K), objects of the others among them are dropped and any other name is a problem
    that drops the image. Without it (a VOC folder read for some of its classes), objects of
    every other class are dropped, and a listed class that no object has is a problem (a name
    misspelt in the list). The names of the objects dropped are counted in the Problems'
    ``objects_left_out`` (a name misspelt in an annotation shows there).
    """
    root = require_dir(root, "VOC dataset root")
    require_dir(root / "JPEGImages", "VOC images")
    wanted = {name.lower(): k for k, name in enumerate(classes)}
    known = None if known_classes is None else {name.lower() for name in known_classes}
    problems = Problems()
    dicts = []
    images = images_by_id(root)
    ids = image_ids(root, image_set)
    if image_set is None:  # every annotation is read: an image without one is a problem
        for image_id in sorted(images.keys() - set(ids)):
            problems.add(images[image_id], f"image without its annotation "
                                           f"{root / 'Annotations' / image_id}.xml")
    listed = set()
    for image_id in tqdm(ids, desc="VOC annotations", unit="file", mininterval=2):
        xml_file = root / "Annotations" / f"{image_id}.xml"
        image = images.get(image_id)
        if image_id in listed:
            problems.add(image_set_file(root, image_set), f"lists {image_id!r} twice; read once")
            continue
        listed.add(image_id)
        if not xml_file.is_file():
            problems.add(xml_file, f"listed in the image set, but the annotation "
                                   f"{_absent(xml_file)}")
            continue
        if image is None:
            problems.add(xml_file, f"annotation without its image {root / 'JPEGImages'}/"
                                   f"{image_id}.jpg (or .jpeg / .png)")
            continue
        record = _parse(xml_file, image, wanted, known, problems)
        if record is not None:
            record.update(file_name=str(image), image_id=image_id)
            dicts.append(record)
    if known is None:
        found = {a["category_id"] for d in dicts for a in d["annotations"]}
        for name, k in wanted.items():
            if k not in found:
                problems.add(root / "Annotations", f"no object of the listed class "
                                                   f"{classes[k]!r} in any annotation read")
    return dicts, problems


class _Malformed(ValueError):
    """An annotation element missing or not of its type; the message names it."""


def _text(element, tag):
    child = element.find(tag)
    if child is None or not (child.text or "").strip():
        raise _Malformed(f"<{element.tag}> has no <{tag}>")
    return child.text.strip()


def _number(element, tag):
    text = _text(element, tag)
    try:
        return float(text)
    except ValueError:
        raise _Malformed(f"<{tag}> {text!r} is not a number") from None


def _size(tree):
    """(width, height) of ``<size>``; None where it is missing or 0 (some tools write that)."""
    size = tree.find("size")
    if size is None:
        return None
    width, height = _number(size, "width"), _number(size, "height")
    if width == 0 and height == 0:
        return None
    if not (width.is_integer() and height.is_integer()):
        raise _Malformed(f"<size> {width} x {height} is not whole pixels")
    return int(width), int(height)


def _object(obj):
    """(name in lower case, [xmin, ymin, xmax, ymax] as written, difficult) of an ``<object>``."""
    name = _text(obj, "name").lower()
    box = obj.find("bndbox")
    if box is None:
        raise _Malformed(f"<object> {name!r} has no <bndbox>")
    coords = [_number(box, k) for k in ("xmin", "ymin", "xmax", "ymax")]
    difficult = obj.find("difficult")
    flag = (difficult.text or "").strip() if difficult is not None else ""
    if flag not in ("", "0", "1"):
        raise _Malformed(f"<difficult> {flag!r} of {name!r} is not 0 or 1")
    return name, coords, flag == "1"


def _parse(xml_file, image, wanted, known, problems):
    try:
        tree = ET.parse(xml_file)
        if tree.getroot().tag != "annotation":
            raise _Malformed(f"the root element is <{tree.getroot().tag}>, not <annotation>")
        size = _size(tree)
        objects = [_object(obj) for obj in tree.findall("object")]
    except ET.ParseError as e:
        problems.add(xml_file, f"not a VOC annotation: ParseError: {e}")
        return None
    except _Malformed as e:
        problems.add(xml_file, f"not a VOC annotation: {e}")
        return None
    if size is None:
        size = image_size(image, problems)
        if size is None:
            return None
    width, height = size
    problem = image_size_problem(width, height)
    if problem:
        problems.add(xml_file, problem)
        return None
    annotations = []
    for name, (x0, y0, x1, y1), difficult in objects:
        if known is not None and name not in known:
            problems.add(xml_file, f"unknown class {name!r} (known: {sorted(known)})")
            return None
        box = clip_overrun([x0 - 1.0, y0 - 1.0, x1, y1], width, height)  # 1-based -> 0-based
        problem = box_problem(box, width, height)
        if problem:
            problems.add(xml_file, f"{problem} for {name!r} (0-based)")
            return None
        if name in wanted:
            annotations.append({"bbox": box, "bbox_mode": BoxMode.XYXY_ABS,
                                "category_id": wanted[name], "iscrowd": int(difficult)})
    problems.objects_left_out.update(name for name, _, _ in objects if name not in wanted)
    return {"height": height, "width": width, "annotations": annotations}
