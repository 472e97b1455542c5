"""The contract suites and pyodide_tests/inside/ pass inside Pyodide, in Node 24 and Chromium.

Each runtime runs the whole suite once (a module fixture); then every test function
that should have run there is a host test of its own, which fails when it failed,
errored or did not run at all. The list of expected tests is read from the test
files themselves, so a run that collected fewer tests cannot pass.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from . import runner

pytestmark = pytest.mark.timeout(600)  # a whole in-Pyodide run happens in the first test

RUNTIMES = ("node", "chromium")


def defined_tests(path: Path) -> list[str]:
    """Names of the test functions defined at the top level of a test module."""
    tree = ast.parse(path.read_text(), str(path))
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    ]


def expected() -> list[tuple[str, str, str | None]]:
    """(archive path, function, backend or None) of every test that must run in Pyodide."""
    cases: list[tuple[str, str, str | None]] = []
    for suite in runner.SUITES:
        for name in defined_tests(runner.ROOT / suite):
            cases += [(suite, name, backend) for backend in runner.BACKENDS]
    for path, archived in zip(
        sorted(runner.INSIDE.glob("test_*.py")), runner.inside_test_paths(), strict=True
    ):
        cases += [(archived, name, None) for name in defined_tests(path)]
    return cases


EXPECTED = expected()


@pytest.fixture(scope="module", params=RUNTIMES)
def results(request: pytest.FixtureRequest) -> tuple[str, runner.Results]:
    """One in-Pyodide run of the whole suite per runtime."""
    runtime: str = request.param
    run = runner.RUNNERS[runtime]
    return runtime, run(runner.with_default_paths(["-v"]), 420)


def matching(results: runner.Results, path: str, name: str, backend: str | None) -> list[str]:
    """Node ids of `path::name`, limited to one backend's parametrisations when given."""
    found = []
    for nodeid in results.tests:
        base, _, params = nodeid.partition("[")
        if base != f"{path}::{name}":
            continue
        if backend is None or backend in params.rstrip("]").split("-"):
            found.append(nodeid)
    return found


def test_the_run_is_complete(results: tuple[str, runner.Results]) -> None:
    runtime, run = results
    assert run.collection_errors == [], run.output[-8000:]
    assert run.python.startswith("3."), run.python
    missing = [case for case in EXPECTED if not matching(run, *case)]
    assert missing == [], f"did not run in {runtime}: {missing}"
    assert len(run.tests) >= len(EXPECTED)
    print(f"in Pyodide ({runtime}): {run.summary()}")


@pytest.mark.parametrize(
    "case",
    EXPECTED,
    ids=[f"{path.split('/')[-1]}::{name}[{backend or '-'}]" for path, name, backend in EXPECTED],
)
def test_passes_in_pyodide(
    results: tuple[str, runner.Results], case: tuple[str, str, str | None]
) -> None:
    runtime, run = results
    nodeids = matching(run, *case)
    if not nodeids:
        pytest.fail(f"{case[0]}::{case[1]} did not run in {runtime}")
    failed = [nodeid for nodeid in nodeids if run.tests[nodeid]["outcome"] == "failed"]
    details = "\n".join(f"{nodeid}\n{run.tests[nodeid]['details']}" for nodeid in failed)
    assert not failed, f"failed in Pyodide ({runtime}):\n{details}"
    skipped = [nodeid for nodeid in nodeids if run.tests[nodeid]["outcome"] == "skipped"]
    for nodeid in skipped:
        # Skipping for want of Pyodide inside Pyodide means the seam is broken.
        assert "Pyodide" not in run.tests[nodeid]["details"], run.tests[nodeid]["details"]
    if len(skipped) == len(nodeids):
        pytest.skip(f"skipped in Pyodide ({runtime}): {run.tests[skipped[0]]['details']}")
