"""What we publish: the license, the metadata, the extras, and an sdist whose tests run."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_project_metadata_is_complete() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"  # an SPDX expression, not the old table
    assert project["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert {"Homepage", "Source", "Issues"} <= set(project["urls"])
    assert "Typing :: Typed" in project["classifiers"]
    extras = project["optional-dependencies"]
    # No "dev": the developers' tools are a dependency group.
    assert set(extras) == {"sqlite", "postgres", "cli", "otel", "prometheus", "console", "notebook"}
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]
    assert "pytest>=8" in groups["dev"]


@pytest.mark.slow
def test_the_sdist_carries_what_its_tests_need_and_the_wheel_its_license(
    tmp_path: Path,
) -> None:
    pytest.importorskip("build")
    result = subprocess.run(
        [sys.executable, "-P", "-m", "build", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (sdist,) = tmp_path.glob("pyjobqueue-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in (
        "LICENSE",
        "tests/conftest.py",
        "tests/children.py",
        "tests/backends.py",
        "tests/jobs.py",
        "tests/cli_apps/harness.py",
        "tests/processes/sqlite_server.py",
        "docs/recipes.md",
    ):
        assert needed in names, needed
    (wheel,) = tmp_path.glob("pyjobqueue-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(name for name in archive.namelist() if name.endswith("METADATA"))
        text = archive.read(metadata).decode()
        assert any(name.endswith("licenses/LICENSE") for name in archive.namelist())
        assert not any(name.startswith("tests/") for name in archive.namelist())
        # `pyjobqueue console` serves its page from the installed package.
        for page_file in ("index.html", "server.js", "view.js", "style.css", "favicon.svg"):
            assert f"pyjobqueue/console/static/{page_file}" in archive.namelist(), page_file
    assert "License-Expression: Apache-2.0" in text
    assert "Provides-Extra: dev" not in text
