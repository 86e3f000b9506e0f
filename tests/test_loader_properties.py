"""Property-based tests: the dataset loaders fed malformed annotation files. Every outcome must be
a clear error (DatasetError) or a counted skip naming the file, never another exception and never
a wrong box: a box that is kept is finite, non-empty, inside its image and the file's own."""
import json
import math
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from da_detect.data import cityscapes, kitti, voc
from da_detect.data.problems import DatasetError

WIDTH, HEIGHT = 64, 48
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-100, 200))
number_text = st.one_of(numbers.map(str), st.sampled_from(["", "abc", "1e999", "-0", "NaN"]),
                        st.text(max_size=6))


def write_image(path, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (WIDTH, HEIGHT)).save(path)


def load_outcome(load):
    """(dicts, problems) from ``load()``, or None when it raised DatasetError."""
    try:
        return load()
    except DatasetError as e:
        assert str(e)
        return None


def assert_sound_box(box, width, height):
    x0, y0, x1, y1 = box
    assert all(map(math.isfinite, box)) and 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height


# KITTI: lines of 15 columns, some valid, some broken in one way or another.
kitti_types = st.sampled_from(kitti.TYPES + ("Truckk", "car", ""))
kitti_valid_line = st.builds(
    lambda t, x0, y0, w, h: f"{t} 0.00 0 -1.57 {x0:.2f} {y0:.2f} {x0 + w:.2f} {y0 + h:.2f} "
                            "1.5 1.6 3.9 1.0 1.7 20.0 -1.6",
    st.sampled_from(kitti.TYPES), st.floats(0, WIDTH - 2), st.floats(0, HEIGHT - 2),
    st.floats(0.5, 1.5), st.floats(0.5, 1.5))
kitti_broken_line = st.one_of(
    st.builds(lambda t, x, y: f"{t} -1 -1 -10 {x} {y} {x} {y + 5} -1 -1 -1 -1000 -1000 -1000 -10",
              kitti_types, st.integers(0, WIDTH), st.integers(0, HEIGHT - 5)),  # no width
    st.lists(number_text, max_size=17).map(" ".join),
    st.builds(lambda t, box, rest: f"{t} 0 0 0 {' '.join(box)} {' '.join(rest)}", kitti_types,
              st.lists(number_text, min_size=4, max_size=4),
              st.lists(number_text, min_size=7, max_size=7)),
    st.text(max_size=40))


def kitti_expected(lines):
    """The car/ignore boxes if every line is valid for a WIDTH x HEIGHT image, else None."""
    boxes = []
    for line in lines:
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 15 or fields[0] not in kitti.TYPES:
            return None
        try:
            box = [float(v) for v in fields[1:]][3:7]
        except ValueError:
            return None
        if (fields[0] in ("Van", "DontCare") and all(map(math.isfinite, box))
                and (box[0] == box[2] or box[1] == box[3])):
            continue  # an ignore region of no area: left out
        if not (all(map(math.isfinite, box)) and 0 <= box[0] < box[2] <= WIDTH
                and 0 <= box[1] < box[3] <= HEIGHT):
            return None
        if fields[0] in ("Car", "Van", "DontCare"):
            boxes.append((box, int(fields[0] != "Car")))
    return boxes


