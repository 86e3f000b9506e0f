"""A disk cache of parsed dataset dicts, invalidated when any source file changes, or the code
that parses them."""
import functools
import glob
import hashlib
import json
import logging
import os
import pickle
from pathlib import Path

from ..atomic_file import atomic_open
from .problems import DatasetError

logger = logging.getLogger(__name__)


def cache_dir():
    default = Path.home() / ".cache" / "da_detect"
    return Path(os.environ.get("DA_DETECT_CACHE", default)).expanduser()


@functools.cache
def loader_code_digest():
    """A digest of this package's code (da_detect/data/*.py): the loaders and their helpers."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cached(name, params, source_files, build):
    """``build()``'s result, from the cache when ``params``, every file's size, modification and
    change times, and the loaders' code are as when it was stored. ``build`` returns (dataset
    dicts, problems).
    Storing it removes the entries this version of the loaders stored for ``name`` before
    (stale, or of other params)."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    digest.update(loader_code_digest().encode())
    for path in source_files:
        try:
            stat = os.stat(path)
        except OSError:  # a link to nothing: its loader names it
            digest.update(f"{path}\0unreadable\n".encode())
        else:
            # the change time too: a copy that keeps a file's modification time (cp -p, rsync
            # -a, touch -r) cannot set it
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}\n"
                          .encode())
    folder = cache_dir()
    if folder.exists() and not folder.is_dir():
        raise DatasetError(f"the dataset cache {folder} (DA_DETECT_CACHE) is a file, not a folder")
    # the loaders' version in the name: another version's checkout sharing the cache keeps its own
    path = folder / f"{name}-{loader_code_digest()[:8]}-{digest.hexdigest()[:16]}.pkl"
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except FileNotFoundError:  # not stored, or removed by a process storing other params
        pass
    except Exception as e:  # cut short or damaged: parsed again, and stored anew
        logger.warning(f"the cached dataset dicts {path} cannot be read ({type(e).__name__}: "
                       f"{e}); reading {name} from its files again")
    result = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        pickle.dump(result, f)
    logger.info(f"cached {name} dataset dicts in {path}")
    for stale in path.parent.glob(f"{glob.escape(name)}-{loader_code_digest()[:8]}-*.pkl"):
        if stale != path and len(stale.stem) == len(path.stem):  # not another name's
            stale.unlink(missing_ok=True)
    return result
