"""What the checks run on: .venv with the dev install, Debian packages, node_modules; and
.venv-bench, where the benchmarks run pyjobqueue beside its peers.

Each ``ensure_*`` installs only what is missing or stale, so a second run is quick.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from . import chromium
from .commands import BuildError, header, root_prefix, run
from .paths import BENCH_VENV, NODE24, NODE_MODULES, ROOT, VENV, VENV_BIN, venv_tool

INSTALL_STAMP = VENV / ".pyjobqueue-dev-install.sha256"
NPM_STAMP = NODE_MODULES / ".pyjobqueue-npm.sha256"
BENCH_STAMP = BENCH_VENV / ".pyjobqueue-bench-install.sha256"
# The peers of bench/, pinned: their figures are compared run with run.
BENCH_PEERS = ("pgqueuer[asyncpg]==1.6.0", "huey==3.5.4", "procrastinate==3.10.0")


def inputs_digest(*names: str) -> str:
    """Hash of the named repository files that exist: what they decide is stale when it changes."""
    digest = hashlib.sha256()
    for name in names:
        path = ROOT / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- Debian packages


@functools.cache
def apt_update() -> None:
    """Run ``apt-get update`` at most once per build.py run."""
    run([*root_prefix(), "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "update"])


def apt_install(packages: Sequence[str]) -> None:
    """Install Debian packages non-interactively, without recommended extras."""
    if not shutil.which("apt-get"):
        raise BuildError(f"apt-get not found: install {' '.join(packages)} by hand")
    apt_update()
    run(
        [
            *root_prefix(),
            *("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install"),
            *("-y", "--no-install-recommends", *packages),
        ]
    )


def ensure_chromium() -> None:
    """Install Debian's chromium when /usr/bin/chromium is missing (Playwright drives it)."""
    if not chromium.CHROMIUM.is_file():
        header("install chromium")
        apt_install(["chromium"])


def version_key(path: Path) -> tuple[int, ...]:
    """Sort key for /usr/lib/postgresql/<version>/bin directories."""
    try:
        return tuple(int(part) for part in path.parent.name.split("."))
    except ValueError:
        return ()


def pg_bindir_candidates() -> list[Path]:
    """Directories that may hold initdb and pg_ctl, best first."""
    versioned = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version_key, reverse=True)
    on_path = shutil.which("pg_ctl")
    return [*versioned, Path("/usr/local/bin"), *([Path(on_path).parent] if on_path else [])]


def find_pg_bindir() -> Path | None:
    """Real directory of a PostgreSQL server installation (initdb, pg_ctl, postgres)."""
    for candidate in pg_bindir_candidates():
        pg_ctl = candidate / "pg_ctl"
        if not (pg_ctl.is_file() and os.access(pg_ctl, os.X_OK)):
            continue
        bindir = pg_ctl.resolve().parent
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "postgres")):
            return bindir
    return None


def ensure_postgres() -> Path:
    """Return the PostgreSQL bin dir, installing Debian's postgresql package if needed."""
    bindir = find_pg_bindir()
    if bindir is None:
        header("install PostgreSQL")
        apt_install(["postgresql"])
        bindir = find_pg_bindir()
    if bindir is None:
        raise BuildError("PostgreSQL server binaries (initdb, pg_ctl) not found")
    return bindir


# --------------------------------------------------------------------------- virtualenv


def ensure_venv(*, dev: bool) -> None:
    """Create .venv if missing; with dev, (re)install ``-e . --group dev`` when pyproject
    changed."""
    if not (VENV_BIN / "python").exists():
        header("venv")
        run([sys.executable, "-m", "venv", str(VENV)])
        INSTALL_STAMP.unlink(missing_ok=True)
    if dev:
        ensure_dev_install()


def ensure_dev_install() -> None:
    """Run the editable dev install unless the stamp says it is current."""
    digest = inputs_digest("pyproject.toml", "setup.cfg", "setup.py")
    if INSTALL_STAMP.is_file() and INSTALL_STAMP.read_text().strip() == digest:
        return
    pip = [venv_tool("python"), "-m", "pip", "--disable-pip-version-check"]
    # The dev tools are a dependency group (PEP 735), which pip installs from 25.1 on.
    header("pip install pip>=25.1")
    run([*pip, "install", "--quiet", "pip>=25.1"], cwd=ROOT)
    header("pip install -e . --group dev")
    run([*pip, "install", "-e", ".", "--group", "dev"], cwd=ROOT)
    INSTALL_STAMP.write_text(digest + "\n")


def ensure_bench_venv() -> Path:
    """Create .venv-bench with pyjobqueue (editable, with its drivers) and the pinned peers,
    unless its stamp says it is current; return its python."""
    python = BENCH_VENV / "bin" / "python"
    digest = inputs_digest("pyproject.toml") + " " + " ".join(BENCH_PEERS)
    if python.exists() and BENCH_STAMP.is_file() and BENCH_STAMP.read_text().strip() == digest:
        return python
    if not python.exists():
        header("venv .venv-bench")
        run([sys.executable, "-m", "venv", str(BENCH_VENV)])
    header(f"pip install -e .[postgres,sqlite] {' '.join(BENCH_PEERS)} into .venv-bench")
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
    run([*pip, "-e", ".[postgres,sqlite]", *BENCH_PEERS], cwd=ROOT)
    BENCH_STAMP.write_text(digest + "\n")
    return python


# --------------------------------------------------------------------------- npm


def ensure_node_modules() -> None:
    """``npm ci`` (``npm install`` without a lock file) when node_modules is missing or stale."""
    digest = inputs_digest("package.json", "package-lock.json")
    if NPM_STAMP.is_file() and NPM_STAMP.read_text().strip() == digest and NODE24.is_file():
        return
    if not shutil.which("npm"):
        header("install npm")
        apt_install(["npm"])
    header("npm install")
    verb = "ci" if (ROOT / "package-lock.json").is_file() else "install"
    run(["npm", verb, "--no-audit", "--no-fund"], cwd=ROOT)
    NPM_STAMP.write_text(digest + "\n")