@SETTINGS
@given(lines=st.lists(st.one_of(kitti_valid_line, kitti_broken_line), max_size=6),
       raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_kitti_malformed_labels(lines, raw):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_image(root / "training" / "image_2" / "000000.png")
        label = root / "training" / "label_2" / "000000.txt"
        label.parent.mkdir(parents=True)
        if raw is None:
            label.write_text("\n".join(lines))
        else:
            label.write_bytes(raw)
        outcome = load_outcome(lambda: kitti.load_kitti_car(root))
        assert outcome is not None
        dicts, problems = outcome
        expected = kitti_expected(label.read_text("utf-8", "replace").splitlines()) \
            if raw is None else None
        if dicts:
            (record,) = dicts
            boxes = [(a["bbox"], a["iscrowd"]) for a in record["annotations"]]
            assert raw is not None or boxes == expected
            for box, _ in boxes:
                assert_sound_box(box, WIDTH, HEIGHT)
        else:
            assert expected is None
            assert len(problems) == 1 and problems[0][0].startswith(str(label))


# VOC: element trees with missing, non-numeric, non-finite or out-of-image fields.
voc_object = st.fixed_dictionaries({
    "name": st.sampled_from(["car", "person", "motorbike", "truck", ""]),
    "coords": st.lists(st.one_of(st.integers(-5, 80).map(str), number_text), min_size=4,
                       max_size=4),
    "difficult": st.sampled_from([None, "0", "1", "x"]),
    "drop": st.sampled_from([None, "name", "bndbox", "xmax"]),
})


def voc_xml(size, objects):
    root = ET.Element("annotation")
    if size is not None:
        size_element = ET.SubElement(root, "size")
        for key, value in zip(("width", "height"), size):
            ET.SubElement(size_element, key).text = value
    for obj in objects:
        element = ET.SubElement(root, "object")
        if obj["drop"] != "name":
            ET.SubElement(element, "name").text = obj["name"]
        if obj["difficult"] is not None:
            ET.SubElement(element, "difficult").text = obj["difficult"]
        if obj["drop"] != "bndbox":
            box = ET.SubElement(element, "bndbox")
            for key, value in zip(("xmin", "ymin", "xmax", "ymax"), obj["coords"]):
                if key != obj["drop"]:
                    ET.SubElement(box, key).text = value
    return ET.tostring(root)


def voc_well_formed(size, objects):
    """Whether the file is one a VOC reader must take: its size absent or the image's, every object
    of a SIM10K class with a whole 1-based integer box inside the image."""
    def pixel(text, limit):
        return text.isdecimal() and 1 <= int(text) <= limit
    return size in (None, (str(WIDTH), str(HEIGHT))) and all(
        o["drop"] is None and o["name"] in voc.SIM10K_CLASSES and o["difficult"] != "x"
        and all(pixel(c, limit) for c, limit in zip(o["coords"], (WIDTH, HEIGHT) * 2))
        and int(o["coords"][0]) < int(o["coords"][2]) and int(o["coords"][1]) < int(o["coords"][3])
        for o in objects)


@SETTINGS
@given(size=st.one_of(st.none(), st.tuples(number_text, number_text),
                      st.just((str(WIDTH), str(HEIGHT)))),
       objects=st.lists(voc_object, max_size=4),
       raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_voc_malformed_annotations(size, objects, raw):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_image(root / "JPEGImages" / "a.jpg")
        xml = root / "Annotations" / "a.xml"
        xml.parent.mkdir()
        xml.write_bytes(voc_xml(size, objects) if raw is None else raw)
        outcome = load_outcome(lambda: voc.load_voc(root, None, ("car",), voc.SIM10K_CLASSES))
        assert outcome is not None
        dicts, problems = outcome
        if not dicts:
            assert raw is not None or not voc_well_formed(size, objects)
            assert len(problems) == 1 and problems[0][0] == str(xml)
            return
        (record,) = dicts
        cars = [o for o in objects if o["name"] == "car"]
        assert len(record["annotations"]) == len(cars)
        for annotation, car in zip(record["annotations"], cars):
            x0, y0, x1, y1 = map(float, car["coords"])
            # 1-based -> 0-based; a pixel of overrun is moved onto the image's edge
            limits = (record["width"], record["height"]) * 2
            for got, written, limit in zip(annotation["bbox"], [x0 - 1, y0 - 1, x1, y1], limits):
                assert got == written or (got in (0, limit) and abs(got - written) <= 1)
            assert_sound_box(annotation["bbox"], record["width"], record["height"])


# Cityscapes: JSON values of the wrong type or range, polygons of any shape.
polygon = st.lists(st.one_of(st.tuples(numbers, numbers), st.tuples(st.integers(-10, 80),
                                                                    st.integers(-10, 60))),
                   max_size=5)
cityscapes_object = st.one_of(
    st.fixed_dictionaries({"label": st.sampled_from(["car", "person", "cargroup", "sky", "carr"]),
                           "polygon": polygon}),
    st.dictionaries(st.sampled_from(["label", "polygon", "deleted"]),
                    st.one_of(st.integers(), st.text(max_size=4), st.none()), max_size=3),
    st.integers(), st.text(max_size=4))
cityscapes_size = st.one_of(st.integers(-5, 100), st.floats(), st.text(max_size=3))


def cityscapes_well_formed(document):
    """Whether the file is one a Cityscapes reader must take: the image's size, and a list of
    objects each with a label and a polygon of at least three points inside the image."""
    def point_inside(point):
        return (all(isinstance(v, int) for v in point) and 0 <= point[0] < WIDTH
                and 0 <= point[1] < HEIGHT)
    return (isinstance(document, dict) and document["imgWidth"] == WIDTH
            and document["imgHeight"] == HEIGHT and isinstance(document["objects"], list)
            and all(isinstance(o, dict) and isinstance(o.get("label"), str)
                    and isinstance(o.get("polygon"), list) and len(o["polygon"]) >= 3
                    and all(map(point_inside, o["polygon"])) for o in document["objects"]))


@SETTINGS
@given(document=st.one_of(
    st.fixed_dictionaries({"imgHeight": st.one_of(st.just(HEIGHT), cityscapes_size),
                           "imgWidth": st.one_of(st.just(WIDTH), cityscapes_size),
                           "objects": st.one_of(st.lists(cityscapes_object, max_size=4),
                                                st.integers())}),
    st.text(max_size=20).map(json.dumps)))
def test_cityscapes_malformed_polygon_files(document):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_image(root / "leftImg8bit" / "val" / "aachen" / "aachen_000000_000019_leftImg8bit.png")
        gt = root / "gtFine" / "val" / "aachen" / "aachen_000000_000019_gtFine_polygons.json"
        gt.parent.mkdir(parents=True)
        gt.write_text(document if isinstance(document, str) else json.dumps(document))
        outcome = load_outcome(lambda: cityscapes.load_cityscapes_detection(
            root / "leftImg8bit" / "val", root / "gtFine" / "val"))
        assert outcome is not None
        dicts, problems = outcome
        if not dicts:
            assert not cityscapes_well_formed(document)
            assert len(problems) == 1 and problems[0][0] == str(gt)
            return
        (record,) = dicts
        objects = [o for o in document["objects"] if not o.get("deleted", 0)]
        assert len(record["annotations"]) <= len(objects)
        for annotation in record["annotations"]:
            assert_sound_box(annotation["bbox"], record["width"], record["height"])
            # Inside the bounding box of some polygon of its class.
            x0, y0, x1, y1 = annotation["bbox"]
            name = cityscapes.CLASSES[annotation["category_id"]]
            assert any(o["label"] in (name, name + "group")
                       and np.min(np.array(o["polygon"])[:, 0]) <= x0 + 1
                       and np.max(np.array(o["polygon"])[:, 0]) >= x1 - 1
                       and np.min(np.array(o["polygon"])[:, 1]) <= y0 + 1
                       and np.max(np.array(o["polygon"])[:, 1]) >= y1 - 1 for o in objects)


# COCO-JSON: boxes and sizes of any type and value, ids that may repeat or point nowhere.
coco_value = st.one_of(numbers, st.text(max_size=3), st.none(), st.booleans())
coco_image = st.fixed_dictionaries({
    "id": st.sampled_from([1, 2, 3, "a"]),
    "width": st.one_of(st.just(WIDTH), st.just(WIDTH), coco_value),
    "height": st.one_of(st.just(HEIGHT), st.just(HEIGHT), coco_value),
    "file_exists": st.sampled_from([True] * 4 + [False])})
coco_annotation = st.fixed_dictionaries({
    "image_id": st.sampled_from([1, 2, 3, 4, "a"]), "category_id": st.sampled_from([1] * 9 + [2]),
    "bbox": st.one_of(st.lists(st.integers(-5, 70), min_size=4, max_size=4),
                      st.lists(st.one_of(st.integers(-5, 70), coco_value), min_size=3,
                               max_size=5), coco_value)})


def coco_sound(image, annotations):
    """Whether an image and its annotations are ones a COCO reader must take: the image's size,
    its file, and boxes of 4 numbers with an area, inside the image."""
    def sound(bbox):
        return (isinstance(bbox, list) and len(bbox) == 4
                and all(isinstance(v, int) and not isinstance(v, bool) for v in bbox)
                and bbox[2] > 0 and bbox[3] > 0 and bbox[0] >= 0 and bbox[1] >= 0
                and bbox[0] + bbox[2] <= WIDTH and bbox[1] + bbox[3] <= HEIGHT)
    return (image["file_exists"] and (image["width"], image["height"]) == (WIDTH, HEIGHT)
            and not any(isinstance(v, bool) for v in (image["width"], image["height"]))
            and all(sound(a["bbox"]) for a in annotations))


@SETTINGS
@given(images=st.lists(coco_image, min_size=1, max_size=3, unique_by=lambda i: i["id"])
       | st.lists(coco_image, min_size=2, max_size=3),
       annotations=st.lists(coco_annotation, max_size=5))
def test_coco_malformed_files(images, annotations):
    from da_detect.data.coco_json import load_coco_domain

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        json_file = root / "mine.json"
        for k, image in enumerate(images):
            if image["file_exists"]:  # the loader checks that it exists, and opens none
                (root / f"{k}.png").touch()
        json_file.write_text(json.dumps({
            "images": [{"file_name": f"{k}.png", **{key: v for key, v in image.items()
                                                    if key != "file_exists"}}
                       for k, image in enumerate(images)],
            "annotations": [dict(a, id=k + 1, iscrowd=0) for k, a in enumerate(annotations)],
            "categories": [{"id": 1, "name": "car"}]}))
        outcome = load_outcome(lambda: load_coco_domain("mine", str(json_file), tmp))
        ids = [image["id"] for image in images]
        if outcome is None:  # the whole file: ids repeated or of two types, another category
            assert (len(set(ids)) < len(ids) or len({type(i) for i in ids}) > 1
                    or any(a["category_id"] == 2 for a in annotations))
            return
        dicts, problems = outcome
        assert {path for path, _ in problems} <= {str(json_file)}
        kept = {d["image_id"]: d for d in dicts}
        for image in images:
            own = [a for a in annotations if a["image_id"] == image["id"]]
            if image["id"] not in kept:  # dropped, and named
                assert not coco_sound(image, own)
                assert any(m.startswith(f"image {image['id']!r}: ") for _, m in problems)
                continue
            record = kept[image["id"]]
            assert image["file_exists"] and len(record["annotations"]) == len(own)
            for annotation in record["annotations"]:
                x, y, w, h = annotation["bbox"]
                box = [max(x, 0), max(y, 0), min(x + w, WIDTH), min(y + h, HEIGHT)]
                assert w > 0 and h > 0 and abs(box[2] - (x + w)) <= 1 and abs(box[0] - x) <= 1
                assert_sound_box(box, WIDTH, HEIGHT)  # as detectron2 clips it
        orphans = sum(a["image_id"] not in ids for a in annotations)
        assert sum("is no image's id" in m for _, m in problems) == orphans
