"""The one way every suite starts a browser: Debian's Chromium, headless, driven by Playwright.

Nothing is downloaded (never ``playwright install``): Playwright drives
/usr/bin/chromium, and the flags keep Chromium from any traffic of its own. Playwright
is imported only when a browser is launched, so ``build.py`` (standard library only)
can import this module for the path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserType

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


class ChromiumMissing(RuntimeError):
    """/usr/bin/chromium is not installed."""


def missing_reason() -> str | None:
    """Why Chromium cannot be launched, with the fix, or None when it can."""
    if CHROMIUM.is_file():
        return None
    return f"{CHROMIUM} is missing: `apt-get install chromium` (python build.py test does)"


def launch_options() -> dict[str, Any]:
    """Keyword arguments of Playwright's ``BrowserType.launch`` for Debian's Chromium."""
    return {"executable_path": str(CHROMIUM), "args": list(CHROMIUM_ARGS), "headless": True}


def launch(browser_type: BrowserType) -> Browser:
    """Launch Debian's Chromium through a Playwright ``chromium`` browser type."""
    reason = missing_reason()
    if reason is not None:
        raise ChromiumMissing(reason)
    return browser_type.launch(**launch_options())


@contextlib.contextmanager
def launched() -> Iterator[Browser]:
    """A Chromium of its own (its own Playwright too) for the block; closed after it."""
    reason = missing_reason()
    if reason is not None:  # before starting Playwright's driver for nothing
        raise ChromiumMissing(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright.chromium)
        try:
            yield browser
        finally:
            browser.close()
