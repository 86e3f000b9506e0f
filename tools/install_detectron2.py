#!/usr/bin/env python
"""Install detectron2 v0.6 as a pure-Python package, unless a working detectron2 is already there.

detectron2 is not published on the package registry. The registry's sdist ``pb1-detectron2==0.6``
holds detectron2 v0.6's Python sources but not its C++ sources, so its own build fails. This script:

1. does nothing if ``import detectron2`` already works (e.g. a user's build from source);
2. downloads that sdist from the index pip is configured with into a temporary folder;
3. checks the archive's sha256 against :data:`SDIST_SHA256` itself, before anything is unpacked,
   and stops with :class:`ArchiveHashMismatch` on a mismatch;
4. extracts only the ``detectron2/`` package and installs it with pip as the distribution
   ``detectron2`` (version 0.6), so ``pip uninstall detectron2`` removes it cleanly.

The missing C++ extension (``detectron2._C``) is handled at import time by ``da_detect.compat``.
Only the standard library is used: this runs before anything else is installed.
"""
import argparse
import hashlib
import html.parser
import http.client
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

SDIST_NAME = "pb1-detectron2"
SDIST_VERSION = "0.6"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "detectron2"
version = "{version}"
description = "detectron2 {version} (Python sources only, from the {sdist} sdist)"
requires-python = ">=3.7"

[tool.setuptools.packages.find]
include = ["detectron2*"]

[tool.setuptools.package-data]
"*" = ["*.yaml", "*.py", "*.json"]
"""


class InstallError(RuntimeError):
    """What stops the installation; the message says what, and names the file or URL."""


class ArchiveHashMismatch(InstallError):
    """The downloaded archive is not the one whose sha256 is pinned."""


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path, expected):
    """Raise :class:`ArchiveHashMismatch` naming ``path`` unless its sha256 equals ``expected``."""
    actual = sha256_of(path)
    if actual != expected:
        raise ArchiveHashMismatch(
            f"{path}: sha256 is {actual}, expected {expected}. "
            "Refusing to unpack an archive that is not the pinned detectron2 v0.6 sdist."
        )


def stage_package(archive, expected_sha256, staging_dir):
    """Verify ``archive``, then write an installable project holding its ``detectron2/`` package.

    Returns the staging folder. Nothing is extracted if the hash does not match.
    """
    verify_sha256(archive, expected_sha256)
    staging_dir = Path(staging_dir)
    with tarfile.open(archive, "r:gz") as tar:
        members = [m for m in tar.getmembers() if _package_path(m.name) is not None]
        if not members:
            raise InstallError(f"{archive}: no detectron2/ package inside the archive")
        # the archive is the pinned one (checked above); Python releases before the extraction
        # filters (3.9.17, 3.10.12, 3.11.4) extract it as it is
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        for member in members:
            member.name = _package_path(member.name)
            tar.extract(member, staging_dir, **safe)
    (staging_dir / "pyproject.toml").write_text(
        PYPROJECT.format(version=SDIST_VERSION, sdist=SDIST_NAME)
    )
    return staging_dir


def _package_path(name):
    """'pb1-detectron2-0.6/detectron2/x.py' -> 'detectron2/x.py'; None for anything else."""
    parts = Path(name).parts
    if len(parts) >= 2 and parts[1] == "detectron2":
        return str(Path(*parts[1:]))
    return None


def detectron2_importable(python):
    """Whether ``python`` imports an installed detectron2 package: not merely a folder named
    detectron2 in the current directory (a clone to build from source), which imports as an empty
    namespace package."""
    probe = "import sys, detectron2; sys.exit(getattr(detectron2, '__file__', None) is None)"
    if os.sep in python:  # a path: from the other folder, a relative one would name nothing
        python = os.path.abspath(python)
    with tempfile.TemporaryDirectory() as elsewhere:
        return subprocess.run([python, "-c", probe], capture_output=True,
                              cwd=elsewhere).returncode == 0


def index_url(python):
    """The simple-API index pip is configured with (PIP_INDEX_URL, pip config, else pip's default)."""
    code = (
        "import os, subprocess, sys\n"
        "url = os.environ.get('PIP_INDEX_URL') or subprocess.run([sys.executable, '-m', 'pip', "
        "'config', 'get', 'global.index-url'], capture_output=True, text=True).stdout.strip()\n"
        "if not url:\n"
        "    from pip._internal.models.index import PyPI\n"
        "    url = PyPI.simple_url\n"
        "print(url)"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip().rstrip("/")


class _Links(html.parser.HTMLParser):
    """The (text, href) of every link of a PEP 503 HTML project page."""

    def __init__(self):
        super().__init__()
        self.links, self._href = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data):
        if self._href is not None:
            self.links.append((data.strip(), self._href))
            self._href = None


def file_urls(page, content_type):
    """filename -> URL of a simple-API project page: PEP 691 JSON, or PEP 503 HTML."""
    if "json" in content_type:
        return {f["filename"]: f["url"] for f in json.loads(page)["files"]}
    links = _Links()
    links.feed(page)
    return dict(links.links)


def download_sdist(python, dest):
    """Download the pinned sdist from the configured index (its simple API, JSON or HTML).

    pip itself cannot download it: preparing its metadata fails on a direct-URL extra.
    """
    project_url = f"{index_url(python)}/{SDIST_NAME}/"
    request = urllib.request.Request(project_url, headers={
        "Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"})
    filename = f"{SDIST_NAME}-{SDIST_VERSION}.tar.gz"
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            urls = file_urls(response.read().decode(), response.headers.get("Content-Type", ""))
        if filename not in urls:
            raise InstallError(f"{project_url} lists no {filename}")
        archive = Path(dest) / filename
        url = urllib.parse.urljoin(project_url, urls[filename])
        with urllib.request.urlopen(url, timeout=600) as response:
            archive.write_bytes(response.read())
    # URLError is an OSError, a cut-off download an HTTPException, bad JSON a ValueError
    except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
        raise InstallError(f"cannot download {filename} from {project_url}: {e!r} (or give "
                           f"a local copy with --archive)") from e
    return archive


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter to install into")
    parser.add_argument("--archive", help="use this local sdist instead of downloading it")
    parser.add_argument("--force", action="store_true", help="install even if detectron2 imports")
    args = parser.parse_args(argv)

    if not args.force and detectron2_importable(args.python):
        print("detectron2 already importable: keeping it.")
        return 0
    if args.archive and not Path(args.archive).is_file():
        raise InstallError(f"--archive {args.archive}: no such file")
    with tempfile.TemporaryDirectory(prefix="detectron2-") as tmp:
        archive = args.archive or download_sdist(args.python, tmp)
        staging = stage_package(archive, SDIST_SHA256, Path(tmp) / "staging")
        subprocess.run(
            [args.python, "-m", "pip", "install", "--quiet", "--no-deps", str(staging)], check=True
        )
    print(f"installed detectron2 {SDIST_VERSION} (pure Python) from {SDIST_NAME}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except InstallError as e:
        sys.exit(f"error: {e}")
