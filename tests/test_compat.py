"""da_detect.compat: detectron2 v0.6 imports with and without its C++ extension."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from da_detect import compat


def run_python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_engine_imports_without_c_extension():
    result = run_python(
        "import da_detect, detectron2.engine, detectron2.layers, detectron2.evaluation\n"
        "from da_detect import compat\n"
        "assert compat.HAS_C_EXTENSION is False\n"
        "import detectron2._C as C\n"
        "try:\n"
        "    C.nms_rotated\n"
        "except compat.MissingExtensionError as e:\n"
        "    print('refused:', e)\n"
        "from detectron2.utils.collect_env import collect_env_info\n"
        "assert 'not built' in collect_env_info()\n"
    )
    assert result.returncode == 0, result.stderr
    assert "refused: detectron2._C.nms_rotated is not available" in result.stdout


def test_existing_c_extension_is_left_alone():
    # A stand-in for a real build: a detectron2._C module present before da_detect is imported.
    result = run_python(
        "import importlib.machinery, sys, types, detectron2\n"
        "fake = types.ModuleType('detectron2._C')\n"
        "fake.__spec__ = importlib.machinery.ModuleSpec('detectron2._C', None)\n"
        "sys.modules['detectron2._C'] = fake\n"
        "import da_detect, detectron2.engine\n"
        "from da_detect import compat\n"
        "assert compat.HAS_C_EXTENSION is True\n"
        "assert sys.modules['detectron2._C'] is fake\n"
        "print('kept')\n"
    )
    assert result.returncode == 0, result.stderr
    assert "kept" in result.stdout


def test_removed_aliases_are_restored():
    assert np.array([1.5], dtype=np.float).dtype == np.float64
    assert np.array([1], dtype=np.int).dtype.kind == "i"
    assert Image.LINEAR == Image.BILINEAR
    # detectron2's resize uses Image.LINEAR as its default: it must run.
    from detectron2.data.transforms import ResizeTransform

    out = ResizeTransform(4, 6, 8, 12).apply_image(np.zeros((4, 6, 3), np.uint8))
    assert out.shape == (8, 12, 3)


def test_apply_is_idempotent():
    before = sys.modules["detectron2._C"]
    assert compat.apply() is compat.HAS_C_EXTENSION
    assert sys.modules["detectron2._C"] is before


def test_fast_coco_evaluator_is_not_used_without_extension(tmp_path):
    from da_detect.evaluation import COCOAP50Evaluator

    evaluator = COCOAP50Evaluator("synthetic_clean_val", output_dir=str(tmp_path))
    assert evaluator._use_fast_impl is compat.HAS_C_EXTENSION
    if not compat.HAS_C_EXTENSION:
        with pytest.raises(compat.MissingExtensionError):
            sys.modules["detectron2._C"].COCOevalAccumulate
        assert not hasattr(sys.modules["detectron2._C"], "nms_rotated")


def test_torchscript_deprecation_is_silenced_for_da_detects_imports_only(tmp_path):
    # detectron2 v0.6 and fvcore script functions as they are imported; a user's own
    # torch.jit.script still warns (a file: TorchScript reads the function's source)
    script = tmp_path / "user.py"
    script.write_text("import da_detect, da_detect.engine.trainer, detectron2.modeling\n"
                      "import torch\n"
                      "def user_function(x):\n"
                      "    return x + 1\n"
                      "torch.jit.script(user_function)\n")
    result = subprocess.run([sys.executable, "-W", "always::FutureWarning", script],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "jit.script` is deprecated" in line]
    assert len(warnings) == 1  # the user's; without the silencing, detectron2's and fvcore's too
