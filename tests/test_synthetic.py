"""The synthetic domains: deterministic, annotations inside the images, each shift as described."""
import fcntl
import json
import threading
from pathlib import Path

import pytest

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog

from da_detect.data import synthetic
from da_detect.data.builtin import SYNTHETIC_SPLIT_SIZES, synthetic_split_name
from da_detect.data.synthetic import (
    CLASSES,
    DOMAIN_STYLES,
    SplitSpec,
    ensure_split,
    render_scene,
    scene_seed,
    write_split,
)


def render(domain, split, index):
    rng = np.random.default_rng(scene_seed(domain, split, index))
    return render_scene(rng, 256, 320, DOMAIN_STYLES[domain])


def test_rendering_is_deterministic():
    a_image, a_boxes = render("clean", "train", 7)
    b_image, b_boxes = render("clean", "train", 7)
    assert np.array_equal(a_image, b_image) and a_boxes == b_boxes
    c_image, _ = render("clean", "train", 8)
    assert not np.array_equal(a_image, c_image)


def test_written_split_is_identical_on_rewrite(tmp_path):
    spec = SplitSpec("foggy", "val", 6)
    first = write_split(spec, tmp_path / "a")
    second = write_split(spec, tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    for png in sorted((tmp_path / "a" / "foggy" / "val").glob("*.png")):
        assert png.read_bytes() == (tmp_path / "b" / "foggy" / "val" / png.name).read_bytes()


@pytest.mark.parametrize("domain", sorted(DOMAIN_STYLES))
def test_annotations_lie_inside_their_images(domain, tmp_path):
    spec = SplitSpec(domain, "train", 30)
    coco = json.loads(write_split(spec, tmp_path).read_text())
    images = {im["id"]: im for im in coco["images"]}
    assert len(coco["annotations"]) > 60
    assert {a["category_id"] for a in coco["annotations"]} == {1, 2, 3}
    for ann in coco["annotations"]:
        im = images[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and w >= 4 and h >= 4
        assert x + w <= im["width"] and y + h <= im["height"]
        pixels = cv2.imread(str(tmp_path / domain / "train" / im["file_name"]))
        assert pixels.shape == (im["height"], im["width"], 3)


def test_objects_mostly_hidden_by_nearer_ones_are_left_unannotated(monkeypatch):
    drawn = []  # each object's whole silhouette, in drawing order (far to near)

    def recording(draw):
        def draw_and_record(rng, image, mask, *args):
            draw(rng, image, mask, *args)
            drawn.append(mask > 0)
        return draw_and_record

    monkeypatch.setattr(synthetic, "_DRAW", {c: recording(d) for c, d in synthetic._DRAW.items()})
    hidden = 0
    for index in range(40):
        drawn.clear()
        _, boxes = render_scene(np.random.default_rng(scene_seed("clean", "val", index)), 256, 320,
                                DOMAIN_STYLES["clean"])
        expected = []
        for k, silhouette in enumerate(drawn):
            visible = silhouette & ~np.logical_or.reduce([np.zeros_like(silhouette), *drawn[k + 1:]])
            ys, xs = np.nonzero(visible)
            if visible.sum() < 0.3 * silhouette.sum():
                hidden += 1
                continue
            if min(xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()) >= 4:
                expected.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        assert [box for _, box in boxes] == expected, index
    assert hidden > 5  # the rule was met, not only the visible objects


def test_fog_lowers_contrast_more_with_distance():
    spec = ("foggy", "val", 3)
    rng = np.random.default_rng(scene_seed(*spec))
    clean, clean_boxes = render_scene(rng, 256, 320, DOMAIN_STYLES["clean"])
    rng = np.random.default_rng(scene_seed(*spec))
    foggy, foggy_boxes = render_scene(rng, 256, 320, DOMAIN_STYLES["foggy"])
    assert clean_boxes == foggy_boxes  # same scene, other rendering
    gray = DOMAIN_STYLES["foggy"].fog_gray
    near = slice(230, 256)  # bottom rows: nearest ground
    far = slice(100, 120)   # rows close to the horizon
    def veil(image, rows):
        return np.abs(image[rows].astype(float) - gray).mean()
    assert veil(foggy, near) < veil(clean, near)
    assert veil(foggy, far) / veil(clean, far) < veil(foggy, near) / veil(clean, near)


def same_scene(domain, index):
    """The scene (clean, domain) of seed ``index``: one scene, two renderings."""
    pair = []
    for style in ("clean", domain):
        rng = np.random.default_rng(scene_seed("clean", "val", index))
        pair.append(render_scene(rng, 256, 320, DOMAIN_STYLES[style]))
    return pair


def test_photoreal_keeps_the_scene_and_changes_the_camera():
    (clean, clean_boxes), (photo, photo_boxes) = same_scene("photoreal", 4)
    assert clean_boxes == photo_boxes
    clean, photo = clean.astype(float), photo.astype(float)
    assert photo.mean() < clean.mean()  # gamma > 1 darkens the mid-tones
    red_over_blue = lambda image: image[..., 0].mean() / image[..., 2].mean()  # noqa: E731
    assert red_over_blue(photo) > 1.2 * red_over_blue(clean)  # warm color cast
    # Sensor noise: flat sky rows vary more from pixel to pixel.
    assert np.diff(photo[5:20], axis=1).std() > 2 * np.diff(clean[5:20], axis=1).std()


def test_wide_angle_objects_are_smaller():
    heights = {"clean": [], "wide_angle": []}
    for index in range(20):
        for domain, (_, boxes) in zip(heights, same_scene("wide_angle", index)):
            heights[domain] += [y1 - y0 for _, (_, y0, _, y1) in boxes]
    ratio = np.median(heights["wide_angle"]) / np.median(heights["clean"])
    assert 0.45 < ratio < 0.85, ratio


def test_split_is_cached_and_regenerated_when_stale(tmp_path):
    spec = SplitSpec("clean", "val", 3)
    json_path, _ = ensure_split(spec, tmp_path)
    mtime = json_path.stat().st_mtime_ns
    ensure_split(spec, tmp_path)
    assert json_path.stat().st_mtime_ns == mtime
    coco = json.loads(json_path.read_text())
    code = dict(coco["info"]["generator"]["code"])
    coco["info"]["generator"]["code"]["source"] = "an earlier generator"
    json_path.write_text(json.dumps(coco))
    ensure_split(spec, tmp_path)
    assert json.loads(json_path.read_text())["info"]["generator"]["code"] == code


def test_a_process_generating_a_split_makes_the_others_wait(tmp_path, monkeypatch):
    spec = SplitSpec("clean", "val", 2)
    (tmp_path / "clean").mkdir()
    generating = threading.Event()

    def write_split_seen(*args):
        generating.set()
        return write_split(*args)

    monkeypatch.setattr(synthetic, "write_split", write_split_seen)
    with open(tmp_path / "clean" / "val.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a process generating the split holds it
        waiting = threading.Thread(target=ensure_split, args=(spec, tmp_path))
        waiting.start()
        # without the lock it would start generating at once, long before this second is over
        assert not generating.wait(timeout=1.0) and waiting.is_alive()
    waiting.join(timeout=60)
    assert generating.is_set() and (tmp_path / "clean" / "val.json").exists()


def test_registered_domains_share_classes():
    for domain in DOMAIN_STYLES:
        for split in SYNTHETIC_SPLIT_SIZES:
            name = synthetic_split_name(domain, split)
            assert MetadataCatalog.get(name).thing_classes == list(CLASSES), name
    # the generated COCO file names the same classes, in the same order, as the metadata
    name = synthetic_split_name("foggy", "val")
    coco = json.loads(Path(MetadataCatalog.get(name).json_file).read_text())
    by_id = sorted(coco["categories"], key=lambda c: c["id"])
    assert [c["name"] for c in by_id] == MetadataCatalog.get(name).thing_classes
    dicts = DatasetCatalog.get(name)
    assert len(dicts) == SYNTHETIC_SPLIT_SIZES["val"] == len(coco["images"])
    assert all(d["annotations"] for d in dicts[:10])
