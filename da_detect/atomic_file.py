"""Files written whole or not at all.

A reader (another process, ``--resume``, a cached-split check) never sees a half-written
checkpoint, results file, cache entry or image, and a run killed while writing leaves the file
that was there before. Results that a new run must not replace are first kept under another
name (:func:`keep_earlier`).
"""
import contextlib
import os
import shutil
import threading
import time
from pathlib import Path


@contextlib.contextmanager
def atomic_open(path, mode="w", *, durable=True, keep=False):
    """Open a temporary file beside ``path`` for writing in ``mode``.

    Leaving the block normally renames it to ``path``, replacing what was there (with ``keep``,
    a file there is first kept under another name: :func:`keep_earlier`); with ``durable`` it is
    first flushed to disk (an fsync, a few milliseconds), so an OS crash cannot leave an empty
    file under the name either. An error in the block removes it and leaves ``path`` as it was.
    The temporary name is hidden and names its process and thread: concurrent writers of one
    path never share it, and the last rename wins.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with open(tmp, mode) as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        if keep:
            keep_earlier(path)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def keep_earlier(path, *, link=False):
    """Rename a file at ``path`` after the time it was written (``NAME.<YYYYmmdd-HHMMSS>.<n>``
    and its suffix, ``<n>`` nanoseconds of the renaming's time, so that two names never meet),
    so that writing a new one there loses nothing. With ``link``, the file keeps its name too
    (a second name, or a copy where the file system has no hard links) until a new one replaces
    it. Returns the new name, None where there was no file."""
    path = Path(path)
    if not path.is_file():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
    kept = path.with_name(f"{path.stem}.{stamp}.{time.time_ns() % 10**9:09d}{path.suffix}")
    if not link:
        return path.rename(kept)
    try:
        os.link(path, kept)
    except OSError:
        shutil.copy2(path, kept)
    return kept
