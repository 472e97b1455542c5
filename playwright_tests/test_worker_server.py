"""pyjobqueue.browser.WorkerServer in Chromium: the page's jobs run in a module Web
Worker, the page stays responsive while one computes, and on a cross-origin isolated
page abort() stops a CPU-bound job that never looks at its signal.

Each test opens a plain page of its own (Pyodide and pyjobqueue from web/dist/pyodide/)
on a server that sends COOP/COEP, or one that does not. Figures (frames per second,
timer lag, abort latency) are printed, never asserted, except that a frozen page fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_log import BrowserLog
from conftest import check_runtime, site_without_build_snapshot
from playwright.sync_api import Browser, BrowserContext, Page

from buildtasks import webserver
from buildtasks.paths import WEB_MOUNTS

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>WorkerServer test page</title>
<link rel="icon" href="/shared/favicon.svg"></head>
<body><p>WorkerServer test page</p>
<script type="module">
import { loadPyodide } from "/dist/pyodide/pyodide.mjs";
window.pyjobqueueReady = (async () => {
  const pyodide = await loadPyodide({ indexURL: "/dist/pyodide/" });
  const errors = [];
  await pyodide.loadPackage(["pyjobqueue"], {
    messageCallback: () => {}, errorCallback: (message) => errors.push(message),
  });
  if (errors.length) throw new Error(errors.join("; "));
  window.pyodide = pyodide;
})();
</script></body></html>
"""

# The job module, served at /jobs/cpu.py and also given as source text.
JOBS = b'''
"""Jobs for the WorkerServer tests: one CPU-bound and deaf to its signal, one quick."""
import time

from pyjobqueue import job

RUNS = []  # one entry per attempt this interpreter ran


@job
async def spin(seconds, context):
    RUNS.append("spin")
    end = time.monotonic() + seconds
    count = 0
    while time.monotonic() < end:  # never awaits, never looks at context.signal
        count += 1
    await context.update_progress(100, "spun to the end")
    return count


@job
async def runs(input, context):
    RUNS.append("runs")
    return len(RUNS)
'''

READY_TIMEOUT_MS = 120_000
SPIN_SECONDS = 120  # much longer than any test waits: only an interrupt ends it early

# Frames drawn and the worst lateness of a 10 ms timer on the page, over `ms`.
MEASURE_RESPONSIVENESS = """async (ms) => {
  const start = performance.now();
  let frames = 0;
  let worstLag = 0;
  const lags = [];
  await new Promise((resolve) => {
    const frame = () => {
      frames += 1;
      if (performance.now() - start < ms) requestAnimationFrame(frame); else resolve();
    };
    requestAnimationFrame(frame);
    const tick = (due) => {
      const now = performance.now();
      worstLag = Math.max(worstLag, now - due);
      lags.push(now - due);
      if (now - start < ms) setTimeout(() => tick(now + 10), 10);
    };
    setTimeout(() => tick(start + 10), 10);
  });
  const seconds = (performance.now() - start) / 1000;
  lags.sort((a, b) => a - b);
  const medianLagMs = lags[Math.floor(lags.length / 2)];
  return { fps: frames / seconds, worstLagMs: worstLag, medianLagMs };
}"""


def site(*, isolated: bool) -> webserver.Site:
    """web/ with the test page and the job module, with or without COOP/COEP."""
    return webserver.Site(
        WEB_MOUNTS,
        files={"/worker-server.html": PAGE, "/jobs/cpu.py": JOBS},
        log_requests=False,
        isolated=isolated,
    )


@pytest.fixture(scope="module")
def isolated_server() -> Iterator[str]:
    check_runtime()
    with webserver.serving(site(isolated=True)) as base:
        yield base


@pytest.fixture(scope="module")
def plain_server() -> Iterator[str]:
    check_runtime()
    with webserver.serving(site(isolated=False)) as base:
        yield base


