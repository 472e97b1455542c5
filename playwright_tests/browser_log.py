"""BrowserLog: every error a browser context reports, so that a test can fail on it.

It records console messages of type "error" (from pages and their workers: a context's
console event carries both), uncaught page errors, and warnings that carry a Python
traceback (Pyodide writes Python's stderr, where `logging` prints, as warnings).
"""

from __future__ import annotations

from playwright.sync_api import BrowserContext, ConsoleMessage, WebError


class BrowserLog:
    """Errors reported by the watched browser contexts, in order."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def watch(self, context: BrowserContext) -> None:
        """Record the errors of every page and worker of `context` from now on."""
        context.on("console", self._on_console)
        context.on("weberror", self._on_web_error)

    def _on_console(self, message: ConsoleMessage) -> None:
        text = message.text
        if message.type == "error" or (message.type == "warning" and "Traceback" in text):
            where = message.location.get("url", "") if message.location else ""
            self.problems.append(f"console.{message.type}: {text} ({where})")

    def _on_web_error(self, error: WebError) -> None:
        self.problems.append(f"uncaught error: {error.error}")

    def take(self) -> list[str]:
        """The problems recorded since the last call."""
        problems, self.problems = self.problems, []
        return problems

    def assert_clean(self) -> None:
        """Fail when a problem was recorded since the last `take`."""
        problems = self.take()
        assert not problems, "the browser reported errors:\n" + "\n".join(problems)
