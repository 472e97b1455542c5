"""The JupyterLite build's own rules: what makes the site stale, and which Pyodide it needs."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from buildtasks import jupyterlite
from buildtasks.paths import PYODIDE_NPM


def make_wheel(path: Path, content: bytes, date_time: tuple[int, int, int, int, int, int]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("pkg/__init__.py", date_time), content)
    return path


def test_a_rebuilt_wheel_with_the_same_files_leaves_the_site_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    name = "pkg-1.0-py3-none-any.whl"
    first = make_wheel(tmp_path / "a" / name, b"x = 1\n", (2026, 1, 1, 0, 0, 0))
    again = make_wheel(tmp_path / "b" / name, b"x = 1\n", (2026, 6, 1, 12, 0, 0))
    assert first.read_bytes() != again.read_bytes()
    assert jupyterlite.wheel_digest(first) == jupyterlite.wheel_digest(again)
    changed = make_wheel(tmp_path / "b" / name, b"x = 2\n", (2026, 1, 1, 0, 0, 0))
    assert jupyterlite.wheel_digest(changed) != jupyterlite.wheel_digest(first)


def test_the_installed_kernel_is_made_for_the_pyodide_line_we_assemble() -> None:
    """jupyterlite-pyodide-kernel names the Pyodide it was made for; npm's must match it."""
    kernel = jupyterlite.kernel_pyodide_version()
    assert (PYODIDE_NPM / "package.json").is_file(), "npm ci first (python build.py test does)"
    npm = json.loads((PYODIDE_NPM / "package.json").read_text())["version"]
    assert kernel.split(".")[:2] == npm.split(".")[:2] == ["314", "0"]
    jupyterlite.check_kernel_pyodide()  # the build's own check agrees
