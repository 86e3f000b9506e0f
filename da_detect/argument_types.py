"""argparse types of the command-line tools."""
import argparse
import math
from pathlib import Path


def at_least(minimum):
    """An integer no smaller than ``minimum``."""
    def integer(text):
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}: must be at least {minimum}")
        return value
    return integer


def above_zero(text):
    """A finite number above 0 (a learning rate)."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text}: must be a number above 0")
    return value


def fraction(text):
    """A number from 0 to 1 (a score threshold)."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text}: must be a number from 0 to 1")
    return value


def _file_in_the_way(path):
    """The file among ``path``'s parents that stops it being made, or None."""
    in_the_way = next((p for p in Path(path).absolute().parents if p.exists()), None)
    return in_the_way if in_the_way is not None and not in_the_way.is_dir() else None


def output_folder(text):
    """A folder to write into: one that exists, or that can be made (no file in the way)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    if in_the_way := _file_in_the_way(path):
        raise argparse.ArgumentTypeError(f"{text} cannot be made: {in_the_way} is a file")
    return path


def output_file(text):
    """A file to write: not a folder, and in a folder that exists or can be made."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    if in_the_way := _file_in_the_way(path):
        raise argparse.ArgumentTypeError(f"{text} cannot be written: {in_the_way} is a file")
    return path


def new_output_folder(text):
    """The output folder of a tool that writes several files: one that does not exist yet (the
    tool makes it) or is empty, so that a run neither overwrites an earlier run's files nor
    leaves its own mixed with them."""
    path = output_folder(text)
    if path.is_dir() and any(path.iterdir()):
        raise argparse.ArgumentTypeError(
            f"{text} is not empty: an earlier run's files would be overwritten or mixed with "
            f"this run's; give a new or empty folder")
    return path
