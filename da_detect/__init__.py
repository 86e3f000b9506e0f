"""da-detect: Domain Adaptive Faster R-CNN (Chen et al., CVPR 2018) as a detectron2 extension.

Importing the package applies the detectron2 compatibility patches (:mod:`da_detect.compat`) before
any detectron2 submodule is loaded, then registers da-detect's models and built-in datasets.
"""
from . import compat

compat.apply()

with compat.imports_without_torchscript_warning():
    from .config import add_da_config  # noqa: E402,F401  (the public entry point)
    from . import data, modeling  # noqa: E402,F401  (registration side effects)

__version__ = "0.1.0"
