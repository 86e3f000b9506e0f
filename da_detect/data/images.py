"""Image files, and what training, evaluation and the tools do with one that cannot be read."""
from pathlib import Path
from typing import NamedTuple

from detectron2.data.detection_utils import SizeMismatchError, check_image_size, read_image
from PIL import Image

from ..every_process import raised_together
from .problems import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # in any case: cameras write .JPG


def is_image_file(path):
    """Whether ``path`` (a Path) is named as a .jpg/.jpeg/.png image (any case) and is no folder;
    a link to nothing is one (its reader names it)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.is_dir()


def image_files(folder):
    """The paths of the image files (:func:`is_image_file`) in ``folder``, sorted; none where it
    is no folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(str(p) for p in folder.iterdir() if is_image_file(p))


# What PIL raises on an image file it cannot read: OSError (UnidentifiedImageError is one) for a
# missing, empty, corrupt or truncated file; SyntaxError from a format's parser, e.g. of a broken
# PNG chunk; DecompressionBombError for a header claiming over twice Image.MAX_IMAGE_PIXELS.
UNREADABLE_IMAGE_ERRORS = (OSError, SyntaxError, Image.DecompressionBombError)


def unreadable_image(error):
    """The problem of an image whose reading raised ``error`` (one of UNREADABLE_IMAGE_ERRORS)."""
    return f"unreadable image ({type(error).__name__}: {error})"


# PIL's modes of one channel of more than 8 bits (16-bit grayscale PNGs open as I;16)
MORE_THAN_8_BITS = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")
# EXIF orientations that turn the image by 90 degrees: read_image (so training) applies them
EXIF_ORIENTATION, TURNED = 0x0112, (5, 6, 7, 8)


def image_size(path, problems):
    """``(width, height)`` of the image file ``path`` as detectron2's ``read_image`` returns it
    (EXIF orientation applied), read from its header; None, with the problem added to
    ``problems``, when it cannot be read, or not without losing most of it (16-bit)."""
    try:
        with Image.open(path) as im:
            if im.mode in MORE_THAN_8_BITS:
                problems.add(path, _more_than_8_bits(im.mode))
                return None
            width, height = im.size
            if _exif_orientation(im) in TURNED:
                width, height = height, width
            return width, height
    except UNREADABLE_IMAGE_ERRORS as e:
        problems.add(path, unreadable_image(e))
        return None


def _more_than_8_bits(mode):
    return (f"a {mode} image (more than 8 bits a pixel): detectron2's read_image clips it to 8 "
            f"bits, white wherever it is above 255; convert it to 8 bits")


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
    missing, empty, corrupt or truncated file), would be read clipped (more than 8 bits a pixel)
    or is not the size its annotation says."""
    try:
        with Image.open(record["file_name"]) as im:  # its header only: a few microseconds
            if im.mode in MORE_THAN_8_BITS:
                return BadImage(record["file_name"], _more_than_8_bits(im.mode))
        return mapper(record)
    except UNREADABLE_IMAGE_ERRORS as e:
        return BadImage(record["file_name"], f"{unreadable_image(e)}; replace or remove it")
    except SizeMismatchError as e:  # its message names the file and both sizes
        return BadImage(record["file_name"], str(e) + _turned_by_exif(record["file_name"]))


def _turned_by_exif(path):
    """Where the image at ``path`` has an EXIF orientation that turns it by 90 degrees, a note
    saying so: an annotation tool that ignores EXIF gives its size unturned."""
    try:
        with Image.open(path) as im:
            orientation = _exif_orientation(im)
    except UNREADABLE_IMAGE_ERRORS:  # read a moment ago; gone since
        return ""
    if orientation not in TURNED:
        return ""
    return (f" Its EXIF orientation ({orientation}) turns it by 90 degrees, as read_image "
            f"applies it (and image viewers do): an annotation made without EXIF has the width "
            f"and height, and the boxes, of the unturned image.")


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


def checked_in_every_process(batch):
    """``batch``, this process's share of a step or of an evaluation round, through
    :func:`check_images` in every process at once: an image that cannot be used in any share
    raises the same :class:`DatasetError` in each, naming it and whose share it was, rather than
    leaving the others waiting in their next collective for a process that has stopped."""
    with raised_together(DatasetError):
        check_images(batch)
    return batch
