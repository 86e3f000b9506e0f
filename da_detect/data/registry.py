"""Registering detection datasets whose loaders return (dicts, Problems), behind the cache."""
from detectron2.data import DatasetCatalog, MetadataCatalog

from .cache import cached
from .problems import DatasetError

_LOADERS = {}  # dataset name -> (load function, kwargs, function listing its source files)
_LOGGED = set()  # (name, its problems) logged in this process: a split is read more than once


def register_detection_dataset(name, load, kwargs, source_files, **metadata):
    """Register ``name``: ``load(**kwargs)`` -> (dicts, Problems), cached while the files
    ``source_files()`` lists are unchanged (``source_files`` None: not cached, for a loader that
    sets the split's metadata as it loads). Replaces an earlier registration of ``name``."""
    forget_dataset(name)
    _LOADERS[name] = (load, kwargs, source_files)
    DatasetCatalog.register(name, lambda: _checked_dicts(name))
    MetadataCatalog.get(name).set(evaluator_type="coco", **metadata)


def with_note(load, note):
    """``load``, whose :class:`DatasetError` also says ``note()`` (in brackets), where a path it
    names is read from."""
    def load_with_note(*args, **kwargs):
        try:
            return load(*args, **kwargs)
        except DatasetError as e:
            raise DatasetError(f"{e} ({note()})") from None
    return load_with_note


def forget_dataset(name):
    """Undo any registration of ``name``, here or directly in detectron2's catalogs."""
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    _LOADERS.pop(name, None)


def load_with_problems(name):
    """(dataset dicts, Problems) of a dataset registered here."""
    load, kwargs, source_files = _LOADERS[name]
    if source_files is None:
        return load(**kwargs)
    return cached(name, kwargs, source_files(), lambda: load(**kwargs))


def registered_here(name):
    return name in _LOADERS


def _checked_dicts(name):
    dicts, problems = load_with_problems(name)
    logged = (name, tuple(problems), tuple(problems.objects_left_out.items()))
    if logged not in _LOGGED:  # once: an evaluation reads its split again to convert it to COCO
        _LOGGED.add(logged)
        problems.log(name)
    if not dicts:
        raise DatasetError(f"dataset {name!r} has no usable images ({len(problems)} problems)")
    return dicts
