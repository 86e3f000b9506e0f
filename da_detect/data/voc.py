"""PASCAL VOC folders (``JPEGImages``, ``Annotations/*.xml``, ``ImageSets/Main/<set>.txt``),
such as SIM10K, read as detection datasets for a chosen list of classes.

VOC boxes are 1-based inclusive pixel indices; they become 0-based XYXY_ABS boxes as in
detectron2's own VOC loader. ``difficult`` objects become ignore regions (``iscrowd=1``).
"""
import xml.etree.ElementTree as ET
from pathlib import Path

from detectron2.structures import BoxMode
from tqdm import tqdm

from .problems import DatasetError, Problems, box_problem, image_size_problem, require_dir

SIM10K_CLASSES = ("car", "motorbike", "person")


def image_ids(root, image_set):
    """Ids listed in ImageSets/Main/<image_set>.txt; every annotation if ``image_set`` is None."""
    if image_set is None:
        return sorted(p.stem for p in require_dir(Path(root) / "Annotations",
                                                  "VOC annotations").glob("*.xml"))
    listing = image_set_file(root, image_set)
    if not listing.is_file():
        raise DatasetError(f"VOC image set: expected the file {listing}, which does not exist")
    return [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]


def image_set_file(root, image_set):
    return Path(root) / "ImageSets" / "Main" / f"{image_set}.txt"


def source_files(root, image_set):
    """The files :func:`load_voc` reads for ``image_set`` (None: every annotation), for the cache
    key: the annotations, the images and the image set's listing."""
    root = Path(root)
    files = [*root.glob("Annotations/*.xml"), *root.glob("JPEGImages/*.jpg")]
    if image_set is not None and image_set_file(root, image_set).is_file():
        files.append(image_set_file(root, image_set))
    return sorted(str(p) for p in files)


def load_voc(root, image_set, classes, known_classes=None):
    """Returns (detectron2 dataset dicts, Problems).

    Objects of ``classes`` are kept; objects of ``known_classes`` (the dataset's full class list)
    outside ``classes`` are dropped; any other name is a problem that drops the image.
    """
    root = require_dir(root, "VOC dataset root")
    require_dir(root / "JPEGImages", "VOC images")
    known = set(known_classes or classes)
    problems = Problems()
    dicts = []
    ids = image_ids(root, image_set)
    if not ids:
        raise DatasetError(f"no images listed for the VOC image set {image_set!r} under {root}")
    for image_id in tqdm(ids, desc="VOC annotations", unit="file", mininterval=2):
        xml_file = root / "Annotations" / f"{image_id}.xml"
        image = root / "JPEGImages" / f"{image_id}.jpg"
        if not xml_file.is_file():
            problems.add(xml_file, "listed in the image set, but the annotation does not exist")
            continue
        if not image.is_file():
            problems.add(xml_file, f"annotation without its image {image}")
            continue
        record = _parse(xml_file, classes, known, problems)
        if record is not None:
            record.update(file_name=str(image), image_id=image_id)
            dicts.append(record)
    return dicts, problems


def _parse(xml_file, classes, known, problems):
    try:
        tree = ET.parse(xml_file)
        size = tree.find("size")
        height, width = int(size.find("height").text), int(size.find("width").text)
        objects = []
        for obj in tree.findall("object"):
            box = obj.find("bndbox")
            coords = [float(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
            difficult = obj.find("difficult")
            objects.append((obj.find("name").text.strip(), coords,
                            difficult is not None and int(difficult.text) == 1))
    except (ET.ParseError, AttributeError, TypeError, ValueError) as e:
        problems.add(xml_file, f"not a VOC annotation: {type(e).__name__}: {e}")
        return None
    problem = image_size_problem(width, height)
    if problem:
        problems.add(xml_file, problem)
        return None
    annotations = []
    for name, (x0, y0, x1, y1), difficult in objects:
        if name not in known:
            problems.add(xml_file, f"unknown class {name!r} (known: {sorted(known)})")
            return None
        box = [x0 - 1.0, y0 - 1.0, x1, y1]  # 1-based inclusive -> 0-based XYXY
        problem = box_problem(box, width, height)
        if problem:
            problems.add(xml_file, f"{problem} for {name!r} (0-based)")
            return None
        if name in classes:
            annotations.append({"bbox": box, "bbox_mode": BoxMode.XYXY_ABS,
                                "category_id": classes.index(name), "iscrowd": int(difficult)})
    return {"height": height, "width": width, "annotations": annotations}
