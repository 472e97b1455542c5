"""The offline start: the service worker (web/sw.js) keeps the Pyodide runtime, our
wheels and the console's files in the Cache API, so the console starts with no server at
all and runs the jobs stored in IndexedDB; a new build replaces the cached one."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_log import BrowserLog
from conftest import check_runtime, site_without_build_snapshot
from console_tab import READY_TIMEOUT_MS, ConsoleTab
from playwright.sync_api import Browser, BrowserContext

from buildtasks import bundle, webserver
from buildtasks.paths import WEB, WEB_MOUNTS

# A page that only registers the service worker, as the README's minimal page does.
MINIMAL_PAGE = b"""<!doctype html><meta charset="utf-8"><title>offline</title>
<link rel="icon" href="data:,">
<script type="module">
import { keepOffline } from "/js/offline.js";
window.offlineReady = keepOffline().then((registration) => !!registration.active);
</script>"""
MARKER = "/dist/pyodide/marker.txt"
README = Path(__file__).resolve().parents[1] / "README.md"
STORE_A_JOB_PAUSED = """
await client.pause()
handle = await client.submit({"task": "primes", "limit": 1000})
handle.id
"""

# Asks the browser to look for a new build, then waits until its worker controls the
# page and has finished activating (the old caches deleted).
UPDATE = """async () => {
  const changed = new Promise((resolve) =>
    navigator.serviceWorker.addEventListener("controllerchange", resolve, { once: true }));
  const registration = await navigator.serviceWorker.getRegistration();
  await registration.update();
  await changed;
  const worker = registration.active;
  while (worker.state !== "activated") {
    await new Promise((resolve) => worker.addEventListener("statechange", resolve, { once: true }));
  }
}"""
FETCH_MARKER = f"async () => (await fetch({json.dumps(MARKER)})).text()"


def manifest_script(version: str, marker: bytes) -> bytes:
    """dist/build.js of a build that also holds the marker file."""
    manifest: dict[str, Any] = bundle.build_manifest()
    manifest["version"] = version
    manifest["runtime"] = {**manifest["runtime"], MARKER[1:]: version}
    return f"self.PYJOBQUEUE_BUILD = {json.dumps(manifest)};\n".encode() + b"//" + marker


@pytest.fixture
def offline_context(
    browser: Browser, browser_context_args: dict[str, Any], browser_log: BrowserLog
) -> Iterator[BrowserContext]:
    """A fresh context (its own caches and service workers); its errors fail the test.

    Its pages open on a server of the test's own (absolute URLs), which the test stops.
    """
    check_runtime()
    context = browser.new_context(**browser_context_args)
    browser_log.watch(context)
    try:
        yield context
    finally:
        context.close()


# How the page's Python started: from the memory snapshot or not.
STARTED_FROM_SNAPSHOT = """() => performance.getEntriesByName("pyjobqueue:interpreter")[0]
  .detail.snapshot"""
# Which of the page's own modules the snapshot had imported already.
MODULES_FROM_SNAPSHOT = """() => performance.getEntriesByName("pyjobqueue:modules")[0]
  .detail.fromSnapshot"""
CONSOLE_MODULES = ["console_jobs", "console_model", "console_page"]  # the page's


@pytest.mark.parametrize("start", ["build-snapshot", "browser-snapshot", "no-snapshot"])
def test_the_console_starts_offline_and_runs_a_stored_job(
    offline_context: BrowserContext, queue_name: str, start: str, tmp_path: Path
) -> None:
    # The build's snapshot serves every visit; without it the first visit makes one.
    if start == "browser-snapshot":
        site = site_without_build_snapshot(tmp_path)
    else:
        site = webserver.Site(WEB_MOUNTS, log_requests=False)
    query = f"?queue={queue_name}" + ("&snapshot=0" if start == "no-snapshot" else "")
    with webserver.serving(site, "offline test server") as base:
        tab = ConsoleTab(offline_context.new_page())
        tab.page.goto(f"{base}/{query}")
        tab.wait_ready()
        tab.expect_role("leader")
        assert tab.page.evaluate(STARTED_FROM_SNAPSHOT) == (start == "build-snapshot")
        # Only the build's snapshot holds the console's modules (one made in the
        # browser holds the package only).
        modules = CONSOLE_MODULES if start == "build-snapshot" else []
        assert tab.page.evaluate(MODULES_FROM_SNAPSHOT) == modules
        assert tab.page.evaluate("async () => !!(await window.pyjobqueueOffline).active")
        saved = tab.page.evaluate("() => window.pyjobqueueSnapshot")
        if start == "browser-snapshot":
            assert saved > 0, saved  # the bytes of the one it made
        else:  # none needed, or none made
            assert saved == (0 if start == "build-snapshot" else None), saved
        # Stored while paused, so it is still to run when the server is gone.
        job_id = tab.run_python(STORE_A_JOB_PAUSED)
    offline_context.set_offline(True)  # and no server listens any more
    tab.reload()
    tab.expect_role("leader")
    assert tab.page.evaluate("() => navigator.serviceWorker.controller !== null")
    assert tab.page.evaluate(STARTED_FROM_SNAPSHOT) == (start != "no-snapshot")
    tab.expect_status(job_id, "PENDING")
    tab.run_python("await client.resume()")
    tab.expect_status(job_id, "COMPLETED")


def test_a_console_module_edited_since_the_build_is_imported_from_its_file(
    offline_context: BrowserContext, queue_name: str
) -> None:
    # The snapshot's console modules are all imported again (the others may hold what
    # they took from the edited one), and the console works as ever.
    edited = (WEB / "py" / "console_model.py").read_text() + "\nEDITED = True\n"
    files = {"/py/console_model.py": edited.encode()}
    site = webserver.Site(WEB_MOUNTS, files=files, log_requests=False)
    with webserver.serving(site, "edited module server") as base:
        tab = ConsoleTab(offline_context.new_page())
        tab.page.goto(f"{base}/?queue={queue_name}")
        tab.wait_ready()
        assert tab.page.evaluate(STARTED_FROM_SNAPSHOT)
        assert tab.page.evaluate(MODULES_FROM_SNAPSHOT) == []
        assert tab.run_python("import console_model, console_page\nconsole_model.EDITED")
        assert tab.run_python("console_page.QueueModel is console_model.QueueModel")
        job_id = tab.run_python('(await client.submit({"task": "primes", "limit": 100})).id')
        tab.expect_status(job_id, "COMPLETED")


def test_a_new_build_replaces_the_cached_one(offline_context: BrowserContext) -> None:
    files = {
        "/minimal.html": MINIMAL_PAGE,
        "/dist/build.js": manifest_script("one", b"1"),
        MARKER: b"one",
    }
    site = webserver.Site(WEB_MOUNTS, files=files, log_requests=False)
    with webserver.serving(site, "offline test server") as base:
        page = offline_context.new_page()
        page.goto(f"{base}/minimal.html")
        assert page.evaluate("() => window.offlineReady")
        page.reload()  # now under the worker: the marker comes from its cache
        assert page.evaluate("() => navigator.serviceWorker.controller !== null")
        files[MARKER] = b"changed on the server"
        assert page.evaluate(FETCH_MARKER) == "one"  # versioned: never revalidated
        files["/dist/build.js"] = manifest_script("two", b"2")
        files[MARKER] = b"two"
        page.evaluate(UPDATE)
        assert page.evaluate(FETCH_MARKER) == "two"
        names = page.evaluate("() => caches.keys()")
        assert names == ["pyjobqueue-app two"], names


def readme_page() -> bytes:
    """A page of the README's module block marked `<!-- offline-page -->`, then a line
    that shows its Pyodide has pyjobqueue."""
    pattern = r"<!-- offline-page -->\s*```js\n(.*?)```"
    block = re.search(pattern, README.read_text(), re.DOTALL)
    assert block, "the README has no offline page"
    check = 'window.readmeResult = pyodide.runPython("import pyjobqueue\\npyjobqueue.__name__");'
    # The build's snapshot imported the console's modules too: not for this page.
    check += """