class PlainPage:
    """The test page: its Pyodide runs our Python and returns JSON."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.warnings: list[str] = []
        page.on("console", self._on_console)

    def _on_console(self, message: Any) -> None:
        if message.type == "warning":
            self.warnings.append(message.text)

    def python(self, code: str) -> Any:
        """Run `code` (its last line's value, as JSON text) in the page's Pyodide."""
        text = self.page.evaluate(
            "async (code) => { await window.pyjobqueueReady;"
            " return await pyodide.runPythonAsync(code); }",
            code,
        )
        return json.loads(text)


@pytest.fixture
def open_page(
    browser: Browser, browser_context_args: dict[str, Any], browser_log: BrowserLog
) -> Iterator[Callable[[str], PlainPage]]:
    """Opens the test page in a fresh context (its own IndexedDB), Python ready; the
    contexts close after the test, and their errors fail it."""
    contexts: list[BrowserContext] = []

    def open_on(base: str) -> PlainPage:
        context = browser.new_context(**{**browser_context_args, "base_url": base})
        contexts.append(context)
        browser_log.watch(context)
        tab = PlainPage(context.new_page())
        tab.page.set_default_timeout(READY_TIMEOUT_MS)
        tab.page.goto("/worker-server.html")
        tab.page.evaluate("() => window.pyjobqueueReady")
        return tab

    yield open_on
    for context in contexts:
        context.close()


START_SERVER = """
import asyncio, json, time
from pyjobqueue.browser import WorkerServer

server = await WorkerServer(MODULE, queue_name="cpu").start()
client = server.client
events = []
starts = {}


def on_start(queue, job_id, *rest):
    events.append(("job_start", job_id))
    starts.setdefault(job_id, asyncio.Event()).set()


client.on("job_start", on_start)
client.on("job_error", lambda queue, job_id, *rest: events.append(("job_error", job_id)))


async def started(handle):
    await starts.setdefault(handle.id, asyncio.Event()).wait()


json.dumps([server.hard_cancel, server.started_from_snapshot])
"""

SUBMIT_SPIN = f"""
spinning = await client.submit({SPIN_SECONDS}, kind="spin")
await asyncio.wait_for(started(spinning), 60)
json.dumps(spinning.id)
"""

ABORT_AND_WAIT = """
began = time.monotonic()
await spinning.abort()
try:
    await spinning.wait_for(timeout=60)
    outcome = "returned"
except Exception as error:
    outcome = type(error).__name__
ended_ms = (time.monotonic() - began) * 1000
job = await client.get_job(spinning.id)
after = await (await client.submit(None, kind="runs")).wait_for(timeout=60)
json.dumps({
    "outcome": outcome, "ms": ended_ms, "status": job.status.value,
    "error_code": job.error_code, "progress": job.progress,
    "errors": [e for e in events if e == ("job_error", spinning.id)], "after": after,
})
"""


def test_the_page_stays_responsive_while_a_cpu_bound_job_runs_in_the_worker(
    open_page: Callable[[str], PlainPage], isolated_server: str
) -> None:
    tab = open_page(isolated_server)
    # Isolated, and started from the build's snapshot (the runtime the page loaded).
    assert tab.python(START_SERVER.replace("MODULE", 'url="/jobs/cpu.py"')) == [True, True]
    tab.python(SUBMIT_SPIN)

    figures = tab.page.evaluate(MEASURE_RESPONSIVENESS, 3000)
    # Still computing: the figures were taken while the job ran.
    assert tab.python("json.dumps((await client.get_job(spinning.id)).status.value)") == (
        "PROCESSING"
    )
    print(
        f"page while a CPU-bound job runs in the worker: {figures['fps']:.1f} fps, "
        f"a 10 ms timer {figures['medianLagMs']:.1f} ms late (median), "
        f"{figures['worstLagMs']:.1f} ms at worst"
    )
    assert figures["fps"] >= 20, f"the page froze: {figures}"
    tab.python(ABORT_AND_WAIT)
    tab.python("await server.stop()\njson.dumps(None)")


def test_abort_stops_a_cpu_bound_job_at_once_and_the_worker_goes_on(
    open_page: Callable[[str], PlainPage], isolated_server: str
) -> None:
    tab = open_page(isolated_server)
    module = f"{JOBS.decode()!r}"
    assert tab.python(START_SERVER.replace("MODULE", module)) == [True, True]  # source text
    spinning = tab.python(SUBMIT_SPIN)

    result = tab.python(ABORT_AND_WAIT)

    print(f"hard cancel: abort() to the job's end seen by the page: {result['ms']:.0f} ms")
    assert result["outcome"] == "AbortSignalJobError"
    assert (result["status"], result["error_code"]) == ("FAILED", "AbortSignalJobError")
    assert result["progress"] != 100  # its code never got past its loop
    assert result["errors"] == [["job_error", spinning]]  # exactly one job_error
    assert result["after"] == 2  # the same interpreter ran the next job
    tab.python("await server.stop()\njson.dumps(None)")


def test_without_isolation_it_says_so_and_abort_waits_for_the_job(
    open_page: Callable[[str], PlainPage], plain_server: str
) -> None:
    tab = open_page(plain_server)
    assert tab.python(START_SERVER.replace("MODULE", 'url="/jobs/cpu.py"')) == [False, True]
    assert any("not cross-origin isolated" in text for text in tab.warnings), tab.warnings
    tab.python(SUBMIT_SPIN.replace(str(SPIN_SECONDS), "2"))

    result = tab.python(ABORT_AND_WAIT)

    print(f"no isolation: abort() of a 2 s CPU-bound job: {result}")
    assert result["progress"] == 100  # it ran to its end: today's cooperative abort
    assert result["after"] == 2
    tab.python("await server.stop()\njson.dumps(None)")


def test_on_a_runtime_without_a_snapshot_the_worker_starts_as_usual(
    open_page: Callable[[str], PlainPage], tmp_path: Path
) -> None:
    files = {"/worker-server.html": PAGE, "/jobs/cpu.py": JOBS}
    with webserver.serving(site_without_build_snapshot(tmp_path, files)) as base:
        tab = open_page(base)
        started = tab.python(START_SERVER.replace("MODULE", 'url="/jobs/cpu.py"'))
        assert started == [True, False]  # isolated; Python started the usual way
        ran = 'json.dumps(await (await client.submit(None, kind="runs")).wait_for(timeout=60))'
        assert tab.python(ran) == 1
        tab.python("await server.stop()\njson.dumps(None)")


BAD_INPUT = """
import json
from pyjobqueue.browser import WorkerServer

refused = []
for arguments in (
    {"source": "x = 1", "queue_name": "bad", "worker_cont": 2},  # a misspelt option
    {"source": "x = 1", "queue_name": "bad", "worker_count": 0},
    {"source": "x = 1", "url": "/jobs/cpu.py", "queue_name": "bad"},
):
    try:
        WorkerServer(**arguments)
    except (TypeError, ValueError) as error:
        refused.append(str(error))
for source in ("x = 1", "def broken(:\\n"):
    try:
        await WorkerServer(source, queue_name="bad").start()
    except RuntimeError as error:
        refused.append(str(error))
checked = WorkerServer(url="/jobs/cpu.py", queue_name="bad", jobs=["spin", "RUNS"])
try:
    await checked.start()
except RuntimeError as error:
    refused.append(str(error))
json.dumps({"refused": refused, "stored": await checked.client.size(None)})
"""


def test_bad_input_is_refused_with_a_clear_error_and_nothing_is_stored(
    open_page: Callable[[str], PlainPage], isolated_server: str
) -> None:
    tab = open_page(isolated_server)

    result = tab.python(BAD_INPUT)

    refused = result["refused"]
    assert len(refused) == 6, refused
    assert "unknown server options: worker_cont" in refused[0]
    assert "worker_count" in refused[1]
    assert "not both" in refused[2]
    assert "could not start: ValueError: the job module 'jobs' defines no job" in refused[3]
    assert "could not start: SyntaxError" in refused[4]
    assert "'RUNS' of the job module 'cpu' is not a job" in refused[5]
    assert result["stored"] == 0
