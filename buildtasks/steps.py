"""The checks of ``build.py test``, in order: ruff, ruff format, mypy, then the pytest suites.

Services start lazily: the throwaway PostgreSQL cluster before the first step that
needs it, the browser toolchain and the Pyodide bundle before the browser suites.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .bundle import build_wheel, prepare_web_root
from .commands import header, run
from .environment import ensure_chromium, ensure_node_modules, ensure_postgres
from .jupyterlite import build_site
from .paths import PLAYWRIGHT_TESTS, PYODIDE_TESTS, ROOT, TESTS, venv_tool
from .postgres import PgCluster, postgres_cluster

PYTEST_NO_TESTS_COLLECTED = 5


def ensure_browser_toolchain() -> None:
    """Install what the browser and Pyodide steps need, assemble web/dist/pyodide/ and
    build the JupyterLite site (when its inputs changed)."""
    ensure_node_modules()
    ensure_chromium()
    wheel = build_wheel()
    prepare_web_root(wheel)
    build_site(wheel)


@dataclass(frozen=True)
class Step:
    """One check of ``build.py test``; steps run in order and stop at the first failure."""

    name: str
    cmd: list[str]
    needs_postgres: bool = False
    needs_browser: bool = False


def has_path_arg(args: Sequence[str]) -> bool:
    """Whether pytest args already name test paths (then the default ``tests`` is dropped)."""
    return any(not arg.startswith("-") and Path(arg.split("::")[0]).exists() for arg in args)


def names_browser_tests(args: Sequence[str]) -> bool:
    """Whether pytest args name a path under playwright_tests/ or pyodide_tests/."""
    suites = [PLAYWRIGHT_TESTS.resolve(), PYODIDE_TESTS.resolve()]
    paths = [Path(arg.split("::")[0]).resolve() for arg in args if not arg.startswith("-")]
    return any(path == suite or suite in path.parents for path in paths for suite in suites)


def pyodide_cmd(python: str) -> list[str]:
    """pytest over pyodide_tests/: our suites run inside Pyodide in Node 24 and Chromium."""
    return [python, "-m", "pytest", str(PYODIDE_TESTS.relative_to(ROOT))]


# A test whose page's renderer crashed ("Target crashed": Chromium's renderer died, seen
# about once in several hundred starts of two Pyodides in one tab, never reproduced on
# its own) runs once more. Nothing else is retried: a failed assertion fails at once.
# BrowserLog prints the machine's memory at the crash, so the log says what it saw.
RENDERER_CRASHED = ("--reruns", "1", "--only-rerun", "Target crashed")


def playwright_cmd(python: str) -> list[str]:
    """pytest over playwright_tests/ (Debian's Chromium, the console served on 127.0.0.1)."""
    return [python, "-m", "pytest", str(PLAYWRIGHT_TESTS.relative_to(ROOT)), *RENDERER_CRASHED]


def build_steps(pytest_args: Sequence[str]) -> list[Step]:
    """The ordered step list of ``build.py test``."""
    python = venv_tool("python")
    targets = [] if has_path_arg(pytest_args) else [str(TESTS.relative_to(ROOT))]
    steps = [
        Step("ruff", [venv_tool("ruff"), "check", "."]),
        Step("ruff format", [venv_tool("ruff"), "format", "--check", "."]),
        Step("mypy", [venv_tool("mypy")]),
        Step(
            "pytest",
            [python, "-m", "pytest", *targets, *pytest_args],
            needs_postgres=True,
            needs_browser=names_browser_tests(pytest_args),
        ),
    ]
    if targets:  # no test paths named: the whole suite, so the browser ones too
        # pytest args (-k, -x...) go to the CPython step above only.
        # The contract suites inside Pyodide, in Node 24 and in Chromium:
        steps.append(Step("pyodide", pyodide_cmd(python), needs_browser=True))
        # The console (in the browser, and `pyjobqueue console` on SQLite and PostgreSQL),
        # the cross-tab behaviour and the JupyterLite notebooks in Chromium:
        steps.append(
            Step("playwright", playwright_cmd(python), needs_postgres=True, needs_browser=True)
        )
    return steps


def explain_failure(step: Step, returncode: int) -> None:
    """Print why a step failed."""
    print(f"==> FAILED: {step.name} (exit code {returncode})", flush=True)
    if step.name == "pytest" and returncode == PYTEST_NO_TESTS_COLLECTED:
        print("==> pytest collected no tests; that counts as a failure", flush=True)


def run_steps(steps: Sequence[Step]) -> int:
    """Run steps in order, starting services lazily; return the first failing exit code."""
    bindir = ensure_postgres() if any(s.needs_postgres for s in steps) else None
    if any(s.needs_browser for s in steps):
        ensure_browser_toolchain()
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = dict(os.environ)
        cluster: PgCluster | None = None
        for step in steps:
            if step.needs_postgres and cluster is None and bindir is not None:
                cluster = stack.enter_context(postgres_cluster(bindir))
                env.update(cluster.env())
            header(step.name)
            result = run(step.cmd, check=False, env=env, cwd=ROOT)
            if result.returncode != 0:
                explain_failure(step, result.returncode)
                return result.returncode if result.returncode > 0 else 1
    return 0
