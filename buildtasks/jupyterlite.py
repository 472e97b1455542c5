"""The JupyterLite site: JupyterLab in the browser with the Pyodide kernel, built locally.

``jupyter lite build`` (jupyterlite-core and jupyterlite-pyodide-kernel from PyPI, run
from .venv) turns a source folder into a static site in .build/jupyterlite/site/:

- ``static/pyodide/``: the Pyodide we assemble from npm (``bundle.assemble_pyodide_runtime``)
  with the wheels the kernel and the widget load (IPython, jedi, comm, ipywidgets,
  anywidget... pure-Python wheels for Python 3.14 from PyPI) in its lock, and nothing
  else in the lock, so no package is looked for on a CDN;
- ``pypi/``: our wheel, which ``%pip install pyjobqueue[notebook]`` finds there (piplite's
  index, with the fallback to PyPI turned off);
- ``files/``: the example notebooks of docs/notebooks/.

jupyterlite-pyodide-kernel 0.8.x is made for Pyodide 314.0.x (Python 3.14, ES-module
workers), the line npm's ``pyodide@314`` is on; ``check_kernel_pyodide`` stops the build
when the two part ways.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import zipfile
from pathlib import Path

from .bundle import PYODIDE_PYTHON, assemble_pyodide_runtime, ensure_pyodide_wheels, normalize_name
from .commands import BuildError, header, run
from .paths import BUILD_CACHE, PYODIDE_NPM, ROOT, VENV, venv_tool

NOTEBOOKS = ROOT / "docs" / "notebooks"
LITE = BUILD_CACHE / "jupyterlite"
LITE_SOURCE = LITE / "source"  # the lite dir jupyter lite build reads
LITE_SITE = LITE / "site"  # the built site, served under SITE_PREFIX
LITE_STAMP = LITE / ".inputs.sha256"
NOTEBOOK_WHEELS = LITE / "wheels"
NOTEBOOK_WHEEL_STAMP = NOTEBOOK_WHEELS / ".requirements"
SITE_PREFIX = "/jupyterlite/"
# The site is served without COOP/COEP: on a cross-origin isolated page the pyodide
# kernel (0.8) switches its worker messages to SharedArrayBuffer calls and its cells
# never finish ("value.then is not a function"). The console keeps its isolation.
NOT_ISOLATED = frozenset({SITE_PREFIX})
# The example notebook in the site's notebook app.
NOTEBOOK_PATH = SITE_PREFIX + "notebooks/index.html?path=pyjobqueue.ipynb"
# What the kernel installs at start (IPython, jedi, comm) and what the widget needs.
NOTEBOOK_REQUIREMENTS = ("ipython", "jedi", "comm", "anywidget>=0.9")
# Resolved with the host's markers, so some are not for the browser: pexpect is not used
# under emscripten, the kernel ships its own widgetsnbextension, and jupyterlab-widgets
# is the frontend's (JupyterLite takes it from .venv's labextensions).
NOT_IN_THE_KERNEL = frozenset({"pexpect", "ptyprocess", "widgetsnbextension", "jupyterlab-widgets"})
KERNEL_PLUGIN = "@jupyterlite/pyodide-kernel-extension:kernel"


def ensure_notebook_wheels() -> list[Path]:
    """Pure-Python wheels for Python 3.14 of what the kernel and the widget import."""
    wanted = repr(NOTEBOOK_REQUIREMENTS) + PYODIDE_PYTHON
    if not (NOTEBOOK_WHEEL_STAMP.is_file() and NOTEBOOK_WHEEL_STAMP.read_text() == wanted):
        LITE.mkdir(parents=True, exist_ok=True)
        header("download wheels for the JupyterLite kernel")
        shutil.rmtree(NOTEBOOK_WHEELS, ignore_errors=True)
        NOTEBOOK_WHEELS.mkdir(parents=True)
        run(
            [
                *(venv_tool("python"), "-m", "pip", "--disable-pip-version-check", "download"),
                *("--python-version", PYODIDE_PYTHON, "--only-binary=:all:"),
                *("--platform", "any", "--implementation", "py", "--abi", "none"),
                *("--dest", str(NOTEBOOK_WHEELS), *NOTEBOOK_REQUIREMENTS),
            ]
        )
        NOTEBOOK_WHEEL_STAMP.write_text(wanted)
    wheels = sorted(NOTEBOOK_WHEELS.glob("*.whl"))
    return [wheel for wheel in wheels if wheel_project(wheel) not in NOT_IN_THE_KERNEL]


def wheel_project(wheel: Path) -> str:
    """The normalized project name of a wheel file."""
    return normalize_name(wheel.name.split("-", 1)[0])


def kernel_pyodide_version() -> str:
    """The Pyodide version the installed jupyterlite-pyodide-kernel is made for."""
    python = venv_tool("python")
    code = "from jupyterlite_pyodide_kernel import constants; print(constants.PYODIDE_VERSION)"
    return run([python, "-c", code], capture=True).stdout.strip()


def npm_pyodide_version() -> str:
    """The version of npm's pyodide in node_modules."""
    return str(json.loads((PYODIDE_NPM / "package.json").read_text())["version"])


