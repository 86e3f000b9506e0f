"""Datasets (registered on import) and the source+target data loading of adaptation training."""
from . import builtin  # noqa: F401  (registers the built-in datasets)
