"""What dataset loaders do with bad input.

* :class:`DatasetError` (raised): the dataset cannot be used at all: a missing root or split
  folder (the message names the path expected), or no images found; splits that a model
  trains and is evaluated on with different class lists. Also raised, naming the file, when
  training or evaluation meets an image it cannot read or whose size is not its annotation's
  (COCO, VOC and Cityscapes splits take image sizes from their annotations and open no image
  until then).
* :class:`Problems` (collected): a file that cannot be used drops its whole image, never part
  of it, so no image is trained on with a box missing or wrong: an unreadable image, an
  annotation without its image, an unparsable file, a malformed line (``file:line``), an unknown
  class name; also a class listed for a VOC folder that no object has. Each is counted, logged,
  and listed in full by ``tools/check_dataset.py``. Objects a VOC folder holds of classes the
  split does not list are left out, their images kept; their names are counted, logged and
  listed too, so that a misspelt name shows.
"""
import collections
import logging
import math
import numbers
from pathlib import Path

logger = logging.getLogger(__name__)


class DatasetError(ValueError):
    """The dataset cannot be loaded; the message names the path or file at fault."""


class Problems(list):
    """``(path, message)`` pairs, one per skipped image or object; ``objects_left_out`` counts
    the objects of other classes than the split's by class name (VOC folders)."""

    def __init__(self, pairs=()):
        super().__init__(pairs)
        self.objects_left_out = collections.Counter()

    def add(self, path, message):
        self.append((str(path), message))

    def log(self, dataset_name):
        if self:
            shown = "\n".join(f"  {p}: {m}" for p, m in self[:10])
            more = f"\n  ... and {len(self) - 10} more" if len(self) > 10 else ""
            logger.warning(f"{dataset_name}: {len(self)} problems, each skipped:\n{shown}{more}")
        if self.objects_left_out:
            logger.info(f"{dataset_name}: {self.left_out_line()}")

    def left_out_line(self):
        """One line naming the objects left out by class, most first (``chair 120, dog 4``)."""
        counts = ", ".join(f"{name} {n}" for name, n in self.objects_left_out.most_common())
        return f"objects left out, of classes the split does not list (images kept): {counts}"


def require_dir(path, what):
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DatasetError(f"{what}: expected a folder, but {path} is a file")
    if not path.is_dir():
        raise DatasetError(f"{what}: expected the folder {path}, which does not exist")
    return path


def box_problem(box, width, height):
    """What is wrong with an XYXY box in a ``width`` x ``height`` image, or None if nothing:
    every coordinate finite, positive width and height, inside the image."""
    x0, y0, x1, y1 = box
    if not all(map(math.isfinite, box)):
        return f"box {list(box)} is not finite"
    if not (x1 > x0 and y1 > y0):
        return f"empty box {list(box)}"
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        return f"box {list(box)} outside the {width}x{height} image"
    return None


def clip_overrun(box, width, height):
    """XYXY ``box`` with each coordinate at most a pixel outside the ``width`` x ``height``
    image moved onto its edge (as tools that round write them)."""
    limits = (width, height, width, height)
    return [min(max(v, 0.0), limit) if -1.0 <= v <= limit + 1.0 else v
            for v, limit in zip(box, limits)]


def image_size_problem(width, height, limit=1 << 15):
    """What is wrong with an image size read from an annotation, or None."""
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
               and float(v).is_integer() for v in (width, height)):
        return f"image size {width!r}x{height!r} is not whole pixels"
    if not (0 < width <= limit and 0 < height <= limit):
        return f"image size {width}x{height} is not between 1 and {limit} pixels"
    return None