def check_kernel_pyodide() -> None:
    """Stop when the kernel and npm's Pyodide are not of one major.minor line."""
    kernel, npm = kernel_pyodide_version(), npm_pyodide_version()
    if kernel.split(".")[:2] != npm.split(".")[:2]:
        raise BuildError(
            f"jupyterlite-pyodide-kernel is made for Pyodide {kernel}, node_modules has {npm}:"
            " pin the one that matches the other"
        )


def wheel_digest(wheel: Path) -> bytes:
    """A wheel's files and their contents, not its zip timestamps (which every build of
    our wheel changes)."""
    digest = hashlib.sha256(wheel.name.encode())
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            digest.update(name.encode() + b"\0" + hashlib.sha256(archive.read(name)).digest())
    return digest.digest()


def inputs_digest(wheels: list[Path]) -> str:
    """What the site is built from: wheels, notebooks, Pyodide and the jupyter tools."""
    digest = hashlib.sha256()
    for wheel in wheels:
        digest.update(wheel_digest(wheel))
    for path in [PYODIDE_NPM / "package.json", *sorted(NOTEBOOKS.glob("*.ipynb"))]:
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    for dist_info in sorted(VENV.glob("lib/python*/site-packages/jupyterlite*.dist-info")):
        digest.update(dist_info.name.encode())
    return digest.hexdigest()


def write_source(wheel: Path, kernel_wheels: list[Path]) -> None:
    """The lite dir: the assembled Pyodide and our wheel for piplite."""
    shutil.rmtree(LITE_SOURCE, ignore_errors=True)
    (LITE_SOURCE / "pypi").mkdir(parents=True)
    assemble_pyodide_runtime(kernel_wheels, LITE_SOURCE / "static" / "pyodide", only_shipped=True)
    shutil.copy2(wheel, LITE_SOURCE / "pypi" / wheel.name)


def build_site(wheel: Path) -> Path:
    """Build the JupyterLite site (when its inputs changed) into .build/jupyterlite/site/."""
    check_kernel_pyodide()
    runtime_wheels = [
        path
        for path in ensure_pyodide_wheels()
        if wheel_project(path) in {"micropip", "tzdata"}  # not the suites' pytest
    ]
    kernel_wheels = [*runtime_wheels, *ensure_notebook_wheels()]
    digest = inputs_digest([wheel, *kernel_wheels])
    if LITE_STAMP.is_file() and LITE_STAMP.read_text() == digest and LITE_SITE.is_dir():
        print(f"==> JupyterLite site in {LITE_SITE.relative_to(ROOT)} is up to date")
        return LITE_SITE
    write_source(wheel, kernel_wheels)
    header("jupyter lite build")
    # A build from scratch: doit's record of tasks done would skip the ones whose
    # inputs did not change, though their output is gone with the old site.
    shutil.rmtree(LITE_SITE, ignore_errors=True)
    for record in LITE.glob(".jupyterlite.doit.db*"):
        record.unlink()
    run(
        [
            *(venv_tool("jupyter"), "lite", "build", "--lite-dir", str(LITE_SOURCE)),
            *("--output-dir", str(LITE_SITE), "--contents", str(NOTEBOOKS)),
            "--no-sourcemaps",
        ],
        cwd=LITE,
    )
    settle_kernel_settings()
    check_site()
    LITE_STAMP.write_text(digest)
    return LITE_SITE


def settle_kernel_settings() -> None:
    """piplite never falls back to PyPI: every package comes from the site or fails."""
    path = LITE_SITE / "jupyter-lite.json"
    config = json.loads(path.read_text())
    plugins = config["jupyter-config-data"].setdefault("litePluginSettings", {})
    plugins.setdefault(KERNEL_PLUGIN, {})["disablePyPIFallback"] = True
    path.write_text(json.dumps(config, indent=2) + "\n")


def check_site() -> None:
    """Fail when the built site does not point the kernel at its own Pyodide."""
    config = json.loads((LITE_SITE / "jupyter-lite.json").read_text())
    settings = config["jupyter-config-data"]["litePluginSettings"][KERNEL_PLUGIN]
    if settings.get("pyodideUrl") != "./static/pyodide/pyodide.mjs" or not settings.get(
        "disablePyPIFallback"
    ):
        raise BuildError(f"the JupyterLite site does not use its own Pyodide: {settings}")
    if not list((LITE_SITE / "pypi").glob("pyjobqueue-*.whl")):
        raise BuildError("the JupyterLite site has no pyjobqueue wheel in pypi/")
    if re.search(r"cdn\.jsdelivr", (LITE_SITE / "jupyter-lite.json").read_text()):
        raise BuildError("the JupyterLite site names a CDN in jupyter-lite.json")
