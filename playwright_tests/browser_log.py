"""BrowserLog: every error a browser context reports, so that a test can fail on it.

It records console messages of type "error" (from pages and their workers: a context's
console event carries both), uncaught page errors, and warnings that carry a Python
traceback (Pyodide writes Python's stderr, where `logging` prints, as warnings). A page
whose renderer crashes is noted apart (`crashes`), with the machine's memory at that
moment, and printed at once, so that a test failing on "Target crashed" shows it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import BrowserContext, ConsoleMessage, Page, WebError


def memory_report() -> str:
    """The machine's available memory and the resident size of its Chromium processes."""
    fields = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    resident_kb = processes = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:  # the process has ended
            continue
        if "\nName:\tchrom" not in "\n" + text:
            continue
        processes += 1
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                resident_kb += int(line.split()[1])
    return (
        f"MemAvailable {fields.get('MemAvailable')}, {processes} Chromium processes "
        f"resident {resident_kb // 1024} MB"
    )


class BrowserLog:
    """Errors reported by the watched browser contexts, in order."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.crashes: list[str] = []

    def watch(self, context: BrowserContext) -> None:
        """Record the errors of every page and worker of `context` from now on."""
        context.on("console", self._on_console)
        context.on("weberror", self._on_web_error)
        context.on("page", lambda page: page.on("crash", self._on_crash))
        for page in context.pages:
            page.on("crash", self._on_crash)

    def _on_console(self, message: ConsoleMessage) -> None:
        text = message.text
        if message.type == "error" or (message.type == "warning" and "Traceback" in text):
            where = message.location.get("url", "") if message.location else ""
            self.problems.append(f"console.{message.type}: {text} ({where})")

    def _on_web_error(self, error: WebError) -> None:
        self.problems.append(f"uncaught error: {error.error}")

    def _on_crash(self, page: Page) -> None:
        # Not a problem by itself: some tests crash a tab on purpose (a leader that dies),
        # and an unplanned crash fails its test anyway ("Target crashed").
        crash = f"page crashed: {page.url} ({memory_report()})"
        print(crash, file=sys.stderr, flush=True)
        self.crashes.append(crash)

    def take(self) -> list[str]:
        """The problems recorded since the last call."""
        problems, self.problems = self.problems, []
        return problems

    def assert_clean(self) -> None:
        """Fail when a problem was recorded since the last `take`."""
        problems = self.take()
        assert not problems, "the browser reported errors:\n" + "\n".join(problems)
