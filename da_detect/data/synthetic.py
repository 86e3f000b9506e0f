"""Procedurally generated street scenes in several domains, written as PNG images + COCO JSON.

Every domain draws scenes of one kind (sky, buildings on the horizon, a road in perspective, and
cars, people and buses standing on the ground plane, nearer ones occluding farther ones) with its
own *style*, each shift modelled on one of the real benchmarks:

* ``clean``: the source domain, as drawn (flat-shaded, like a game engine's frames).
* ``foggy`` (Cityscapes -> Foggy Cityscapes): Koschmieder's fog model, as Foggy Cityscapes uses:
  ``I = J * t + A * (1 - t)`` with transmission ``t = exp(-beta * depth)``, so contrast fades
  toward a gray veil ``A`` with distance.
* ``photoreal`` (SIM10K -> Cityscapes, rendered -> photographed): what a real camera adds to a
  rendered frame: lens blur, strong sensor noise, a color cast and a gamma curve.
* ``wide_angle`` (KITTI <-> Cityscapes, one camera -> another): a wider lens mounted higher, so the
  horizon sits higher in the frame and every object is smaller.

Boxes are the visible extent of each object (from an instance-id map drawn with the image);
objects less than :data:`MIN_VISIBLE_FRACTION` visible, or whose visible box is under
:data:`MIN_BOX_SIDE` pixels on a side, are left unannotated, as in Cityscapes (which has no box
for what it cannot see), with no ignore region: a detection of one counts as a false positive.
Scenes depend only on (domain, split, index), so a dataset is identical on every machine.
"""
import fcntl
import functools
import hashlib
import json
import os
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..atomic_file import atomic_open

CLASSES = ("car", "person", "bus")
MIN_VISIBLE_FRACTION = 0.3
MIN_BOX_SIDE = 4


@dataclass(frozen=True)
class DomainStyle:
    """How a domain draws and renders a scene; the defaults are the clean source domain."""

    fog_beta: float = 0.0  # fog density (0: none)
    fog_gray: float = 200.0  # the veil's gray level
    blur_sigma: float = 0.0  # Gaussian lens blur, pixels (0: none)
    noise_sigma: float = 3.0  # sensor noise, gray levels
    color_gain: tuple = (1.0, 1.0, 1.0)  # per RGB channel
    gamma: float = 1.0  # output = 255 * (input / 255) ** gamma
    object_scale: float = 1.0  # object sizes, relative to the source camera
    horizon: tuple = (0.35, 0.45)  # range of the horizon's height, as a fraction of the image


DOMAIN_STYLES = {
    "clean": DomainStyle(),
    "foggy": DomainStyle(fog_beta=0.04),
    "photoreal": DomainStyle(blur_sigma=1.2, noise_sigma=12.0, color_gain=(1.15, 1.0, 0.75),
                             gamma=1.6),
    "wide_angle": DomainStyle(object_scale=0.65, horizon=(0.25, 0.35)),
}
# the labeled domain the synthetic benchmark adapts from; each other style is a target domain
SOURCE_DOMAIN = "clean"
TARGET_DOMAINS = tuple(d for d in DOMAIN_STYLES if d != SOURCE_DOMAIN)


@dataclass(frozen=True)
class SplitSpec:
    domain: str
    split: str
    num_images: int
    height: int = 256
    width: int = 320


def scene_seed(domain, split, index):
    """A seed that depends only on (domain, split, index): domains see different scenes."""
    return zlib.crc32(f"{domain}/{split}/{index}".encode())


def render_scene(rng, height, width, style):
    """Draw one scene. Returns (image HxWx3 uint8 RGB, list of (class_id, [x0, y0, x1, y1]))."""
    horizon = int(height * rng.uniform(*style.horizon))
    image = np.zeros((height, width, 3), np.float32)
    ids = np.zeros((height, width), np.int32)  # 0 background, k+1 object k
    depth = np.full((height, width), 60.0, np.float32)  # sky and buildings: far away

    sky_top, sky_bottom = rng.uniform(120, 200, 3), rng.uniform(200, 250, 3)
    ramp = np.linspace(0, 1, horizon)[:, None, None]
    image[:horizon] = sky_top * (1 - ramp) + sky_bottom * ramp
    _draw_buildings(rng, image, horizon, width)

    ground = np.arange(horizon, height)
    image[horizon:] = rng.uniform(90, 130, 3)  # pavement
    depth[horizon:] = (4.0 * height / (ground - horizon + 1.0))[:, None].clip(max=60.0)
    _draw_road(rng, image, horizon, height, width)

    objects = []
    for _ in range(rng.integers(2, 9)):
        base = rng.uniform(horizon + 6, height + 10)  # y of the object's feet
        scale = (base - horizon) / (height - horizon)  # perspective: nearer is larger
        objects.append((base, scale, int(rng.choice(len(CLASSES), p=(0.5, 0.35, 0.15)))))
    objects.sort(key=lambda o: o[0])  # far to near: the near ones are drawn over

    full_areas = []
    for k, (base, scale, cls) in enumerate(objects):
        cx = rng.uniform(0.05, 0.95) * width
        mask = np.zeros((height, width), np.uint8)
        _DRAW[CLASSES[cls]](rng, image, mask, cx, base, scale * style.object_scale)
        drawn = mask > 0
        ids[drawn] = k + 1
        depth[drawn] = 4.0 * height / max(base - horizon, 1.0)
        full_areas.append(int(drawn.sum()))

    annotations = []
    for k, (_, _, cls) in enumerate(objects):
        ys, xs = np.nonzero(ids == k + 1)
        if len(xs) == 0 or len(xs) < MIN_VISIBLE_FRACTION * full_areas[k]:
            continue
        box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
        if min(box[2] - box[0], box[3] - box[1]) >= MIN_BOX_SIDE:
            annotations.append((cls, box))

    return render_style(rng, image, depth, style), annotations


