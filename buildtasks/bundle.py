"""The browser bundle: our wheel, the wheels Pyodide needs from PyPI, and web/dist/pyodide/.

web/dist/pyodide/ is Pyodide from npm plus those wheels and a ``pyodide-lock.json``
patched to list them, so a page loads everything from its own origin, with no network.
"""

from __future__ import annotations

import email.parser
import hashlib
import json
import os
import re
import shutil
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .commands import BuildError, header, run
from .environment import ensure_node_modules
from .paths import (
    BUILD_CACHE,
    DIST,
    NODE24,
    PYODIDE_DIST,
    PYODIDE_NPM,
    ROOT,
    SETUPTOOLS_BUILD,
    WEB,
    WEB_DIST,
    venv_tool,
)

# The console (web/): the page, its worker and its Python; web/dist/ is assembled.
WEB_APP_FILES = ("index.html", "js/app.js", "js/worker.js", "py/console_jobs.py")
# What the service worker (web/sw.js) keeps for the console to start offline, as URLs
# relative to web/ ("" is the page itself; shared/ is served from the package).
OFFLINE_SHELL = (
    "",
    "index.html",
    "js/app.js",
    "js/offline.js",
    "js/python.js",
    "js/snapshot-worker.js",
    "js/worker.js",
    "py/console_jobs.py",
    "py/console_model.py",
    "py/console_page.py",
    "py/console_worker.py",
    "shared/view.js",
    "shared/style.css",
    "shared/favicon.svg",
)
BUILD_MANIFEST = WEB_DIST / "build.js"  # this build's version and files, for web/sw.js
# The memory snapshot a first visit starts from: made in Node by this script, kept per
# Pyodide version under .build/ (its name says what it holds: see
# pyjobqueue/browser/boot.mjs).
SNAPSHOT_SCRIPT = ROOT / "buildtasks" / "make_snapshot.mjs"
SNAPSHOT_CACHE = BUILD_CACHE / "snapshots"
# How a page or worker starts the runtime (pyjobqueue's), next to it under this name.
BOOT_MODULE = ROOT / "pyjobqueue" / "browser" / "boot.mjs"
BOOT_MODULE_NAME = "pyjobqueue-boot.mjs"
# The console's page side, imported in the snapshot too (its worker shares console_jobs;
# console_worker imports `js`, which a snapshot cannot hold).
SNAPSHOT_MODULES = ("console_jobs", "console_model", "console_page")
PYODIDE_WHEEL_CACHE = BUILD_CACHE / "pyodide-wheels"
PYODIDE_WHEEL_STAMP = PYODIDE_WHEEL_CACHE / ".requirements"
PYODIDE_PYTHON = "3.14"  # the Python of npm pyodide@314
# Wheels from PyPI that the Pyodide side loads: micropip for apps, pytest for the suites.
PYODIDE_WHEEL_SETS: tuple[tuple[str, ...], ...] = (
    ("--no-deps", "micropip==0.11.1"),  # it vendors its own packaging
    # The IANA timezones of zoneinfo, which Pyodide's stdlib lacks (schedules use them);
    # our wheel depends on it under Pyodide.
    ("--no-deps", "tzdata>=2025.2"),
    ("pytest>=8.2,<9", "pytest-asyncio==0.25.3"),  # 0.25.x is the line that runs in Pyodide
)
PYODIDE_RUNTIME_SKIP = (".d.ts", ".map", ".html", "README.md")


def check_web_app() -> None:
    """Fail when web/ lacks the console's own files (a partial clone)."""
    missing = [name for name in WEB_APP_FILES if not (WEB / name).is_file()]
    if missing:
        raise BuildError(f"web/ is incomplete, {', '.join(missing)} missing: is this a full clone?")