window.readmeModules = pyodide.runPython(
  "import sys\\n[name for name in sys.modules if name.startswith('console_')]").toJs();"""
    page = f"""<!doctype html><meta charset="utf-8"><title>README page</title>
<link rel="icon" href="data:,">
<script type="module">
{block.group(1)}{check}
</script>"""
    return page.encode()


def test_the_readme_page_starts_offline(offline_context: BrowserContext) -> None:
    site = webserver.Site(WEB_MOUNTS, files={"/readme.html": readme_page()}, log_requests=False)
    with webserver.serving(site, "offline test server") as base:
        page = offline_context.new_page()
        page.goto(f"{base}/readme.html")
        page.wait_for_function("() => window.readmeResult", timeout=READY_TIMEOUT_MS)
        assert page.evaluate("() => window.readmeResult") == "pyjobqueue"
    assert page.evaluate(STARTED_FROM_SNAPSHOT)
    assert page.evaluate("() => window.readmeModules") == []
    offline_context.set_offline(True)  # and no server listens any more
    page.reload()
    page.wait_for_function("() => window.readmeResult", timeout=READY_TIMEOUT_MS)
    assert page.evaluate(STARTED_FROM_SNAPSHOT)
    assert page.evaluate("() => window.readmeResult") == "pyjobqueue"
