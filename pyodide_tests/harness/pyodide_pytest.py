"""Runs inside Pyodide: pytest over the shipped suite, every test's outcome as JSON.

The host (pyodide_tests/runner.py) packs this file, pytest.ini and the suite into a zip;
the JavaScript harness unpacks it and calls `run(args)`. The host reads the JSON, not
pytest's exit code alone, so a run where tests are missing cannot pass.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import os
import sys
import time
from typing import Any

import pytest

STALL_SECONDS = 30.0  # a test running longer gets its asyncio tasks printed (once)
# Console lines the host reads while the run goes on, so that a page that crashes
# mid-run still tells which tests finished (and how) and which one was running.
STARTED_MARK = "pyjobqueue-test-started "
FINISHED_MARK = "pyjobqueue-test-finished "


class Recorder:
    """A pytest plugin: the outcome of every test (setup, call and teardown merged)."""

    def __init__(self, hold_at: list[str]) -> None:
        self.hold_at = hold_at
        self.tests: dict[str, dict[str, Any]] = {}
        self.collection_errors: list[dict[str, str]] = []
        self.current: tuple[str, float] | None = None
        self.reported_stall = False

    def pytest_runtest_logstart(self, nodeid: str, location: object) -> None:
        self.current = (nodeid, time.monotonic())
        self.reported_stall = False
        _to_console(STARTED_MARK + json.dumps(nodeid))
        if nodeid in self.hold_at:
            _hold()

    def pytest_runtest_logfinish(self, nodeid: str, location: object) -> None:
        if nodeid in self.tests:
            _to_console(FINISHED_MARK + json.dumps({"nodeid": nodeid, **self.tests[nodeid]}))

    def check_stall(self) -> None:
        """Print every asyncio task's stack when one test has run for too long."""
        if self.current is None or self.reported_stall:
            return
        nodeid, started = self.current
        if time.monotonic() - started < STALL_SECONDS:
            return
        self.reported_stall = True
        out = io.StringIO()
        print(f"STALLED for {STALL_SECONDS}s: {nodeid}; its asyncio tasks:", file=out)
        try:
            # Every unfinished task of every loop (pytest-asyncio makes one per test).
            tasks = [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()]
            for task in tasks:
                print(f"loop {id(task.get_loop()):#x}:", file=out)
                task.print_stack(file=out)
        except Exception as error:
            print(f"cannot list the tasks: {error!r}", file=out)
        _to_console(out.getvalue())

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.tests.setdefault(
            report.nodeid, {"outcome": "passed", "duration": 0.0, "details": ""}
        )
        entry["duration"] += report.duration
        if report.failed:
            entry["outcome"] = "failed"
            entry["details"] += f"[{report.when}] {report.longreprtext}\n"
        elif report.skipped and entry["outcome"] == "passed":
            entry["outcome"] = "skipped"
            entry["details"] += _skip_reason(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collection_errors.append({"nodeid": report.nodeid, "details": report.longreprtext})


def _hold() -> None:
    """Wait, blocking this page, until the host answers /hold (runner.py's crash_at)."""
    import js

    request = js.XMLHttpRequest.new()
    request.open("GET", "/hold", False)
    request.send()


def _to_console(text: str) -> None:
    """Straight to the JavaScript console: pytest captures file descriptor 1 in a test."""
    import js

    js.console.log(text)


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def run(suite_dir: str, args: list[str], hold_at: list[str] | None = None) -> str:
    """Run pytest in `suite_dir` with `args`; the recorded results as JSON text.

    At the start of the tests in `hold_at`, the page waits for the host (a browser only).
    """
    os.chdir(suite_dir)
    if suite_dir not in sys.path:
        sys.path.insert(0, suite_dir)
    recorder = Recorder(hold_at or [])
    import js
    from pyodide.ffi import create_proxy

    watchdog = create_proxy(recorder.check_stall)
    interval = js.setInterval(watchdog, 5000)
    try:
        exit_code = pytest.main(
            ["-c", os.path.join(suite_dir, "pytest.ini"), *args], plugins=[recorder]
        )
    finally:
        js.clearInterval(interval)
        watchdog.destroy()
    return json.dumps(
        {
            "exit_code": int(exit_code),
            "python": sys.version,
            "platform": sys.platform,
            "tests": recorder.tests,
            "collection_errors": recorder.collection_errors,
        }
    )