def build_wheel() -> Path:
    """Build the package wheel into dist/ and return its path."""
    header("wheel")
    DIST.mkdir(exist_ok=True)
    # setuptools copies the package through build/ and never empties it: a module that
    # was moved or deleted since the last build would ship in the wheel again.
    shutil.rmtree(SETUPTOOLS_BUILD, ignore_errors=True)
    pip = [venv_tool("python"), "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "wheel", "--no-deps", "-w", str(DIST), "."], cwd=ROOT)
    wheels = sorted(DIST.glob("pyjobqueue-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise BuildError("pip wheel produced no pyjobqueue wheel in dist/")
    return wheels[-1]


def build_distributions() -> list[Path]:
    """The wheel and the sdist, built into dist/ by PyPA's `build` (of the dev group).

    `python -m build` in the repository root would run our build.py instead of PyPA's
    build (the current directory comes first on the path); `-P` leaves it out.
    """
    header("python -m build (wheel and sdist)")
    DIST.mkdir(exist_ok=True)
    shutil.rmtree(SETUPTOOLS_BUILD, ignore_errors=True)
    started = time.time()
    run([venv_tool("python"), "-P", "-m", "build", "--outdir", str(DIST), str(ROOT)], cwd=ROOT)
    built = sorted(
        path for path in DIST.glob("pyjobqueue-*") if path.stat().st_mtime >= started - 1
    )
    if not any(path.suffix == ".whl" for path in built):
        raise BuildError("python -m build produced no wheel in dist/")
    return built


def ensure_pyodide_wheels() -> list[Path]:
    """Download the pure-Python wheels the Pyodide side needs (for Python 3.14) into .build/."""
    wanted = repr(PYODIDE_WHEEL_SETS) + PYODIDE_PYTHON
    stamp_ok = PYODIDE_WHEEL_STAMP.is_file() and PYODIDE_WHEEL_STAMP.read_text() == wanted
    if not stamp_ok:
        header("download wheels for Pyodide")
        shutil.rmtree(PYODIDE_WHEEL_CACHE, ignore_errors=True)
        PYODIDE_WHEEL_CACHE.mkdir(parents=True)
        pip = [venv_tool("python"), "-m", "pip", "--disable-pip-version-check", "download"]
        target = ["--python-version", PYODIDE_PYTHON, "--only-binary=:all:"]
        for requirements in PYODIDE_WHEEL_SETS:
            run([*pip, *target, "--dest", str(PYODIDE_WHEEL_CACHE), *requirements])
        PYODIDE_WHEEL_STAMP.write_text(wanted)
    return sorted(PYODIDE_WHEEL_CACHE.glob("*.whl"))


def normalize_name(name: str) -> str:
    """A distribution name as pyodide-lock.json keys it (PEP 503: lower case, dashes)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_metadata(wheel: Path) -> tuple[str, str, list[str], list[str]]:
    """(name, version, requirement names without extras, top-level import names) of a wheel."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        meta = next(n for n in names if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        metadata = email.parser.HeaderParser().parsestr(archive.read(meta).decode())
    requires = [
        requirement_name(line)
        for line in metadata.get_all("Requires-Dist") or []
        if "extra ==" not in line
    ]
    tops = set()
    for member in names:
        top = member.split("/", 1)[0]
        if top.endswith((".dist-info", ".data")):
            continue
        if "/" in member:
            tops.add(top)
        elif top.endswith(".py"):
            tops.add(top[: -len(".py")])
    return str(metadata["Name"]), str(metadata["Version"]), requires, sorted(tops)


def requirement_name(requirement: str) -> str:
    """The project name at the start of a Requires-Dist value."""
    name = requirement.strip()
    for stop in " ;<>=!~[(":
        name = name.split(stop, 1)[0]
    return normalize_name(name)


def lock_entry(wheel: Path, shipped: set[str]) -> dict[str, object]:
    """A pyodide-lock.json package entry for a pure-Python wheel we ship ourselves."""
    name, version, requires, imports = wheel_metadata(wheel)
    return {
        "name": name,
        "version": version,
        "file_name": wheel.name,
        "install_dir": "site",
        "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
        "package_type": "package",
        "imports": imports,
        # Only what we ship: markers for other Pythons/platforms name wheels we lack.
        "depends": sorted({dep for dep in requires if dep in shipped}),
        "unvendored_tests": False,
        "tool": {},
    }


def assemble_pyodide_runtime(
    wheels: Sequence[Path], destination: Path = PYODIDE_DIST, *, only_shipped: bool = False
) -> Path:
    """Copy Pyodide from npm plus ``wheels`` into web/dist/pyodide/ (or ``destination``)
    with a lock that lists them; ``only_shipped`` drops the lock's other packages, whose
    files are not there (so micropip looks for them elsewhere instead of failing).

    ``loadPyodide({indexURL})`` then ``loadPackage(["pyjobqueue", ...])`` works with no
    network: every package it loads is a file next to the lock, checked against its sha256.
    """
    header(f"assemble Pyodide runtime in {destination.relative_to(ROOT)}")
    # Built beside the old one and swapped in, so a page loading meanwhile never sees a
    # wheel that does not match the lock file.
    staging = destination.with_name(f"{destination.name}.new-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for source in PYODIDE_NPM.iterdir():
        if source.is_file() and not source.name.endswith(PYODIDE_RUNTIME_SKIP):
            shutil.copy2(source, staging / source.name)
    lock = json.loads((PYODIDE_NPM / "pyodide-lock.json").read_text())
    if only_shipped:
        lock["packages"] = {}
    shipped = {normalize_name(wheel_metadata(wheel)[0]) for wheel in wheels}
    # How pages and a WorkerServer's worker start this runtime (from its snapshot).
    shutil.copy2(BOOT_MODULE, staging / BOOT_MODULE_NAME)
    for wheel in wheels:
        shutil.copy2(wheel, staging / wheel.name)
        entry = lock_entry(wheel, shipped)
        lock["packages"][normalize_name(str(entry["name"]))] = entry
    (staging / "pyodide-lock.json").write_text(json.dumps(lock, indent=1) + "\n")
    retired = destination.with_name(f"{destination.name}.old-{os.getpid()}")
    if destination.exists():
        destination.rename(retired)
    staging.rename(destination)
    shutil.rmtree(retired, ignore_errors=True)
    print(f"==> Pyodide runtime with {len(wheels)} wheels in {destination.relative_to(ROOT)}")
    return destination


def runtime_without_snapshot(destination: Path, runtime: Path = PYODIDE_DIST) -> Path:
    """``runtime`` in ``destination`` (hard links) as a build without a memory snapshot
    would leave it: no snapshot file, and no `pyjobqueue` entry in the lock file."""
    destination.mkdir()
    for path in runtime.iterdir():
        if path.name == "pyodide-lock.json":
            lock = json.loads(path.read_text())
            lock.pop("pyjobqueue", None)
            (destination / path.name).write_text(json.dumps(lock))
        elif path.is_file() and not path.name.startswith("pyjobqueue-snapshot-"):
            os.link(path, destination / path.name)
    return destination


def build_manifest(runtime: Path = PYODIDE_DIST) -> dict[str, object]:
    """This build's version (of every file of the runtime and of the shell list) and what
    web/sw.js caches at install: the runtime's files (URL relative to web/ -> sha256)
    less the wheels only the test suites load, and the console's own files."""
    hashes = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(runtime.iterdir())
        if path.is_file()
    }
    version = hashlib.sha256(json.dumps([hashes, OFFLINE_SHELL]).encode()).hexdigest()[:16]
    wanted = app_wheels(json.loads((runtime / "pyodide-lock.json").read_text()))
    files = {
        f"dist/{runtime.name}/{name}": sha256
        for name, sha256 in hashes.items()
        if not name.endswith(".whl") or name in wanted
    }
    return {"version": version, "runtime": files, "shell": list(OFFLINE_SHELL)}


def app_wheels(lock: dict[str, Any]) -> set[str]:
    """The wheel files of pyjobqueue, micropip and what they depend on, in ``lock``."""
    packages: dict[str, dict[str, Any]] = lock["packages"]
    names, pending = set(), ["pyjobqueue", "micropip"]
    while pending:
        name = pending.pop()
        if name in names or name not in packages:
            continue
        names.add(name)
        pending.extend(packages[name]["depends"])
    return {str(packages[name]["file_name"]) for name in names}


def write_build_manifest(runtime: Path = PYODIDE_DIST, target: Path = BUILD_MANIFEST) -> None:
    """Write web/dist/build.js: a new version there makes browsers install web/sw.js again."""
    manifest = json.dumps(build_manifest(runtime), indent=1)
    target.write_text(
        "// Written by buildtasks/bundle.py: what web/sw.js caches for this build.\n"
        f"self.PYJOBQUEUE_BUILD = {manifest};\n"
    )


def add_memory_snapshot(runtime: Path = PYODIDE_DIST) -> None:
    """Put this build's gzipped memory snapshot into the runtime (made in Node 24 unless
    .build/ holds it), so that a first visit skips Python's own start."""
    header("memory snapshot for a first visit")
    # python.js is an ES module in a folder without "type": "module": Node says so.
    quiet = "--disable-warning=MODULE_TYPELESS_PACKAGE_JSON"
    modules = [str(WEB / "py" / f"{name}.py") for name in SNAPSHOT_MODULES]
    script = [str(SNAPSHOT_SCRIPT), str(runtime), str(SNAPSHOT_CACHE), *modules]
    run([str(NODE24), quiet, *script], cwd=ROOT)


def prepare_web_root(wheel: Path) -> Path:
    """Assemble the Pyodide runtime with ``wheel`` into web/dist/pyodide/, its memory
    snapshot and its manifest for the service worker; serve web/."""
    ensure_node_modules()
    assemble_pyodide_runtime([wheel, *ensure_pyodide_wheels()])
    add_memory_snapshot()
    write_build_manifest()
    return WEB