def render_style(rng, image, depth, style):
    """The camera of ``style`` looking at a drawn scene (HxWx3 float32 RGB, HxW depth): lens
    blur, sensor noise, fog, color cast and gamma, in this order. Returns HxWx3 uint8."""
    if style.blur_sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), style.blur_sigma)
    image += rng.normal(0, style.noise_sigma, image.shape)
    if style.fog_beta > 0:
        t = np.exp(-style.fog_beta * depth)[..., None]
        image = image * t + style.fog_gray * (1 - t)
    if style.color_gain != (1.0, 1.0, 1.0):
        image = image * np.asarray(style.color_gain, np.float32)
    if style.gamma != 1.0:
        image = 255.0 * (np.clip(image, 0, 255) / 255.0) ** style.gamma
    return np.clip(image, 0, 255).astype(np.uint8)


def _draw_buildings(rng, image, horizon, width):
    x = 0
    while x < width:
        w = int(rng.uniform(20, 60))
        h = int(rng.uniform(0.2, 0.8) * horizon)
        color = rng.uniform(60, 200, 3)
        image[horizon - h:horizon, x:x + w] = color
        for wy in range(horizon - h + 4, horizon - 6, 10):  # windows
            image[wy:wy + 4, x + 3:x + w - 3:8] = color * 0.5
        x += w


def _draw_road(rng, image, horizon, height, width):
    center = width * rng.uniform(0.35, 0.65)
    road = np.array([[center - 4, horizon], [center + 4, horizon],
                     [width * 1.1, height], [-width * 0.1, height]], np.int32)
    cv2.fillPoly(image, [road], tuple(float(c) for c in rng.uniform(50, 80, 3)))
    for y in range(horizon + 4, height, 14):
        s = (y - horizon) / (height - horizon)
        cv2.line(image, (int(center), y), (int(center), y + int(6 * s) + 1), (230, 230, 230),
                 max(1, int(3 * s)))


def _paint(image, mask, draw, color):
    """Run ``draw(canvas, value)`` on the image (with ``color``) and on the mask (with 255)."""
    draw(image, tuple(float(c) for c in color))
    draw(mask, 255)


def _draw_car(rng, image, mask, cx, base, scale):
    w, h = 70 * scale * rng.uniform(0.85, 1.15), 30 * scale * rng.uniform(0.9, 1.1)
    x0, y0 = cx - w / 2, base - h
    paint = rng.uniform(0, 255, 3)
    body = np.array([[x0, y0 + 0.4 * h], [x0 + w, y0 + 0.4 * h], [x0 + w, base - 0.15 * h],
                     [x0, base - 0.15 * h]], np.int32)
    cabin = np.array([[x0 + 0.2 * w, y0], [x0 + 0.75 * w, y0], [x0 + 0.9 * w, y0 + 0.42 * h],
                      [x0 + 0.1 * w, y0 + 0.42 * h]], np.int32)
    _paint(image, mask, lambda c, v: cv2.fillPoly(c, [body, cabin], v), paint)
    window = np.array([[x0 + 0.25 * w, y0 + 0.08 * h], [x0 + 0.72 * w, y0 + 0.08 * h],
                       [x0 + 0.82 * w, y0 + 0.38 * h], [x0 + 0.18 * w, y0 + 0.38 * h]], np.int32)
    cv2.fillPoly(image, [window], (40.0, 50.0, 70.0))
    r = max(1, int(0.17 * h))
    for wx in (x0 + 0.22 * w, x0 + 0.78 * w):
        _paint(image, mask, lambda c, v: cv2.circle(c, (int(wx), int(base - r)), r, v, -1),
               (20, 20, 20))


