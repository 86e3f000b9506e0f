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


def test_written_images_are_the_rendered_scenes_in_their_colors(tmp_path):
    """The PNGs on disk hold the scenes as rendered (RGB), not with red and blue swapped."""
    write_split(SplitSpec("photoreal", "val", 2), tmp_path)
    for index in range(2):
        written = cv2.imread(str(tmp_path / "photoreal" / "val" / f"{index:05d}.png"))
        assert np.array_equal(written[..., ::-1], render("photoreal", "val", index)[0])


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


def recorded_silhouettes(monkeypatch):
    """A list that every object drawn from here on appends its whole silhouette to (an HxW
    bool mask), in drawing order: far to near."""
    drawn = []

    def recording(draw):
        def draw_and_record(rng, image, mask, *args):
            draw(rng, image, mask, *args)
            drawn.append(mask > 0)
        return draw_and_record

    monkeypatch.setattr(synthetic, "_DRAW", {c: recording(d) for c, d in synthetic._DRAW.items()})
    return drawn


def test_objects_mostly_hidden_by_nearer_ones_are_left_unannotated(monkeypatch):
    drawn = recorded_silhouettes(monkeypatch)
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


def test_each_object_lies_at_one_distance_nearer_than_the_sky(monkeypatch):
    """The fog veils an object by the distance of its feet, all of it: not by the depth of the
    ground or sky its pixels cover."""
    drawn, depths = recorded_silhouettes(monkeypatch), []

    def render_style(rng, image, depth, style):
        depths.append(depth.copy())
        return style_of(rng, image, depth, style)

    style_of = synthetic.render_style
    monkeypatch.setattr(synthetic, "render_style", render_style)
    render("foggy", "val", 3)
    nearest = drawn[-1]  # drawn last, over the others: all of it visible
    distances = np.unique(depths[0][nearest])
    assert len(distances) == 1 and distances[0] < depths[0][0, 0] == 60.0  # the sky's


def test_photoreal_blurs_as_a_lens_does():
    edge = np.zeros((9, 9, 3), np.float32)
    edge[:, 5:] = 255.0
    style = DOMAIN_STYLES["photoreal"]
    blurred = synthetic.render_style(np.random.default_rng(0), edge.copy(), np.ones((9, 9)),
                                     synthetic.DomainStyle(blur_sigma=style.blur_sigma,
                                                           noise_sigma=0.0))
    assert style.blur_sigma > 0 and 0 < blurred[4, 4, 0] < 255 and 0 < blurred[4, 5, 0] < 255


def test_wide_angle_camera_sees_a_higher_horizon(monkeypatch):
    horizons = {}

    def recording(rng, image, horizon, width):
        horizons.setdefault(domain, []).append(horizon)

    monkeypatch.setattr(synthetic, "_draw_buildings", recording)
    for domain in ("clean", "wide_angle"):
        for index in range(10):
            render(domain, "val", index)
    assert max(horizons["wide_angle"]) < 0.35 * 256 <= min(horizons["clean"])


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


def test_a_cached_split_of_another_size_is_generated_anew(tmp_path):
    ensure_split(SplitSpec("clean", "val", 3), tmp_path)
    json_path, _ = ensure_split(SplitSpec("clean", "val", 5), tmp_path)
    assert len(json.loads(json_path.read_text())["images"]) == 5


def test_a_process_that_waited_for_the_lock_reuses_the_split_generated_meanwhile(tmp_path,
                                                                               monkeypatch):
    spec = SplitSpec("clean", "val", 2)
    (tmp_path / "clean").mkdir()
    written = []

    def write_split_counted(*args):
        written.append(args)
        return write_split(*args)

    checked = threading.Event()
    current = synthetic._current

    def current_checked(*args):
        checked.set()
        return current(*args)

    monkeypatch.setattr(synthetic, "write_split", write_split_counted)
    monkeypatch.setattr(synthetic, "_current", current_checked)
    with open(tmp_path / "clean" / "val.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the holder generates the split, then lets go
        waiting = threading.Thread(target=ensure_split, args=(spec, tmp_path))
        waiting.start()
        assert checked.wait(timeout=10)  # the split was missing: it waits for the lock
        write_split(spec, tmp_path)
    waiting.join(timeout=60)
    assert not waiting.is_alive() and written == []


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
    dicts = DatasetCatalog.get(name)  # generates the split (and its COCO file) on first use
    coco = json.loads(Path(MetadataCatalog.get(name).json_file).read_text())
    by_id = sorted(coco["categories"], key=lambda c: c["id"])
    assert [c["name"] for c in by_id] == MetadataCatalog.get(name).thing_classes
    assert len(dicts) == SYNTHETIC_SPLIT_SIZES["val"] == len(coco["images"])
    assert all(d["annotations"] for d in dicts[:10])
