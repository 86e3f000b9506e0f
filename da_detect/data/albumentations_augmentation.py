"""Photometric and weather augmentation from albumentations, declared in the config, applied as a
detectron2 augmentation inside the dataset mapper.

``INPUT.ALBUMENTATIONS.SOURCE`` and ``.TARGET`` list transforms for source and target training
images, each as albumentations' class name with keyword arguments::

    INPUT:
      ALBUMENTATIONS:
        SOURCE: ["RandomBrightnessContrast(brightness_limit=0.3, p=0.8)", "RandomFog(p=0.3)"]

Only pixel-level transforms (albumentations' ``ImageOnlyTransform``: brightness, contrast, blur,
noise, fog, rain, ...) are accepted: they leave every pixel where it was, so boxes stay exact.
Geometry belongs to detectron2's own augmentations, and so does the pixels' dtype and range: the
model normalizes uint8 pixels itself, so ``Normalize``, ``ToFloat`` and ``FromFloat`` are refused.
A keyword argument the transform does not take is an error (albumentations only warns of it, and
uses the default).

albumentations asks PyPI for a newer version when imported; nothing here reaches the network at
run time, so that check is off unless ``NO_ALBUMENTATIONS_UPDATE`` is set otherwise.
"""
import ast
import inspect
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402  (after the line above)
import numpy as np
from detectron2.data import transforms as T

RANGE_CHANGING = (A.Normalize, A.ToFloat, A.FromFloat)  # pixel-level, but not uint8 in and out


def parse_transform(expression, key):
    """``"Name(arg=value, ...)"`` -> the albumentations transform; ValueError naming ``key``."""
    try:
        call = ast.parse(expression, mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"{key}: {expression!r} is not Name(arg=value, ...): {e.msg}") from e
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and not call.args):
        raise ValueError(f"{key}: {expression!r} is not Name(arg=value, ...)")
    cls = getattr(A, call.func.id, None)
    if not (isinstance(cls, type) and issubclass(cls, A.ImageOnlyTransform)):
        raise ValueError(f"{key}: {call.func.id!r} is not a pixel-level albumentations transform "
                         f"(ImageOnlyTransform)")
    if issubclass(cls, RANGE_CHANGING):
        raise ValueError(f"{key}: {call.func.id!r} changes the pixels' dtype or range; the model "
                         f"normalizes them itself (MODEL.PIXEL_MEAN, MODEL.PIXEL_STD)")
    accepted = inspect.signature(cls).parameters
    for k in call.keywords:
        if k.arg not in accepted:
            raise ValueError(f"{key}: {call.func.id} has no argument {k.arg!r} (it takes "
                             f"{', '.join(accepted)})")
    try:
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{key}: {expression!r}: {_reasons(str(e))}") from e


def _reasons(message):
    """'argument: why; ...' from the text of albumentations' argument check (pydantic's: 'N
    validation errors for ...', then for each error the argument, unless it is about several,
    and, indented, why); else the message's first line."""
    lines = message.splitlines()
    if "validation error" not in lines[0]:
        return lines[0]
    reasons, argument = [], None
    for line in lines[1:]:
        if not line.startswith(" "):
            argument = line
        elif not line.startswith("    "):  # deeper lines point to pydantic's documentation
            why = line.strip().split(" [type=")[0]
            reasons.append(f"{argument}: {why}" if argument else why)
            argument = None
    return "; ".join(reasons) or lines[0]


class AlbumentationsTransform(T.Transform):
    """One draw of a pixel-level albumentations pipeline: changes the image's pixels, moves none,
    so coordinates (boxes, polygons) and segmentation masks pass through unchanged."""

    def __init__(self, compose, seed, bgr):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img):
        self.compose.set_random_seed(self.seed)
        if self.bgr:  # albumentations' color transforms expect RGB
            return self.compose(image=img[..., ::-1])["image"][..., ::-1]
        return self.compose(image=img)["image"]

    def apply_coords(self, coords):
        return coords

    def apply_segmentation(self, segmentation):
        return segmentation

    def inverse(self):
        return T.NoOpTransform()


class AlbumentationsAugmentation(T.Augmentation):
    """A detectron2 augmentation running albumentations' pixel-level transforms; its randomness
    comes from numpy's generator, so the data loader's per-sample seeds fix it."""

    def __init__(self, transforms, image_format="BGR"):
        super().__init__()
        self.compose = A.Compose(transforms)
        self.bgr = image_format == "BGR"

    def get_transform(self, image):
        return AlbumentationsTransform(self.compose, int(np.random.randint(2**31)), self.bgr)


def build_albumentations(cfg, role):
    """The AlbumentationsAugmentation of ``role`` ("SOURCE" or "TARGET"), or None if it has none."""
    key = f"INPUT.ALBUMENTATIONS.{role}"
    expressions = cfg.INPUT.ALBUMENTATIONS[role]
    if not expressions:
        return None
    return AlbumentationsAugmentation([parse_transform(e, key) for e in expressions],
                                      cfg.INPUT.FORMAT)
