"""tools/install_detectron2.py: the pinned-hash check and what gets staged for installation."""
import hashlib
import importlib.util
import io
import tarfile

import pytest

from conftest import REPO

spec = importlib.util.spec_from_file_location("install_detectron2",
                                              REPO / "tools" / "install_detectron2.py")
installer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(installer)


def make_sdist(path, files):
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


FILES = {
    "pb1-detectron2-0.6/setup.py": "raise SystemExit('the sdist build must not run')",
    "pb1-detectron2-0.6/detectron2/__init__.py": "__version__ = '0.6'\n",
    "pb1-detectron2-0.6/detectron2/layers/nms.py": "x = 1\n",
    "pb1-detectron2-0.6/detectron2/model_zoo/configs/Base-RCNN-C4.yaml": "VERSION: 2\n",
}


def test_tampered_archive_is_refused_before_unpacking(tmp_path):
    archive = tmp_path / "pb1-detectron2-0.6.tar.gz"
    make_sdist(archive, FILES)
    staging = tmp_path / "staging"
    with pytest.raises(installer.ArchiveHashMismatch, match="pb1-detectron2-0.6.tar.gz: sha256 is"):
        installer.stage_package(archive, installer.SDIST_SHA256, staging)
    assert not staging.exists()


def test_matching_archive_stages_only_the_package(tmp_path):
    archive = tmp_path / "sdist.tar.gz"
    digest = make_sdist(archive, FILES)
    staging = installer.stage_package(archive, digest, tmp_path / "staging")
    staged = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
    assert staged == ["detectron2/__init__.py", "detectron2/layers/nms.py",
                      "detectron2/model_zoo/configs/Base-RCNN-C4.yaml", "pyproject.toml"]
    assert 'name = "detectron2"' in (staging / "pyproject.toml").read_text()


def test_cli_exits_with_a_clear_message_on_mismatch(tmp_path):
    import subprocess
    import sys

    archive = tmp_path / "pb1-detectron2-0.6.tar.gz"
    make_sdist(archive, FILES)
    result = subprocess.run([sys.executable, str(REPO / "tools" / "install_detectron2.py"),
                             "--force", "--archive", str(archive)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "expected 5d2e9e51" in result.stderr and "Refusing to unpack" in result.stderr
    assert "Traceback" not in result.stderr