def _draw_person(rng, image, mask, cx, base, scale):
    h = 48 * scale * rng.uniform(0.85, 1.15)
    w = 0.3 * h
    x0 = cx - w / 2
    legs = np.array([[x0 + 0.1 * w, base - 0.45 * h], [x0 + 0.9 * w, base - 0.45 * h],
                     [x0 + 0.9 * w, base], [x0 + 0.1 * w, base]], np.int32)
    torso = np.array([[x0, base - 0.82 * h], [x0 + w, base - 0.82 * h],
                      [x0 + w, base - 0.43 * h], [x0, base - 0.43 * h]], np.int32)
    _paint(image, mask, lambda c, v: cv2.fillPoly(c, [legs], v), rng.uniform(20, 90, 3))
    _paint(image, mask, lambda c, v: cv2.fillPoly(c, [torso], v), rng.uniform(0, 255, 3))
    r = max(1, int(0.09 * h))
    _paint(image, mask, lambda c, v: cv2.circle(c, (int(cx), int(base - 0.9 * h)), r, v, -1),
           (224, 172, 140))


def _draw_bus(rng, image, mask, cx, base, scale):
    w, h = 130 * scale * rng.uniform(0.9, 1.1), 55 * scale * rng.uniform(0.9, 1.1)
    x0, y0 = cx - w / 2, base - h
    body = np.array([[x0, y0], [x0 + w, y0], [x0 + w, base - 0.1 * h], [x0, base - 0.1 * h]],
                    np.int32)
    _paint(image, mask, lambda c, v: cv2.fillPoly(c, [body], v), rng.uniform(100, 255, 3))
    for i in range(6):  # a row of windows
        wx = x0 + (0.05 + 0.155 * i) * w
        win = np.array([[wx, y0 + 0.15 * h], [wx + 0.12 * w, y0 + 0.15 * h],
                        [wx + 0.12 * w, y0 + 0.45 * h], [wx, y0 + 0.45 * h]], np.int32)
        cv2.fillPoly(image, [win], (40.0, 50.0, 70.0))
    r = max(1, int(0.12 * h))
    for wx in (x0 + 0.15 * w, x0 + 0.85 * w):
        _paint(image, mask, lambda c, v: cv2.circle(c, (int(wx), int(base - r)), r, v, -1),
               (20, 20, 20))


_DRAW = {"car": _draw_car, "person": _draw_person, "bus": _draw_bus}


def split_files(spec, root):
    """``(root/<domain>/<split>.json, root/<domain>/<split>/)``: a split's COCO JSON and its
    images' folder."""
    domain_folder = Path(root) / spec.domain
    return domain_folder / f"{spec.split}.json", domain_folder / spec.split


def write_split(spec, root):
    """Render ``spec`` into its :func:`split_files`: the PNGs, then the COCO JSON.

    The JSON is written last (through a temporary file), so its presence marks a complete split.
    Returns the JSON path.
    """
    style = DOMAIN_STYLES[spec.domain]
    json_path, image_dir = split_files(spec, root)
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(spec.num_images):
        rng = np.random.default_rng(scene_seed(spec.domain, spec.split, index))
        image, objects = render_scene(rng, spec.height, spec.width, style)
        file_name = f"{index:05d}.png"
        _write_png(image_dir / file_name, image[:, :, ::-1])
        images.append({"id": index + 1, "file_name": file_name,
                       "height": spec.height, "width": spec.width})
        for cls, (x0, y0, x1, y1) in objects:
            annotations.append({
                "id": len(annotations) + 1, "image_id": index + 1, "category_id": cls + 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
            })
    coco = {
        "info": {"description": f"da-detect synthetic {spec.domain} {spec.split}",
                 "generator": generator_info(spec)},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n, "supercategory": "object"}
                       for i, n in enumerate(CLASSES)],
    }
    os.sync()  # the images on disk before the JSON that marks the split as generated
    with atomic_open(json_path) as f:
        json.dump(coco, f)
    return json_path


@functools.cache
def generator_code():
    """A digest of this module's source, and the versions of the libraries that draw."""
    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    return {"source": source, "opencv": cv2.__version__, "numpy": np.__version__}


def _write_png(path, bgr):
    """Write whole: a process reading the image meanwhile sees a whole one. Not fsynced one by
    one (seconds for a split): :func:`write_split` syncs them all before it writes the JSON."""
    with atomic_open(path, "wb", durable=False) as f:
        f.write(cv2.imencode(".png", bgr)[1].tobytes())


def generator_info(spec):
    """Everything the images of ``spec`` depend on; a cached split with other values is stale."""
    info = {"code": generator_code(), "spec": asdict(spec),
            "style": asdict(DOMAIN_STYLES[spec.domain])}
    return json.loads(json.dumps(info))  # as it reads back from the JSON (tuples become lists)


def ensure_split(spec, root):
    """Generate the split once; later calls reuse the cached files. Returns (json, image dir).
    Processes starting at once take turns (a lock file beside the split): one generates, the
    others wait and reuse."""
    json_path, image_dir = split_files(spec, root)
    if not _current(json_path, spec):  # a current split is read without a lock: may be read-only
        json_path.parent.mkdir(parents=True, exist_ok=True)
        with open(json_path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _current(json_path, spec):  # not generated meanwhile by the lock's holder
                write_split(spec, root)
    return json_path, image_dir


def _current(json_path, spec):
    return json_path.exists() and _cached_generator_info(json_path) == generator_info(spec)


def _cached_generator_info(json_path):
    with open(json_path) as f:
        return json.load(f)["info"].get("generator")
