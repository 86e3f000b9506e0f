"""Loaders of the real benchmarks on small trees in their exact native layouts and formats."""
import json
import logging
import math
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.structures import Boxes, Instances
from PIL import Image

from conftest import REPO, SYNTHETIC_FPN, run_script_here
from da_detect.config import ConfigError, load_config
from da_detect.data import cityscapes, custom, kitti, voc
from da_detect.data.builtin import register_cityscapes, register_kitti, register_sim10k
from da_detect.data.images import readable_images
from da_detect.data.problems import DatasetError
from da_detect.data.registry import load_with_problems
from da_detect.evaluation import COCOAP50Evaluator
from da_detect.data.train_loader import build_train_loader

BASE = "aachen_000000_000019"


def write_image(path, width, height, fmt="PNG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(path, fmt)


def cityscapes_tree(root, objects, city="aachen", base=BASE, split="train", foggy=True):
    gt = root / "gtFine" / split / city / f"{base}_gtFine_polygons.json"
    gt.parent.mkdir(parents=True, exist_ok=True)
    gt.write_text(json.dumps({"imgHeight": 32, "imgWidth": 64, "objects": objects}))
    write_image(root / "leftImg8bit" / split / city / f"{base}_leftImg8bit.png", 64, 32)
    if foggy:
        write_image(root / "leftImg8bit_foggy" / split / city /
                    f"{base}_leftImg8bit_foggy_beta_0.02.png", 64, 32)
    return gt


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def rect(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


CITYSCAPES_OBJECTS = [
    {"label": "road", "polygon": rect(0, 16, 63, 31)},
    {"label": "car", "polygon": rect(10, 10, 30, 20)},
    {"label": "person", "polygon": rect(25, 5, 35, 25)},  # drawn over the car's right end
    {"label": "cargroup", "polygon": rect(40, 12, 60, 18)},
    {"label": "car", "polygon": rect(0, 0, 5, 5), "deleted": 1},
    {"label": "bicycle", "polygon": rect(26, 10, 28, 12)},  # behind nothing, inside the person
]


def boxes(record, classes):
    return sorted((classes[a["category_id"]], a["bbox"], a["iscrowd"])
                  for a in record["annotations"])


def test_cityscapes_boxes_are_visible_extents_and_groups_are_crowd(tmp_path):
    cityscapes_tree(tmp_path, CITYSCAPES_OBJECTS)
    dicts, problems = cityscapes.load_cityscapes_detection(
        tmp_path / "leftImg8bit" / "train", tmp_path / "gtFine" / "train")
    assert not problems and len(dicts) == 1
    record = dicts[0]
    assert (record["height"], record["width"]) == (32, 64)
    assert record["file_name"].endswith(f"leftImg8bit/train/aachen/{BASE}_leftImg8bit.png")
    # PIL fills polygon outlines: rect(10, 10, 30, 20) covers x 10..30, y 10..20 inclusive.
    assert boxes(record, cityscapes.CLASSES) == [
        ("bicycle", [26.0, 10.0, 29.0, 13.0], 0),
        ("car", [10.0, 10.0, 25.0, 21.0], 0),  # the person hides x >= 25
        ("car", [40.0, 12.0, 61.0, 19.0], 1),
        ("person", [25.0, 5.0, 36.0, 26.0], 0),
    ]


def json2instanceimg_boxes(gt):
    """The boxes of the instance masks cityscapesscripts' json2instanceImg draws for ``gt``."""
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.helpers.labels import id2label
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage

    annotation = Annotation()
    annotation.fromJsonFile(str(gt))
    instances = np.asarray(createInstanceImage(annotation, "ids"))
    expected = []
    for instance in np.unique(instances[instances >= 1000]):  # label id * 1000 + instance
        ys, xs = np.nonzero(instances == instance)
        box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
        expected.append((id2label[instance // 1000].name, box, 0))
    return sorted(expected)


def test_cityscapes_boxes_are_those_of_json2instanceimg_instance_masks(tmp_path):
    # A plate over the car's whole bottom row: json2instanceImg does not draw it (label id -1).
    plate = {"label": "license plate", "polygon": rect(10, 18, 30, 20)}
    gt = cityscapes_tree(tmp_path, CITYSCAPES_OBJECTS + [plate])
    (record,), problems = cityscapes.load_cityscapes_detection(
        tmp_path / "leftImg8bit" / "train", tmp_path / "gtFine" / "train")
    expected = json2instanceimg_boxes(gt)
    assert not problems
    assert [b for b in boxes(record, cityscapes.CLASSES) if not b[2]] == expected
    assert ("car", [10.0, 10.0, 25.0, 21.0], 0) in expected


def test_cityscapes_boxes_of_polygons_partly_outside_the_image_are_json2instanceimgs(tmp_path):
    rng = np.random.default_rng(0)
    # float corners; in the first image over every edge, in the second over the right and bottom
    # ones only, so that the region drawn starts inside the image
    for base, low in (("a_000000_000001", -10), ("a_000000_000002", 25)):
        corners = rng.uniform(0, 16, size=(30, 5, 2)) + rng.uniform((low, low / 2), (62, 30),
                                                                    size=(30, 1, 2))
        objects = [{"label": ["car", "person", "bus", "road"][k % 4],
                    "polygon": polygon.round(1).tolist()} for k, polygon in enumerate(corners)]
        gt = cityscapes_tree(tmp_path, objects, city="a", base=base)
        expected = json2instanceimg_boxes(gt)
        assert len(expected) > 10 and max(b[1][2] for b in expected) == 64
        assert (min(b[1][0] for b in expected) == 0) == (low < 0)
    records, problems = cityscapes.load_cityscapes_detection(
        tmp_path / "leftImg8bit" / "train", tmp_path / "gtFine" / "train")
    assert not problems
    for record in records:
        gt = tmp_path / "gtFine" / "train" / "a" / f"{record['image_id']}_gtFine_polygons.json"
        assert boxes(record, cityscapes.CLASSES) == json2instanceimg_boxes(gt)


def test_cityscapes_boxes_are_drawn_on_their_part_of_the_image_whatever_its_size(tmp_path,
                                                                                  monkeypatch):
    gt = cityscapes_tree(tmp_path, CITYSCAPES_OBJECTS)
    (small,), _ = cityscapes.load_cityscapes_detection(
        tmp_path / "leftImg8bit" / "train", tmp_path / "gtFine" / "train")
    gt.write_text(json.dumps({"imgHeight": 32768, "imgWidth": 32768,  # a 4 GB mask
                              "objects": CITYSCAPES_OBJECTS}))
    sizes = []
    new = cityscapes.Image.new
    monkeypatch.setattr(cityscapes.Image, "new", lambda mode, size, *a: sizes.append(size) or
                        new(mode, size, *a))
    (large,), _ = cityscapes.load_cityscapes_detection(
        tmp_path / "leftImg8bit" / "train", tmp_path / "gtFine" / "train")
    assert sizes == [(65, 29)]  # x 0-64, y 4-32: the polygons' extent, a pixel wider
    assert boxes(large, cityscapes.CLASSES) == boxes(small, cityscapes.CLASSES)


def test_cityscapes_object_hidden_by_objects_drawn_after_it_gets_no_box(tmp_path):
    cityscapes_tree(tmp_path, [{"label": "car", "polygon": rect(10, 10, 20, 20)},
                               {"label": "person", "polygon": rect(5, 5, 15, 25)},  # left half
                               {"label": "bus", "polygon": rect(15, 5, 25, 25)}])  # right half
    (record,), problems = cityscapes.load_cityscapes_detection(
        tmp_path / "leftImg8bit" / "train", tmp_path / "gtFine" / "train")
    assert not problems
    assert boxes(record, cityscapes.CLASSES) == [("bus", [15.0, 5.0, 26.0, 26.0], 0),
                                                 ("person", [5.0, 5.0, 15.0, 26.0], 0)]


def test_foggy_cityscapes_and_car_only_splits_are_registered(tmp_path):
    cityscapes_tree(tmp_path / "cityscapes", CITYSCAPES_OBJECTS)
    register_cityscapes(tmp_path)
    foggy = DatasetCatalog.get("foggy_cityscapes_train_0.02")
    assert foggy[0]["file_name"].endswith(f"{BASE}_leftImg8bit_foggy_beta_0.02.png")
    car = DatasetCatalog.get("cityscapes_car_train")
    assert MetadataCatalog.get("cityscapes_car_train").thing_classes == ["car"]
    assert boxes(car[0], ["car"]) == [("car", [10.0, 10.0, 25.0, 21.0], 0),
                                      ("car", [40.0, 12.0, 61.0, 19.0], 1)]
    with pytest.raises(DatasetError, match="leftImg8bit_foggy/train"):
        # no beta-0.01 images: every annotation lacks its image
        DatasetCatalog.get("foggy_cityscapes_train_0.01")


def test_foggy_cityscapes_car_splits_are_registered_and_read_car_only(tmp_path):
    for split in ("train", "val"):
        cityscapes_tree(tmp_path / "cityscapes", CITYSCAPES_OBJECTS, split=split)
        for beta in ("0.005", "0.01"):
            write_image(tmp_path / "cityscapes" / "leftImg8bit_foggy" / split / "aachen" /
                        f"{BASE}_leftImg8bit_foggy_beta_{beta}.png", 64, 32)
    register_cityscapes(tmp_path)
    for split in ("train", "val"):
        for beta in ("0.005", "0.01", "0.02"):
            name = f"foggy_cityscapes_car_{split}_{beta}"
            (record,) = DatasetCatalog.get(name)
            assert MetadataCatalog.get(name).thing_classes == ["car"]
            assert record["file_name"].endswith(
                f"leftImg8bit_foggy/{split}/aachen/{BASE}_leftImg8bit_foggy_beta_{beta}.png")
            assert boxes(record, ["car"]) == [("car", [10.0, 10.0, 25.0, 21.0], 0),
                                              ("car", [40.0, 12.0, 61.0, 19.0], 1)]


def test_cityscapes_bad_files_are_counted_skips(tmp_path):
    cityscapes_tree(tmp_path, CITYSCAPES_OBJECTS)
    broken = cityscapes_tree(tmp_path, [], base="aachen_000001_000019")
    broken.write_text("{not json")
    cityscapes_tree(tmp_path, [{"label": "spaceship", "polygon": rect(1, 1, 3, 3)}],
                    base="aachen_000002_000019")
    orphan = cityscapes_tree(tmp_path, CITYSCAPES_OBJECTS, base="aachen_000003_000019")
    (tmp_path / "leftImg8bit" / "train" / "aachen" / "aachen_000003_000019_leftImg8bit.png").unlink()
    fractional = cityscapes_tree(tmp_path, [], base="aachen_000005_000019")
    fractional.write_text(json.dumps({"imgHeight": 32.9, "imgWidth": 64, "objects": []}))
    # json2instanceImg cannot draw a polygon of one point; one of a license plate it skips
    point = cityscapes_tree(tmp_path, [{"label": "car", "polygon": [[5, 5]]}],
                            base="aachen_000006_000019")
    cityscapes_tree(tmp_path, [{"label": "license plate", "polygon": []}],
                    base="aachen_000007_000019")
    dicts, problems = cityscapes.load_cityscapes_detection(
        tmp_path / "leftImg8bit" / "train", tmp_path / "gtFine" / "train")
    assert [d["image_id"] for d in dicts] == [BASE, "aachen_000007_000019"]
    messages = dict(problems)
    assert messages[str(fractional)] == "image size 64x32.9 is not whole pixels"
    assert messages[str(point)] == ("polygon of object 0 ('car') has 1 points: too few to draw "
                                    "(2 or more)")
    assert "not a Cityscapes polygon file: JSONDecodeError" in messages[str(broken)]
    assert "unknown Cityscapes labels ['spaceship']" in " ".join(messages.values())
    assert "annotation without its image" in messages[str(orphan)]
    lone = cityscapes_tree(tmp_path, CITYSCAPES_OBJECTS, base="aachen_000004_000019")
    lone.unlink()
    _, problems = cityscapes.load_cityscapes_detection(
        tmp_path / "leftImg8bit" / "train", tmp_path / "gtFine" / "train")
    image = tmp_path / "leftImg8bit" / "train" / "aachen" / "aachen_000004_000019_leftImg8bit.png"
    assert (str(image), f"image without its annotation {lone}") in problems


@pytest.mark.parametrize("register,name,folder", [
    (register_kitti, "kitti_car_train", "kitti/training/image_2"),
    (register_sim10k, "sim10k_car_train", "sim10k"),
    (register_cityscapes, "cityscapes_car_val", "cityscapes/leftImg8bit/val"),
])
def test_missing_root_names_the_expected_folder(tmp_path, register, name, folder, monkeypatch):
    register(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=f"expected the folder {tmp_path}/nowhere/{folder}, "):
        DatasetCatalog.get(name)
    # relative to where it runs, and with a ~ the shell did not expand: the root is named
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DA_DETECT_DATASETS", "~/nowhere")
    register()
    with pytest.raises(DatasetError) as raised:
        DatasetCatalog.get(name)
    assert str(raised.value).endswith(
        f"expected the folder {tmp_path}/nowhere/{folder}, which does not exist (da-detect's "
        f"built-in datasets are read under {tmp_path}/nowhere, DA_DETECT_DATASETS; "
        f"datasets/README.md shows their layouts)")


def test_a_training_split_with_no_usable_image_stops_training_naming_it(tmp_path):
    kitti_tree(tmp_path / "kitti", "000000", ["Car 1 2 3"])
    sim10k_tree(tmp_path / "sim10k", "1", [("truck", (1, 1, 10, 10), False)])
    cityscapes_tree(tmp_path / "cityscapes", [{"label": "spaceship", "polygon": rect(1, 1, 3, 3)}])
    for register in (register_kitti, register_sim10k, register_cityscapes):
        register(tmp_path)
    for name in ("kitti_car_train", "sim10k_car_train", "cityscapes_car_train"):
        cfg = load_config(str(SYNTHETIC_FPN), ["DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST",
                                               "()", "MODEL.ROI_HEADS.NUM_CLASSES", "1"])
        with pytest.raises(DatasetError, match=rf"dataset '{name}' has no usable images \(1 "):
            build_train_loader(cfg)


KITTI_LINES = [
    "Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59",
    "Van 0.00 0 1.75 280.38 185.10 344.90 215.59 1.78 1.64 4.39 -18.39 1.86 45.29 1.34",
    "Pedestrian 0.00 0 -0.20 712.40 143.00 810.73 307.92 1.89 0.48 1.20 1.84 1.47 8.41 0.01",
    "DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10",
]


def kitti_tree(root, name, lines):
    label = root / "training" / "label_2" / f"{name}.txt"
    label.parent.mkdir(parents=True, exist_ok=True)
    label.write_text("\n".join(lines) + "\n")
    write_image(root / "training" / "image_2" / f"{name}.png", 1242, 375)
    return label


def test_kitti_car_with_van_and_dontcare_ignored(tmp_path):
    kitti_tree(tmp_path / "kitti", "000000", KITTI_LINES)
    register_kitti(tmp_path)
    (record,) = DatasetCatalog.get("kitti_car_train")
    assert (record["height"], record["width"]) == (375, 1242)
    assert boxes(record, ["car"]) == [("car", [280.38, 185.10, 344.90, 215.59], 1),
                                      ("car", [503.89, 169.71, 590.61, 190.13], 1),
                                      ("car", [587.01, 173.33, 614.12, 200.12], 0)]


def test_kitti_malformed_line_names_file_and_line(tmp_path):
    kitti_tree(tmp_path, "000000", KITTI_LINES)
    bad = kitti_tree(tmp_path, "000001", KITTI_LINES[:2] + ["Car 0.00 0 -1.58 587.01 173.33"])
    typo = kitti_tree(tmp_path, "000002", ["Kar" + KITTI_LINES[0][3:]])
    shifted = kitti_tree(tmp_path, "000003", [KITTI_LINES[0].replace(" 0 ", " Car ", 1)
                                              .replace("-1.59", "x")])
    # saved by an editor that writes a byte order mark; a DontCare region of no width
    kitti_tree(tmp_path, "000004", ["\ufeff" + KITTI_LINES[0], KITTI_LINES[3].replace(
        "590.61", "503.89")])
    dicts, problems = kitti.load_kitti_car(tmp_path)
    assert [(d["image_id"], [a["iscrowd"] for a in d["annotations"]]) for d in dicts] == [
        ("000000", [0, 1, 1]), ("000004", [0])]
    assert (f"{bad}:3", "expected 15 columns, found 6") in problems
    assert (f"{typo}:1", "unknown KITTI type 'Kar'") in problems
    assert (f"{shifted}:1", "columns that are not numbers: occluded 'Car', rotation_y 'x'") \
        in problems
    typo.unlink()
    _, problems = kitti.load_kitti_car(tmp_path)
    image = tmp_path / "training" / "image_2" / "000002.png"
    assert (str(image), f"image without its label file {typo}") in problems



def test_a_splits_problems_are_logged_once_however_often_it_is_read(tmp_path, caplog):
    kitti_tree(tmp_path / "kitti", "000000", KITTI_LINES)
    bad = kitti_tree(tmp_path / "kitti", "000001", ["Car 1 2 3"])
    register_kitti(tmp_path)

    def warnings():
        return [m for m in caplog.messages if m.startswith("kitti_car_train: 1 problems")]

    with caplog.at_level(logging.WARNING, logger="da_detect"):
        DatasetCatalog.get("kitti_car_train")
        DatasetCatalog.get("kitti_car_train")  # as an evaluation converting it to COCO does
        assert len(warnings()) == 1
        bad.write_text("Car 1 2 3 4\n")  # another problem: logged
        DatasetCatalog.get("kitti_car_train")
    assert len(warnings()) == 2 and "expected 15 columns, found 5" in warnings()[1]


def test_unreadable_images_are_counted_skips_naming_the_image(tmp_path):
    kitti_tree(tmp_path, "000000", KITTI_LINES)
    kitti_tree(tmp_path, "000001", KITTI_LINES)
    corrupt = tmp_path / "training" / "image_2" / "000001.png"
    corrupt.write_bytes(b"\x89PNG not really")
    kitti_tree(tmp_path, "000002", KITTI_LINES)
    garbage_exif = tmp_path / "training" / "image_2" / "000002.png"
    png = garbage_exif.read_bytes()
    idat = png.index(b"IDAT") - 4
    garbage_exif.write_bytes(png[:idat] + png_chunk(b"eXIf", b"garbagegarbage") + png[idat:])
    kitti_tree(tmp_path, "000003", KITTI_LINES)
    bomb = tmp_path / "training" / "image_2" / "000003.png"  # header: 20000 x 20000 pixels
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
                     + png_chunk(b"IDAT", zlib.compress(b"")) + png_chunk(b"IEND", b""))
    dicts, problems = kitti.load_kitti_car(tmp_path)
    # a garbage EXIF block is ignored, as detectron2's read_image ignores it
    assert [d["image_id"] for d in dicts] == ["000000", "000002"]
    assert read_image(str(garbage_exif)).shape == (dicts[1]["height"], dicts[1]["width"], 3)
    messages = dict(problems)
    assert set(messages) == {str(corrupt), str(bomb)}
    assert messages[str(corrupt)].startswith("unreadable image (UnidentifiedImageError: ")
    assert messages[str(bomb)].startswith("unreadable image (DecompressionBombError: ")
    # ... and so are they where training and evaluation read images
    records = [{"file_name": str(bomb), "height": 20000, "width": 20000}]
    assert list(readable_images(records, "BGR", problems)) == []
    assert problems[-1][1].startswith("unreadable image (DecompressionBombError: ")

    write_image(tmp_path / "frames" / "a.png", 40, 30)
    (tmp_path / "frames" / "b.png").write_bytes(b"")
    dicts, problems = custom.load_image_folder(tmp_path / "frames")
    assert [(d["image_id"], d["width"], d["height"]) for d in dicts] == [("a", 40, 30)]
    assert [path for path, _ in problems] == [str(tmp_path / "frames" / "b.png")]


def test_image_folder_finds_every_image_at_the_size_training_reads(tmp_path):
    # A phone photo: stored 40 x 30 with an EXIF orientation that turns it by 90 degrees, as
    # detectron2's read_image (so the training mapper's size check) applies it.
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "frames").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "frames" / "turned.jpg", exif=exif)
    write_image(tmp_path / "frames" / "upright.png", 40, 30)
    write_image(tmp_path / "frames" / "CAMERA.JPG", 20, 10, "JPEG")
    (tmp_path / "frames" / "notes.txt").write_text("not an image")
    dicts, problems = custom.load_image_folder(tmp_path / "frames")
    assert [(d["image_id"], d["width"], d["height"]) for d in dicts] == [
        ("CAMERA", 20, 10), ("turned", 30, 40), ("upright", 40, 30)]
    shapes = [image.shape for _, image in readable_images(dicts, "BGR", problems)]
    assert shapes == [(10, 20, 3), (40, 30, 3), (30, 40, 3)] and not problems
    # an annotation of the photo as stored, unturned (a tool that ignores EXIF): named as such
    unturned = {"file_name": str(tmp_path / "frames" / "turned.jpg"), "width": 40, "height": 30}
    assert not list(readable_images([unturned], "BGR", problems))
    ((_, message),) = problems
    assert message.endswith("Its EXIF orientation (6) turns it by 90 degrees, as read_image "
                            "applies it (and image viewers do): an annotation made without EXIF "
                            "has the width and height, and the boxes, of the unturned image.")
    (tmp_path / "frames" / "album.png").mkdir()  # a folder is no image
    (tmp_path / "frames" / "gone.png").symlink_to(tmp_path / "nowhere.png")  # a link to nothing
    # a 16-bit grayscale PNG, which read_image would clip to 8 bits; images in a subfolder
    Image.fromarray(np.full((30, 40), 4000, np.uint16)).save(tmp_path / "frames" / "depth.png")
    (tmp_path / "frames" / "day2" / "noon").mkdir(parents=True)
    write_image(tmp_path / "frames" / "day2" / "a.png", 40, 30)
    write_image(tmp_path / "frames" / "day2" / "noon" / "b.jpg", 40, 30, "JPEG")
    dicts, problems = custom.load_image_folder(tmp_path / "frames")
    assert len(dicts) == 3
    assert [(path, message.split(":")[0]) for path, message in problems] == [
        (str(tmp_path / "frames" / "day2"), "2 images in this subfolder are not read"),
        (str(tmp_path / "frames" / "depth.png"), "a I;16 image (more than 8 bits a pixel)"),
        (str(tmp_path / "frames" / "gone.png"), "unreadable image (FileNotFoundError")]
    # ... and where training, evaluation and check_dataset.py --read-images meet it in a split
    # whose annotations give its size (COCO, VOC, Cityscapes: no image is opened as they load)
    depth = {"file_name": str(tmp_path / "frames" / "depth.png"), "width": 40, "height": 30}
    assert not list(readable_images([depth], "BGR", problems))
    assert problems[-1] == (depth["file_name"], "a I;16 image (more than 8 bits a pixel): "
                            "detectron2's read_image clips it to 8 bits, white wherever it is "
                            "above 255; convert it to 8 bits")
    (tmp_path / "by_day" / "day1").mkdir(parents=True)
    write_image(tmp_path / "by_day" / "day1" / "c.png", 40, 30)
    with pytest.raises(DatasetError, match=r"no jpg/jpeg/png images in .*/by_day \(only in its "
                                           r"subfolders \['day1'\], which are not read\)"):
        custom.load_image_folder(tmp_path / "by_day")


def test_every_exif_orientation_and_a_broken_png_chunk_are_met_as_training_meets_them(tmp_path):
    (tmp_path / "frames").mkdir()
    for orientation in range(1, 9):  # 5-8 turn the image by 90 degrees (and mirror some)
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.new("RGB", (40, 30)).save(tmp_path / "frames" / f"{orientation}.jpg", exif=exif)
    dicts, problems = custom.load_image_folder(tmp_path / "frames")
    assert [(d["width"], d["height"]) for d in dicts] == [(40, 30)] * 4 + [(30, 40)] * 4
    assert len(list(readable_images(dicts, "BGR", problems))) == 8 and not problems
    # a PNG whose header reads, but whose second image data chunk is broken: PIL raises
    # SyntaxError as it decodes it
    png = (tmp_path / "frames" / "1.jpg").with_name("broken.png")
    Image.new("RGB", (40, 30), "red").save(png)
    data = png.read_bytes()
    start = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[start:start + 4])[0]
    pixels = data[start + 8:start + 8 + length]
    png.write_bytes(data[:start] + png_chunk(b"IDAT", pixels[:4]) + png_chunk(b"\0\1\2\3",
                    pixels[4:]) + data[start + 12 + length:])
    broken = {"file_name": str(png), "width": 40, "height": 30}
    assert not list(readable_images([broken], "BGR", problems))
    assert problems == [(str(png), "unreadable image (SyntaxError: broken PNG file (chunk "
                                   "b'\\x00\\x01\\x02\\x03')); replace or remove it")]


def voc_xml(objects, width=1914, height=1052):
    body = "".join(
        f"<object><name>{name}</name><difficult>{int(difficult)}</difficult><bndbox>"
        f"<xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, (x0, y0, x1, y1), difficult in objects)
    return (f"<annotation><folder>VOC2012</folder><filename>x.jpg</filename><size>"
            f"<width>{width}</width><height>{height}</height><depth>3</depth></size>{body}"
            "</annotation>")


def sim10k_tree(root, image_id, objects):
    xml = root / "Annotations" / f"{image_id}.xml"
    xml.parent.mkdir(parents=True, exist_ok=True)
    xml.write_text(voc_xml(objects))
    write_image(root / "JPEGImages" / f"{image_id}.jpg", 1914, 1052, "JPEG")
    return xml


@pytest.mark.parametrize("folder", ["sim10k", "sim10k/VOC2012"])  # VOC2012/: as unpacked
def test_sim10k_classes_and_car_only(tmp_path, folder):
    objects = [("car", (101, 201, 300, 400), False), ("person", (11, 21, 40, 90), False),
               ("motorbike", (501, 501, 560, 580), True)]
    sim10k_tree(tmp_path / folder, "3384645", objects)
    register_sim10k(tmp_path)
    (record,) = DatasetCatalog.get("sim10k_train")
    assert (record["height"], record["width"]) == (1052, 1914)
    assert boxes(record, voc.SIM10K_CLASSES) == [("car", [100.0, 200.0, 300.0, 400.0], 0),
                                                 ("motorbike", [500.0, 500.0, 560.0, 580.0], 1),
                                                 ("person", [10.0, 20.0, 40.0, 90.0], 0)]
    (car,) = DatasetCatalog.get("sim10k_car_train")
    assert boxes(car, ["car"]) == [("car", [100.0, 200.0, 300.0, 400.0], 0)]


def test_voc_unknown_class_and_broken_xml_are_counted_skips(tmp_path):
    sim10k_tree(tmp_path, "1", [("car", (1, 1, 10, 10), False)])
    unknown = sim10k_tree(tmp_path, "2", [("truck", (1, 1, 10, 10), False)])
    broken = sim10k_tree(tmp_path, "3", [])
    broken.write_text("<annotation><size>")
    dicts, problems = voc.load_voc(tmp_path, None, ("car",), voc.SIM10K_CLASSES)
    assert [d["image_id"] for d in dicts] == ["1"]
    messages = dict(problems)
    assert "unknown class 'truck'" in messages[str(unknown)]
    assert "not a VOC annotation: ParseError" in messages[str(broken)]


def test_a_voc_folder_read_for_some_of_its_classes(tmp_path, caplog):
    def annotation(image_id, body):
        (tmp_path / "Annotations").mkdir(exist_ok=True)
        (tmp_path / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation>{body}</annotation>")

    size = "<size><width>100</width><height>50</height></size>"
    # 0-based boxes (xmin 0, xmax the width), another class, upper case, an empty <difficult/>
    annotation("a", size + "<object><name>Car</name><difficult/><bndbox><xmin>0</xmin>"
                      "<ymin>0</ymin><xmax>100</xmax><ymax>20</ymax></bndbox></object>"
                      "<object><name>dog</name><bndbox><xmin>5</xmin><ymin>5</ymin>"
                      "<xmax>9</xmax><ymax>9</ymax></bndbox></object>")
    write_image(tmp_path / "JPEGImages" / "a.jpg", 100, 50, "JPEG")
    annotation("b", "<object><name>car</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                    "<xmax>4</xmax><ymax>4</ymax></bndbox></object>"  # no <size>, a PNG
                    "<object><name>Dgo</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                    "<xmax>4</xmax><ymax>4</ymax></bndbox></object>")  # a misspelt name
    write_image(tmp_path / "JPEGImages" / "b.png", 30, 20)
    annotation("c", "<size><height>50</height></size>")
    write_image(tmp_path / "JPEGImages" / "c.jpg", 100, 50, "JPEG")
    annotation("d", size + "<object><name>dog</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>9"
                           "</xmax><ymax>9</ymax></bndbox></object><object><name>car</name>"
                           "<bndbox><xmin>5</xmin><ymin>5</ymin><xmax>9</xmax><ymax>99</ymax>"
                           "</bndbox></object>")  # an image dropped: its dog is not counted
    write_image(tmp_path / "JPEGImages" / "d.jpg", 100, 50, "JPEG")
    dicts, problems = voc.load_voc(tmp_path, None, ("car", "bus"))
    assert [(d["image_id"], d["width"], d["height"], [a["bbox"] for a in d["annotations"]])
            for d in dicts] == [("a", 100, 50, [[0.0, 0.0, 100.0, 20.0]]),
                                ("b", 30, 20, [[0.0, 0.0, 4.0, 4.0]])]
    assert dicts[1]["file_name"] == str(tmp_path / "JPEGImages" / "b.png")
    assert problems == [
        (str(tmp_path / "Annotations" / "c.xml"), "not a VOC annotation: <size> has no <width>"),
        (str(tmp_path / "Annotations" / "d.xml"), "box [4.0, 4.0, 9.0, 99.0] outside the 100x50 "
                                                  "image for 'car' (0-based)"),
        (str(tmp_path / "Annotations"), "no object of the listed class 'bus' in any annotation "
                                        "read")]
    # the objects of other classes in the images kept, by name: a misspelt one shows
    assert problems.objects_left_out == {"dog": 1, "dgo": 1}
    with caplog.at_level(logging.INFO, logger="da_detect"):
        problems.log("mine")
    assert ("mine: objects left out, of classes the split does not list (images kept): dog 1, "
            "dgo 1") in caplog.messages
    # SIM10K's classes are all known: a name outside them is a problem that drops the image
    _, problems = voc.load_voc(tmp_path, None, ("car",), voc.SIM10K_CLASSES)
    assert "unknown class 'dog'" in dict(problems)[str(tmp_path / "Annotations" / "a.xml")]


def test_voc_image_sets_and_annotations_that_would_mislead_are_named(tmp_path):
    for image_id in ("1", "2", "3"):
        sim10k_tree(tmp_path, image_id, [("car", (1, 1, 10, 10), False)])
    wrapped = tmp_path / "Annotations" / "3.xml"
    wrapped.write_text(f"<doc>{voc_xml([('car', (1, 1, 10, 10), False)])}</doc>")
    write_image(tmp_path / "JPEGImages" / "4.jpg", 20, 20, "JPEG")  # no annotation
    listing = voc.image_set_file(tmp_path, "train")
    listing.parent.mkdir(parents=True)
    listing.write_bytes("1\n2\n1\n".encode("utf-8-sig"))  # a byte order mark, 1 twice
    dicts, problems = voc.load_voc(tmp_path, "train", ("car",))
    assert [d["image_id"] for d in dicts] == ["1", "2"]
    assert problems == [(str(listing), "lists '1' twice; read once")]
    # reading every annotation: the image without one, and the one with another root element
    dicts, problems = voc.load_voc(tmp_path, None, ("car",))
    assert [d["image_id"] for d in dicts] == ["1", "2"]
    assert problems == [
        (str(tmp_path / "JPEGImages" / "4.jpg"),
         f"image without its annotation {tmp_path / 'Annotations' / '4'}.xml"),
        (str(wrapped), "not a VOC annotation: the root element is <doc>, not <annotation>")]
    listing.write_bytes("1\n2\n".encode("utf-16"))  # as Windows' Notepad saves "Unicode"
    with pytest.raises(DatasetError, match=f"VOC image set: {listing} is not UTF-8 text"):
        voc.load_voc(tmp_path, "train", ("car",))
    listing.unlink()
    listing.mkdir()
    with pytest.raises(DatasetError, match=f"expected the file {listing}, which is a folder"):
        voc.load_voc(tmp_path, "train", ("car",))


def test_voc_reads_a_jpeg_image_and_a_zero_size_takes_the_images_size(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "1.xml").write_text(
        voc_xml([("car", (1, 1, 10, 10), False)], width=0, height=0))
    write_image(tmp_path / "JPEGImages" / "1.jpeg", 100, 50, "JPEG")
    (record,), problems = voc.load_voc(tmp_path, None, ("car",), voc.SIM10K_CLASSES)
    assert not problems
    assert (record["file_name"], record["width"], record["height"]) == (
        str(tmp_path / "JPEGImages" / "1.jpeg"), 100, 50)
    assert boxes(record, ["car"]) == [("car", [0.0, 0.0, 10.0, 10.0], 0)]


def test_user_domains_from_config_keys(tmp_path):
    sim10k_tree(tmp_path / "voc", "a", [("car", (1, 1, 10, 10), False)])
    (tmp_path / "voc" / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "voc" / "ImageSets" / "Main" / "val.txt").write_text("a\n")
    write_image(tmp_path / "unlabeled" / "frame1.png", 40, 30)
    config = tmp_path / "domains.yaml"
    config.write_text(
        f'_BASE_: "{REPO}/configs/synthetic/Base-synthetic-R18-FPN.yaml"\n'
        "DATASETS:\n"
        f'  VOC_DOMAINS: [["my_voc_val", "{tmp_path}/voc", "val", "car"]]\n'
        f'  IMAGE_FOLDER_DOMAINS: [["my_frames", "{tmp_path}/unlabeled"]]\n'
        '  TEST: ("my_voc_val",)\n')
    load_config(str(config))
    assert DatasetCatalog.get("my_voc_val")[0]["annotations"][0]["bbox"] == [0.0, 0.0, 10.0, 10.0]
    assert DatasetCatalog.get("my_frames") == [{
        "file_name": str(tmp_path / "unlabeled" / "frame1.png"), "image_id": "frame1",
        "height": 30, "width": 40}]
    with pytest.raises(ConfigError, match="no such file"):
        load_config(str(config), ["DATASETS.COCO_DOMAINS", "[['x', 'missing.json', 'imgs']]"])


def test_voc_domain_is_reloaded_when_its_image_set_or_images_change(tmp_path, monkeypatch):
    monkeypatch.setenv("DA_DETECT_CACHE", str(tmp_path / "cache"))
    sim10k_tree(tmp_path / "voc", "a", [("car", (1, 1, 10, 10), False)])
    b = sim10k_tree(tmp_path / "voc", "b", [("car", (1, 1, 10, 10), False)])
    (tmp_path / "voc" / "JPEGImages" / "b.jpg").unlink()
    listing = tmp_path / "voc" / "ImageSets" / "Main" / "trainval.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text("a\n")
    load_config(str(SYNTHETIC_FPN),
                ["DATASETS.VOC_DOMAINS", f"[['depot_train', '{tmp_path}/voc', 'trainval', 'car']]"])

    def loaded():
        dicts, problems = load_with_problems("depot_train")
        return [d["image_id"] for d in dicts], [path for path, _ in problems]

    assert loaded() == (["a"], [])
    listing.write_text("a\nb\n")
    assert loaded() == (["a"], [str(b)])  # b listed, its image missing
    write_image(tmp_path / "voc" / "JPEGImages" / "b.jpg", 1914, 1052, "JPEG")
    assert loaded() == (["a", "b"], [])


def test_domain_entries_that_cannot_work_are_refused_when_the_config_loads(tmp_path):
    (tmp_path / "val.json").write_text("{}")
    with pytest.raises(ConfigError, match=f"DATASETS.COCO_DOMAINS 'dashcam_val' image_root: "
                                          f"expected the folder {tmp_path}/images"):
        load_config(str(SYNTHETIC_FPN), ["DATASETS.COCO_DOMAINS",
                                         f"[['dashcam_val', '{tmp_path}/val.json', "
                                         f"'{tmp_path}/images']]"])
    sim10k_tree(tmp_path / "voc", "a", [("car", (1, 1, 10, 10), False)])
    with pytest.raises(ConfigError, match="DATASETS.VOC_DOMAINS 'depot_train': no class names"):
        load_config(str(SYNTHETIC_FPN),
                    ["DATASETS.VOC_DOMAINS", f"[['depot_train', '{tmp_path}/voc', '', ' , ']]"])
    with pytest.raises(ConfigError, match=r"DATASETS.VOC_DOMAINS 'depot_train': class names "
                                          r"\['Car', 'car'\] in 'car,Car,bus' are one class"):
        load_config(str(SYNTHETIC_FPN), ["DATASETS.VOC_DOMAINS",
                                         f"[['depot_train', '{tmp_path}/voc', '', 'car,Car,bus']]"])
    write_image(tmp_path / "frames" / "a.png", 40, 30)
    with pytest.raises(ConfigError, match="DATASETS.IMAGE_FOLDER_DOMAINS 'synthetic_foggy_val': "
                                          "the name of a registered dataset"):
        load_config(str(SYNTHETIC_FPN), ["DATASETS.IMAGE_FOLDER_DOMAINS",
                                         f"[['synthetic_foggy_val', '{tmp_path}/frames']]"])
    assert len(DatasetCatalog.get("synthetic_foggy_val")) == 100  # the built-in split, untouched
    with pytest.raises(ConfigError, match="DATASETS.IMAGE_FOLDER_DOMAINS 'frames': the name of "
                                          "another domain in this config"):
        load_config(str(SYNTHETIC_FPN), [
            "DATASETS.IMAGE_FOLDER_DOMAINS", f"[['frames', '{tmp_path}/frames']]",
            "DATASETS.VOC_DOMAINS", f"[['frames', '{tmp_path}/voc', '', 'car']]"])
    frames = ["DATASETS.IMAGE_FOLDER_DOMAINS", f"[['frames', '{tmp_path}/frames']]"]
    load_config(str(SYNTHETIC_FPN), frames)
    assert len(DatasetCatalog.get("frames")) == 1
    write_image(tmp_path / "frames" / "b.png", 40, 30)
    load_config(str(SYNTHETIC_FPN), frames)  # a later config naming it again replaces it
    assert len(DatasetCatalog.get("frames")) == 2


def coco_json(path, categories, annotations=(), images=({"id": 1, "file_name": "a.jpg"},)):
    """A COCO-JSON file of 64 x 32 images (by default one, ``a.jpg``); an annotation's id is its
    place, its image 1 and its category 1 unless it gives them."""
    path.write_text(json.dumps({
        "images": [{"height": 32, "width": 64, **image} for image in images],
        "annotations": [{"id": k + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 1.0,
                         **a} for k, a in enumerate(annotations)],
        "categories": [{"id": k + 1, "name": name} for k, name in enumerate(categories)]}))
    return path


def test_check_dataset_tool_reads_coco_domains_and_names_the_file_that_fails(tmp_path):
    write_image(tmp_path / "images" / "a.jpg", 64, 32, "JPEG")
    car = [{"category_id": 1, "bbox": [1, 2, 10, 10]}]
    coco_json(tmp_path / "kitti.json", ["car"], car)
    (tmp_path / "broken.json").write_text("{not json")
    coco_json(tmp_path / "no_categories.json", [])
    coco_json(tmp_path / "unknown_category.json", ["car"], [dict(car[0], category_id=7)])
    domains = [[name, str(tmp_path / f"{json_file}.json"), str(tmp_path / "images")]
               for name, json_file in (("kitti_as_coco", "kitti"), ("broken", "broken"),
                                       ("empty", "no_categories"), ("typo", "unknown_category"))]
    config = tmp_path / "domains.yaml"
    config.write_text(f'_BASE_: "{SYNTHETIC_FPN}"\n'
                      f"DATASETS:\n  COCO_DOMAINS: {json.dumps(domains)}\n")
    result = subprocess.run([sys.executable, str(REPO / "tools" / "check_dataset.py"),
                             "--config-file", str(config), "kitti_as_coco", "broken", "empty",
                             "typo"], capture_output=True, text=True,
                            env={"DA_DETECT_DATASETS": str(tmp_path / "nowhere"),
                                 "DA_DETECT_CACHE": str(tmp_path / "cache"), "PATH": ""})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "kitti_as_coco: 1 images, 1 boxes" in result.stdout
    for name, json_file, error in (
            ("broken", "broken", "cannot be read: JSONDecodeError: "),
            ("empty", "no_categories", "'categories' is empty"),
            ("typo", "unknown_category", "annotation 1 has 'category_id' 7, not one of the "
                                         "categories' ids [1]")):
        assert (f"{name}: cannot be read: DATASETS.COCO_DOMAINS {name!r}: "
                f"{tmp_path}/{json_file}.json: {error}") in result.stdout


def coco_domain(tmp_path, images, annotations, categories=("car",)):
    """A COCO_DOMAINS split 'mine' of 64 x 32 images named by id, registered by a config."""
    (tmp_path / "images").mkdir(exist_ok=True)
    for image in images:
        write_image(tmp_path / "images" / f"{image['id']}.png", 64, 32)
    json_file = coco_json(tmp_path / "mine.json", categories, annotations,
                          [{"file_name": f"{image['id']}.png", **image} for image in images])
    config = tmp_path / "mine.yaml"
    config.write_text(f'_BASE_: "{SYNTHETIC_FPN}"\nDATASETS:\n  COCO_DOMAINS: '
                      f'[["mine", "{json_file}", "{tmp_path / "images"}"]]\n')
    load_config(str(config))
    return json_file, config


def test_a_coco_domain_drops_each_image_whose_size_or_box_cannot_be_used(tmp_path):
    boxes = {1: [0, 0, 64.4, 32], 2: [30, 10, -20, 10], 3: [10, 10, 20], 4: [50, 10, 100, 10],
             5: [1, 1, 5, 5], 6: ["1", "1", "5", "5"], 7: None}
    images = [{"id": i} if i != 5 else {"id": 5, "height": 0, "width": 0} for i in boxes]
    json_file, _ = coco_domain(tmp_path, images, [{"image_id": i, "bbox": box}
                                                  for i, box in boxes.items()]
                               + [{"image_id": 99, "bbox": [1, 1, 2, 2]}])
    dicts, problems = load_with_problems("mine")
    assert [d["image_id"] for d in dicts] == [1]  # a box a rounding overruns by 0.4 is kept
    assert MetadataCatalog.get("mine").thing_classes == ["car"]
    assert [message for _, message in problems] == [
        "image 5: image size 0x0 is not between 1 and 32768 pixels",
        "image 2: annotation 2: 'bbox' [30, 10, -20, 10] has a width or height that is not "
        "above 0",
        "image 3: annotation 3: 'bbox' [10, 10, 20] is not 4 numbers [x, y, width, height]",
        "image 4: annotation 4: 'bbox' [50, 10, 100, 10]: box [50.0, 10.0, 150.0, 20.0] "
        "outside the 64x32 image (as x0, y0, x1, y1)",
        "image 6: annotation 6: 'bbox' ['1', '1', '5', '5'] is not 4 numbers [x, y, width, "
        "height]",
        "image 7: annotation 7: 'bbox' None is not 4 numbers [x, y, width, height]",
        "annotation 8: 'image_id' 99 is no image's id"]
    assert {path for path, _ in problems} == {str(json_file)}


def test_a_coco_image_whose_file_is_missing_is_dropped_as_it_loads_and_not_evaluated(tmp_path):
    json_file, _ = coco_domain(tmp_path, [{"id": 1}, {"id": 2}], [
        {"image_id": 1, "bbox": [10, 5, 20, 10]}, {"image_id": 2, "bbox": [10, 5, 20, 10]},
        {"image_id": 2, "bbox": [40, 5, 20, 20], "category_id": 2}], categories=("car", "bus"))
    (tmp_path / "images" / "2.png").unlink()
    dicts, problems = load_with_problems("mine")
    assert [d["image_id"] for d in dicts] == [1]
    assert list(problems) == [(str(json_file), f"image 2: annotation without its image "
                                                f"{tmp_path / 'images' / '2.png'}")]

    # the COCO file still holds image 2, whose boxes no model can see: not counted as missed
    def evaluated(boxes):
        instances = Instances((32, 64))
        instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float).reshape(-1, 4))
        instances.scores = torch.full((len(boxes),), 0.9)
        instances.pred_classes = torch.zeros(len(boxes), dtype=torch.long)
        evaluator = COCOAP50Evaluator("mine", output_dir=str(tmp_path / "eval"),
                                      distributed=False)
        evaluator.reset()
        evaluator.process([{"image_id": 1, "height": 32, "width": 64}],
                          [{"instances": instances}])
        return evaluator.evaluate()["bbox"]

    found, missed = evaluated([[10, 5, 30, 15]]), evaluated([])
    assert found["AP50-car"] == pytest.approx(100) and missed["AP50-car"] == 0.0
    assert math.isnan(found["AP50-bus"]) and math.isnan(missed["AP50-bus"])


@pytest.mark.parametrize("change, error", [
    (lambda d: d["images"][1].update(id=1),
     "two images with 'id' 1: a box could not be told which one it belongs to"),
    (lambda d: d["images"][0].update(id="1"), "image ids mix integers and strings"),
    (lambda d: d["categories"].append({"id": 2, "name": "car"}),
     "two categories with 'name' 'car'"),
    (lambda d: d["categories"].append({"id": 1, "name": "bus"}), "two categories with 'id' 1"),
    (lambda d: d.pop("images"), "no 'images' list"),
    (lambda d: d.update(images=[]), "'images' is empty"),
    (lambda d: d.update(annotations={"1": {}}), "'annotations' is not a list of objects"),
    (lambda d: d["annotations"][0].update(category_id=2),
     "annotation 1 has 'category_id' 2, not one of the categories' ids [1]"),
])
def test_a_coco_file_whose_meaning_is_unclear_is_refused_naming_the_key(tmp_path, change, error):
    json_file, _ = coco_domain(tmp_path, [{"id": 1}, {"id": 2}],
                               [{"image_id": 1, "bbox": [1, 1, 5, 5]}])
    data = json.loads(json_file.read_text())
    change(data)
    json_file.write_text(json.dumps(data))
    with pytest.raises(DatasetError) as raised:
        DatasetCatalog.get("mine")
    assert str(raised.value) == f"DATASETS.COCO_DOMAINS 'mine': {json_file}: {error}"


def test_check_dataset_tool_fails_a_split_with_no_usable_image(tmp_path):
    _, config = coco_domain(tmp_path, [{"id": 1}], [{"image_id": 1, "bbox": [1, 1, 0, 5]}])
    result = run_script_here("tools/check_dataset.py", "--config-file", config, "mine",
                             check=False)
    assert result.returncode == 1
    assert result.stdout.splitlines()[:3] == [
        "mine: 0 images, 0 boxes",
        f"  problem: {tmp_path / 'mine.json'}: image 1: annotation 1: 'bbox' [1, 1, 0, 5] has a "
        f"width or height that is not above 0",
        "  mine has no usable image: training or evaluating on it stops"]


def test_check_dataset_tool_reports_counts_and_problems(tmp_path):
    kitti_tree(tmp_path / "kitti", "000000", KITTI_LINES)
    kitti_tree(tmp_path / "kitti", "000001", ["Car 1 2 3"])
    sim10k_tree(tmp_path / "sim10k", "1", [("car", (1, 1, 10, 10), False),
                                           ("person", (1, 1, 10, 10), False)])
    result = subprocess.run([sys.executable, str(REPO / "tools" / "check_dataset.py"),
                             "kitti_car_train", "cityscapes_val", "coco_2017_val",
                             "kitti_car_trian", "sim10k_car_train"],
                            capture_output=True, text=True, cwd=tmp_path,
                            env={"DA_DETECT_DATASETS": str(tmp_path),
                                 "DA_DETECT_CACHE": str(tmp_path / "cache"), "PATH": ""})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "kitti_car_train: 1 images, 3 boxes" in result.stdout
    assert "| car (crowd/ignore) |       2 |" in result.stdout
    assert "000001.txt:1: expected 15 columns, found 4" in result.stdout
    assert "cityscapes_val: cannot be read: Cityscapes images: expected the folder" in result.stdout
    # detectron2's own splits, read by its loaders, and a misspelt name
    assert ("coco_2017_val: cannot be read: FileNotFoundError: [Errno 2] No such file or "
            "directory: 'datasets/coco/annotations/instances_val2017.json'") in result.stdout
    assert ("unknown dataset name 'kitti_car_trian' (did you mean 'kitti_car_train'"
            in result.stdout)
    assert ("?); a domain that a config names (DATASETS.*_DOMAINS) is registered by giving the "
            "config: --config-file CONFIG\n" in result.stdout)
    assert ("sim10k_car_train: 1 images, 1 boxes\n| class   |   boxes |\n|:--------|--------:|\n"
            "| car     |       1 |\n  objects left out, of classes the split does not list "
            "(images kept): person 1\n") in result.stdout


def test_parsed_dicts_are_cached_until_a_file_or_the_loader_code_changes(tmp_path, monkeypatch):
    from da_detect.data import cache

    monkeypatch.setenv("DA_DETECT_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "labels.txt"
    source.write_text("a")
    builds = []

    def load():
        builds.append(source.read_text())
        return [{"label": source.read_text()}], []

    def loaded():
        return cache.cached("split", {"root": str(tmp_path)}, [str(source)], load)[0]

    assert loaded() == loaded() == [{"label": "a"}] and builds == ["a"]
    source.write_text("bb")
    assert loaded() == [{"label": "bb"}] and builds == ["a", "bb"]
    written = source.stat().st_mtime_ns
    source.write_text("cc")  # the same size: told apart by the time it was written
    os.utime(source, ns=(written + 10**9, written + 10**9))
    assert loaded() == [{"label": "cc"}] and builds == ["a", "bb", "cc"]
    source.write_text("bb")
    assert loaded() == [{"label": "bb"}] and builds == ["a", "bb", "cc", "bb"]
    cached = source.stat()
    time.sleep(0.05)  # beyond the kernel's coarse clock, which stamps the change time
    source.write_text("dd")  # the same size and, as cp -p or rsync -a leave it, modification time
    os.utime(source, ns=(cached.st_atime_ns, cached.st_mtime_ns))
    assert loaded() == [{"label": "dd"}] and builds == ["a", "bb", "cc", "bb", "dd"]
    version = cache.loader_code_digest()[:8]
    monkeypatch.setattr(cache, "loader_code_digest", lambda: "another version of the loaders")
    assert loaded() == [{"label": "dd"}] and builds == ["a", "bb", "cc", "bb", "dd", "dd"]
    # one entry per name and loaders' version: the stale ones are gone; the other version's
    # (another checkout's) and another name's, one that starts alike, are kept
    cache.cached("split-b", {}, [], lambda: ([], []))
    entries = sorted(p.name[:-len("0123456789abcdef.pkl")] for p in
                     (tmp_path / "cache").glob("split-*.pkl"))
    assert entries == sorted(["split-another -", "split-b-another -", f"split-{version}-"])


def test_a_split_read_with_other_parameters_is_parsed_anew(tmp_path, monkeypatch):
    from da_detect.data import cache

    monkeypatch.setenv("DA_DETECT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "labels.txt").write_text("car\nperson\n")

    def read(classes):  # as a VOC domain registered again with other classes
        return cache.cached("mine", {"classes": classes}, [str(tmp_path / "labels.txt")],
                            lambda: ([{"classes": classes}], []))[0]

    assert read("car") == [{"classes": "car"}]
    assert read("car,person") == [{"classes": "car,person"}]


def test_a_cache_entry_cut_short_as_it_is_stored_is_not_left_behind(tmp_path, monkeypatch):
    from da_detect.data import cache

    monkeypatch.setenv("DA_DETECT_CACHE", str(tmp_path / "cache"))

    def dump_cut_short(result, f):
        f.write(b"\x80\x04 half a pickle")
        raise KeyboardInterrupt  # the process is stopped in the middle of the write

    with monkeypatch.context() as patch:
        patch.setattr(cache.pickle, "dump", dump_cut_short)
        with pytest.raises(KeyboardInterrupt):
            cache.cached("split", {}, [], lambda: ([{"label": "a"}], []))
    assert list((tmp_path / "cache").iterdir()) == []
    assert cache.cached("split", {}, [], lambda: ([{"label": "a"}], [])) == ([{"label": "a"}], [])


def test_a_damaged_cache_entry_is_read_again_and_a_cache_that_is_a_file_is_named(tmp_path,
                                                                                monkeypatch):
    from da_detect.data import cache

    monkeypatch.setenv("DA_DETECT_CACHE", str(tmp_path / "cache"))
    builds = []

    def loaded():
        return cache.cached("split", {}, [], lambda: builds.append(1) or ([{"a": 1}], []))

    assert loaded() == loaded() == ([{"a": 1}], []) and len(builds) == 1
    (entry,) = (tmp_path / "cache").glob("split-*.pkl")
    for damaged in (entry.read_bytes()[:10], b""):  # cut short, as by a full disk
        entry.write_bytes(damaged)
        assert loaded() == ([{"a": 1}], [])
        assert entry.read_bytes() != damaged  # stored anew
    assert len(builds) == 3
    monkeypatch.setenv("DA_DETECT_CACHE", str(entry))
    with pytest.raises(DatasetError, match=f"the dataset cache {entry} \\(DA_DETECT_CACHE\\) is "
                                           f"a file, not a folder"):
        loaded()


def test_links_to_nothing_and_unreadable_polygon_files_are_counted_skips(tmp_path, monkeypatch):
    monkeypatch.setenv("DA_DETECT_CACHE", str(tmp_path / "cache"))
    kitti_tree(tmp_path / "kitti", "000000", KITTI_LINES)
    kitti_tree(tmp_path / "kitti", "000001", KITTI_LINES)
    image = tmp_path / "kitti" / "training" / "image_2" / "000001.png"
    image.unlink()
    image.symlink_to(tmp_path / "nowhere.png")
    register_kitti(tmp_path)
    dicts, problems = load_with_problems("kitti_car_train")
    assert [d["image_id"] for d in dicts] == ["000000"]
    label = tmp_path / "kitti" / "training" / "label_2" / "000001.txt"
    assert problems == [(str(label), f"annotation without its image {image}")]
    gt = cityscapes_tree(tmp_path / "cityscapes", CITYSCAPES_OBJECTS)
    cityscapes_tree(tmp_path / "cityscapes", CITYSCAPES_OBJECTS, base="aachen_000000_000020")
    gt.unlink()
    gt.mkdir()  # a folder named like a polygon file
    (record,), problems = cityscapes.load_cityscapes_detection(
        tmp_path / "cityscapes" / "leftImg8bit" / "train",
        tmp_path / "cityscapes" / "gtFine" / "train")
    assert record["image_id"] == "aachen_000000_000020"
    assert problems == [(str(gt), f"unreadable polygon file: IsADirectoryError: [Errno 21] Is a "
                                  f"directory: '{gt}'")]


def test_kitti_and_cityscapes_are_reloaded_when_an_annotation_is_added(tmp_path, monkeypatch):
    monkeypatch.setenv("DA_DETECT_CACHE", str(tmp_path / "cache"))
    kitti_tree(tmp_path / "kitti", "000000", KITTI_LINES)
    cityscapes_tree(tmp_path / "cityscapes", CITYSCAPES_OBJECTS)
    register_kitti(tmp_path)
    register_cityscapes(tmp_path)
    for name, added in (
            ("kitti_car_train", kitti_tree(tmp_path / "kitti", "000001", KITTI_LINES)),
            ("cityscapes_train", cityscapes_tree(tmp_path / "cityscapes", CITYSCAPES_OBJECTS,
                                                 base="aachen_000001_000019"))):
        text = added.read_text()
        added.unlink()  # its image is there: an archive unpacked in part
        assert len(load_with_problems(name)[0]) == 1
        added.write_text(text)
        assert len(load_with_problems(name)[0]) == 2


def test_the_loader_code_digest_follows_the_loaders_source(tmp_path, monkeypatch):
    from da_detect.data import cache

    copy = tmp_path / "data"
    shutil.copytree(Path(cache.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache, "__file__", str(copy / "cache.py"))
    digests = []
    try:
        for edit in ("", "# a changed loader\n"):
            kitti = copy / "kitti.py"
            kitti.write_text(kitti.read_text() + edit)
            cache.loader_code_digest.cache_clear()
            digests.append(cache.loader_code_digest())
    finally:
        cache.loader_code_digest.cache_clear()
    assert digests[0] != digests[1]
    monkeypatch.undo()
    assert cache.loader_code_digest() == digests[0]  # the copy as it was: the package's code
