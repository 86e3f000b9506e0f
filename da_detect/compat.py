"""Make detectron2 v0.6 import and run on today's numpy, Pillow and torch, with or without ``_C``.

:func:`apply` must run before any ``detectron2`` submodule is imported; ``import da_detect`` runs it.
Each patch is applied only where the thing it restores is missing, so on a full source build of
detectron2 against matching library versions it changes nothing.

What it patches, and why:

* numpy >= 1.24 removed the aliases ``np.bool``, ``np.int``, ``np.float``, ``np.str`` and
  ``np.object``; v0.6 uses them (``data/build.py``, ``structures/masks.py``,
  ``evaluation/pascal_voc_evaluation.py``, ...). They are restored as the builtins they stood for.
* Pillow >= 10 removed ``Image.LINEAR`` (and ``CUBIC``, ``ANTIALIAS``); v0.6 uses ``LINEAR`` as a
  default argument in ``data/transforms/transform.py``, so that module fails at import. They are
  restored as ``BILINEAR``, ``BICUBIC`` and ``LANCZOS``, which they were aliases of.
* ``detectron2._C``, the C++/CUDA extension, is absent when detectron2 is installed from its Python
  sources (see ``tools/install_detectron2.py``), yet ``layers/deform_conv.py``,
  ``layers/rotated_boxes.py``, ``layers/roi_align_rotated.py`` and ``evaluation/fast_eval_api.py``
  import it at module level, which breaks ``import detectron2.engine``. A placeholder module is
  registered in its place: importing it works, ``collect_env`` reports "not built", and using any
  op from it (rotated boxes, deformable convolution, the fast COCO evaluator) raises
  :class:`MissingExtensionError` naming the op. :data:`HAS_C_EXTENSION` tells which case holds.

And one warning it silences: torch >= 2.10 deprecates ``torch.jit.script``, which v0.6
(``modeling/box_regression.py``) and fvcore (``nn/focal_loss.py``) call as they are imported, so
every tool began with torch's FutureWarning, which is not its user's to act on.
:func:`imports_without_torchscript_warning` silences it around da-detect's own imports of them;
a ``torch.jit.script`` of the user's still warns.
"""
import contextlib
import importlib.util
import sys
import types
import warnings

import numpy as np
from PIL import Image

_NUMPY_ALIASES = {"bool": bool, "int": int, "float": float, "str": str, "object": object}
_PIL_ALIASES = {"LINEAR": "BILINEAR", "CUBIC": "BICUBIC", "ANTIALIAS": "LANCZOS"}

HAS_C_EXTENSION = None  # set by apply()


class MissingExtensionError(AttributeError):
    """An op of detectron2's C++ extension was used, but detectron2 was installed without it.
    An AttributeError, as for any attribute a module lacks: ``hasattr(detectron2._C, op)`` is
    False, and ``from detectron2._C import op`` raises ImportError."""


class _MissingExtension(types.ModuleType):
    """Stands in for ``detectron2._C``; reports itself as not built, and refuses every op."""

    def get_compiler_version(self):
        return "not built (detectron2 installed from Python sources)"

    get_cuda_version = get_compiler_version

    def has_cuda(self):
        return False

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise MissingExtensionError(
            f"detectron2._C.{name} is not available: detectron2 was installed without its C++ "
            "extension (rotated boxes, deformable convolution and the fast COCO evaluator need it). "
            "Build detectron2 from source to use it."
        )


@contextlib.contextmanager
def imports_without_torchscript_warning():
    """Within it, torch's deprecation warning of ``torch.jit.script`` is not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.script` is deprecated", FutureWarning)
        yield


def apply():
    """Apply every patch that is needed; safe to call more than once. Returns HAS_C_EXTENSION."""
    global HAS_C_EXTENSION
    for name, value in _NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)
    for name, replacement in _PIL_ALIASES.items():
        if not hasattr(Image, name):
            setattr(Image, name, getattr(Image, replacement))
    if HAS_C_EXTENSION is None:
        HAS_C_EXTENSION = importlib.util.find_spec("detectron2._C") is not None
        if not HAS_C_EXTENSION:
            placeholder = _MissingExtension("detectron2._C")
            sys.modules["detectron2._C"] = placeholder
            setattr(sys.modules["detectron2"], "_C", placeholder)
    return HAS_C_EXTENSION
