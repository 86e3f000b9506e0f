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
  and listed in full by ``tools/check_dataset.py``.
"""
import logging
import math
from pathlib import Path
from typing import NamedTuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import SizeMismatchError, check_image_size, read_image
from PIL import Image

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # in any case: cameras write .JPG


class DatasetError(ValueError):
    """The dataset cannot be loaded; the message names the path or file at fault."""


class Problems(list):
    """``(path, message)`` pairs, one per skipped image or object."""

    def add(self, path, message):
        self.append((str(path), message))

    def log(self, dataset_name):
        if self:
            shown = "\n".join(f"  {p}: {m}" for p, m in self[:10])
            more = f"\n  ... and {len(self) - 10} more" if len(self) > 10 else ""
            logger.warning(f"{dataset_name}: {len(self)} problems, each skipped:\n{shown}{more}")


def require_dir(path, what):
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DatasetError(f"{what}: expected a folder, but {path} is a file")
    if not path.is_dir():
        raise DatasetError(f"{what}: expected the folder {path}, which does not exist")
    return path


def image_files(folder):
    """The paths of the .jpg/.jpeg/.png files (any case) in ``folder``, sorted; none where it is
    no folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(str(p) for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


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


def image_size_problem(width, height, limit=1 << 15):
    """What is wrong with an image size read from an annotation, or None."""
    if not (0 < width <= limit and 0 < height <= limit):
        return f"image size {width}x{height} is not between 1 and {limit} pixels"
    return None


# What PIL raises on an image file it cannot read: OSError (UnidentifiedImageError is one) for a
# missing, empty, corrupt or truncated file; SyntaxError from a format's parser, e.g. of a broken
# PNG chunk; DecompressionBombError for a header claiming over twice Image.MAX_IMAGE_PIXELS.
UNREADABLE_IMAGE_ERRORS = (OSError, SyntaxError, Image.DecompressionBombError)


def unreadable_image(error):
    """The problem of an image whose reading raised ``error`` (one of UNREADABLE_IMAGE_ERRORS)."""
    return f"unreadable image ({type(error).__name__}: {error})"


# EXIF orientations that turn the image by 90 degrees: read_image (so training) applies them
EXIF_ORIENTATION, TURNED = 0x0112, (5, 6, 7, 8)


def image_size(path, problems):
    """``(width, height)`` of the image file ``path`` as detectron2's ``read_image`` returns it
    (EXIF orientation applied), read from its header; None, with the problem added to
    ``problems``, when it cannot be read."""
    try:
        with Image.open(path) as im:
            width, height = im.size
            if _exif_orientation(im) in TURNED:
                width, height = height, width
            return width, height
    except UNREADABLE_IMAGE_ERRORS as e:
        problems.add(path, unreadable_image(e))
        return None


def _exif_orientation(image):
    """The PIL image's EXIF orientation; None where it has none or its EXIF block cannot be
    parsed, as detectron2's ``read_image`` then leaves the image unturned."""
    try:
        return image.getexif().get(EXIF_ORIENTATION)
    except Exception:  # what a garbage EXIF block raises depends on the garbage
        return None


class BadImage(NamedTuple):
    """What a data loader yields in place of an image it cannot use (:func:`map_or_bad_image`).

    An exception raised in a data-loader worker reaches the main process as a traceback inside a
    message; this record lets the main process raise one clear :class:`DatasetError` instead
    (:func:`check_images`).
    """
    file_name: str
    problem: str


def map_or_bad_image(mapper, record):
    """``mapper(record)``, or a :class:`BadImage` when the record's image cannot be read (a
    missing, empty, corrupt or truncated file) or is not the size its annotation says."""
    try:
        return mapper(record)
    except UNREADABLE_IMAGE_ERRORS as e:
        return BadImage(record["file_name"], f"{unreadable_image(e)}; replace or remove it")
    except SizeMismatchError as e:  # its message names the file and both sizes
        return BadImage(record["file_name"], str(e))


def readable_images(records, image_format, problems):
    """``(record, image)`` for each of ``records`` whose image reads (detectron2's ``read_image``:
    H x W x C in ``image_format``) at the size the record gives; the others are added to
    ``problems``, named."""
    def read(record):
        image = read_image(record["file_name"], format=image_format)
        check_image_size(record, image)
        return image

    for record in records:
        image = map_or_bad_image(read, record)
        if isinstance(image, BadImage):
            problems.add(image.file_name, image.problem)
        else:
            yield record, image


def check_images(batch):
    """``batch``, a list of mapped records; a :class:`DatasetError` naming the first
    :class:`BadImage` in it."""
    for x in batch:
        if isinstance(x, BadImage):
            raise DatasetError(f"{x.file_name}: {x.problem} (python tools/check_dataset.py "
                               f"--read-images SPLIT lists every such image of a split)")
    return batch


def thing_classes(name):
    """The class list of the registered split ``name``, None for an unlabeled one. (A COCO-JSON
    split's are known once it is loaded: it is loaded here if they are not.)"""
    metadata = MetadataCatalog.get(name)
    if metadata.get("thing_classes") is None and metadata.get("json_file"):
        DatasetCatalog.get(name)
    return metadata.get("thing_classes")


def check_same_classes(cfg, names):
    """Every labeled split of ``names`` must name the classes of DATASETS.TRAIN[0], the ones the
    model learns, in the same order, and the model must have as many
    (MODEL.ROI_HEADS.NUM_CLASSES); a :class:`DatasetError` naming both otherwise."""
    reference_name = cfg.DATASETS.TRAIN[0]
    reference = thing_classes(reference_name)
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if reference is not None and len(reference) != num_classes:
        raise DatasetError(f"MODEL.ROI_HEADS.NUM_CLASSES = {num_classes}, but {reference_name!r} "
                           f"has {len(reference)} classes {list(reference)}: set it to "
                           f"{len(reference)}")
    for name in names:
        classes = thing_classes(name)
        if classes is not None and reference is not None and list(classes) != list(reference):
            raise DatasetError(f"dataset {name!r} has classes {list(classes)}, but "
                               f"{reference_name!r} has {list(reference)}: the splits a model "
                               f"trains and is evaluated on must share one class list")
