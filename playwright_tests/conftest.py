"""Shared fixtures of the Playwright suites: Debian's Chromium, web/ served on 127.0.0.1,
and a log of every browser error that fails the test which produced it.

Nothing is downloaded: Playwright drives /usr/bin/chromium, and the only traffic is to
the test server. `python build.py test` assembles web/dist/pyodide/ before this runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_log import BrowserLog
from playwright.sync_api import Browser, BrowserContext, Playwright, expect

from buildtasks import bundle, chromium, webserver
from buildtasks.paths import WEB_MOUNTS

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
RUNTIME = WEB / "dist" / "pyodide"
VIEWPORT = {"width": 1360, "height": 900}
# Two Pyodides per tab on a busy 2-core machine: give DOM expectations room (default 5 s).
expect.set_options(timeout=15_000)


def check_runtime() -> None:
    """Fail with the fix when the Pyodide runtime has not been assembled."""
    if not (RUNTIME / "pyodide-lock.json").is_file() or not list(RUNTIME.glob("pyjobqueue-*.whl")):
        pytest.fail(
            f"{RUNTIME.relative_to(ROOT)} is missing or has no pyjobqueue wheel: "
            "run `python build.py test` (or `python build.py serve`) to assemble it"
        )
    missing_chromium = chromium.missing_reason()
    if missing_chromium is not None:
        pytest.fail(missing_chromium)


def site_without_build_snapshot(
    directory: Path, files: dict[str, bytes] | None = None
) -> webserver.Site:
    """web/ (and ``files``), with a runtime that lacks the build's memory snapshot (in
    ``directory``: its lock file without the snapshot's name, hard links to the other
    files), and the manifest of that runtime."""
    runtime = bundle.runtime_without_snapshot(directory / "pyodide", RUNTIME)
    manifest = f"self.PYJOBQUEUE_BUILD = {json.dumps(bundle.build_manifest(runtime))};\n"
    return webserver.Site(
        {**WEB_MOUNTS, "/dist/pyodide/": runtime},
        files={"/dist/build.js": manifest.encode(), **(files or {})},
        log_requests=False,
    )


@pytest.fixture(scope="session")
def web_server() -> Iterator[str]:
    """web/ served on 127.0.0.1 and a free port, in a thread; its base URL.

    The server is the one `build.py serve` runs, less its line per request.
    """
    check_runtime()
    with webserver.serving(webserver.Site(WEB_MOUNTS, log_requests=False)) as base:
        yield base


@pytest.fixture(scope="session")
def base_url(web_server: str) -> str:
    """Pages open relative to the test server (`page.goto("/")`)."""
    return web_server


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless, with no traffic of its own: the suites' one launcher."""
    launched = chromium.launch(playwright.chromium)
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, Any]:
    """The same launch for any pytest-playwright fixture that launches a browser itself."""
    return chromium.launch_options()


@pytest.fixture(scope="session")
def browser_context_args(base_url: str) -> dict[str, Any]:
    """Every context opens pages on the test server, in a laptop-sized window."""
    return {"base_url": base_url, "viewport": VIEWPORT}


@pytest.fixture(scope="session")
def session_log() -> BrowserLog:
    """The error log of the shared context."""
    return BrowserLog()


@pytest.fixture(scope="session")
def shared_context(
    browser: Browser, browser_context_args: dict[str, Any], session_log: BrowserLog
) -> Iterator[BrowserContext]:
    """One context for the console's tests; each test keeps to a queue of its own.

    Sharing it keeps the HTTP cache, so only the first tab compiles Pyodide from cold.
    """
    context = browser.new_context(**browser_context_args)
    session_log.watch(context)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def console_context(
    shared_context: BrowserContext, session_log: BrowserLog
) -> Iterator[BrowserContext]:
    """The shared context for one test: errors logged meanwhile fail it; its tabs close after."""
    before = set(shared_context.pages)
    yield shared_context
    for page in shared_context.pages:
        if page not in before:
            page.close()
    session_log.assert_clean()


@pytest.fixture
def queue_name(request: pytest.FixtureRequest) -> str:
    """A console queue of this test's own (`?queue=`), named after it."""
    return "test " + str(request.node.name)


@pytest.fixture
def browser_log() -> Iterator[BrowserLog]:
    """Records errors of the contexts it watches; the test fails if any was logged."""
    log = BrowserLog()
    yield log
    log.assert_clean()


@pytest.fixture
def watched_context(
    browser: Browser, browser_context_args: dict[str, Any], browser_log: BrowserLog
) -> Iterator[BrowserContext]:
    """A fresh context (its own IndexedDB, Web Locks, channels); its errors fail the test."""
    context = browser.new_context(**browser_context_args)
    browser_log.watch(context)
    try:
        yield context
    finally:
        context.close()
