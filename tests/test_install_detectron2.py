"""tools/install_detectron2.py: the pinned-hash check and what gets staged for installation."""
import hashlib
import importlib.util
import io
import subprocess
import sys
import tarfile
from pathlib import Path

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
    archive = tmp_path / "pb1-detectron2-0.6.tar.gz"
    make_sdist(archive, FILES)
    result = subprocess.run([sys.executable, str(REPO / "tools" / "install_detectron2.py"),
                             "--force", "--archive", str(archive)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "expected 5d2e9e51" in result.stderr and "Refusing to unpack" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_sdist_is_found_on_a_json_or_an_html_index():
    href = "../../files/ab/pb1-detectron2-0.6.tar.gz#sha256=5d2e"
    json_page = '{"files": [{"filename": "pb1-detectron2-0.6.tar.gz", "url": "%s"}]}' % href
    html_page = ('<!DOCTYPE html><html><body><a href="../../files/x/pb1-detectron2-0.5.tar.gz">'
                 f'pb1-detectron2-0.5.tar.gz</a><br/>\n<a href="{href}" data-requires-python='
                 '"&gt;=3.7">pb1-detectron2-0.6.tar.gz</a></body></html>')
    for page, content_type in ((json_page, "application/vnd.pypi.simple.v1+json"),
                               (html_page, "text/html; charset=utf-8")):
        assert installer.file_urls(page, content_type)["pb1-detectron2-0.6.tar.gz"] == href


def test_an_html_only_index_serves_the_archive_that_is_then_checked(tmp_path, monkeypatch):
    import http.server
    import threading

    archive = tmp_path / "pb1-detectron2-0.6.tar.gz"
    make_sdist(archive, FILES)
    pages = {"/simple/pb1-detectron2/": b'<a href="../../f/pb1-detectron2-0.6.tar.gz">'
                                         b'pb1-detectron2-0.6.tar.gz</a>',
             "/f/pb1-detectron2-0.6.tar.gz": archive.read_bytes()}

    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path in pages else 404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(pages.get(self.path, b""))

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.server_port}/simple")
        (tmp_path / "download").mkdir()
        downloaded = installer.download_sdist(sys.executable, tmp_path / "download")
        assert downloaded.read_bytes() == archive.read_bytes()
        monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.server_port}/nothing")
        with pytest.raises(installer.InstallError, match=r"cannot download pb1-detectron2-0.6.tar."
                                                         r"gz from http://127.0.0.1:\d+/nothing/"):
            installer.download_sdist(sys.executable, tmp_path / "download")
    finally:
        server.shutdown()


def test_a_detectron2_folder_in_the_working_directory_is_not_an_installed_detectron2(tmp_path,
                                                                                     monkeypatch):
    python = tmp_path / "venv" / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")],
                   check=True)
    (tmp_path / "detectron2").mkdir()  # a clone, to build from source
    monkeypatch.chdir(tmp_path)
    assert not installer.detectron2_importable(str(python))
    assert installer.detectron2_importable(sys.executable)  # this one's is installed
    python = Path(sys.executable)
    monkeypatch.chdir(python.parent.parent)
    assert installer.detectron2_importable(f"{python.parent.name}/{python.name}")  # relative


def test_a_missing_archive_is_one_error_line(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "tools" / "install_detectron2.py"),
                             "--force", "--archive", str(tmp_path / "nowhere.tar.gz")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr == (
        f"error: --archive {tmp_path / 'nowhere.tar.gz'}: no such file\n")
