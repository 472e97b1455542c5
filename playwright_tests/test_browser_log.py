"""The error log that every Playwright test relies on does catch errors (so it can fail)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from browser_log import BrowserLog
from playwright.sync_api import Browser, BrowserContext, Page
from playwright.sync_api import Error as PlaywrightError


@contextlib.contextmanager
def watched_blank_page(
    browser: Browser, browser_context_args: dict[str, Any], log: BrowserLog
) -> Iterator[tuple[BrowserContext, Page]]:
    """A new context watched by `log` and a blank page of it; the context closes after."""
    context = browser.new_context(**browser_context_args)
    log.watch(context)
    try:
        page = context.new_page()
        page.goto("about:blank")
        yield context, page
    finally:
        context.close()


def test_browser_log_records_console_errors_uncaught_errors_and_python_tracebacks(
    browser: Browser, browser_context_args: dict[str, Any]
) -> None:
    log = BrowserLog()
    with watched_blank_page(browser, browser_context_args, log) as (context, page):
        with page.expect_console_message(lambda m: m.text == "plain warning"):
            page.evaluate("console.warn('plain warning')")
        with page.expect_console_message(lambda m: m.text == "boom"):
            page.evaluate("console.error('boom')")
        with page.expect_console_message(lambda m: m.text.startswith("Traceback")):
            page.evaluate("console.warn('Traceback (most recent call last):\\nValueError: x')")
        with context.expect_event("weberror"):
            page.evaluate("setTimeout(() => { throw new Error('uncaught one') })")

    problems = log.take()

    assert problems[0].startswith("console.error: boom")
    assert problems[1].startswith("console.warning: Traceback")
    assert "uncaught one" in problems[2]
    assert len(problems) == 3  # the plain warning is not a problem
    log.assert_clean()


def test_browser_log_records_a_crashed_page_with_the_machines_memory(
    browser: Browser, browser_context_args: dict[str, Any]
) -> None:
    log = BrowserLog()
    with watched_blank_page(browser, browser_context_args, log) as (_context, page):  # noqa: SIM117 (page comes from the first)
        with page.expect_event("crash"), contextlib.suppress(PlaywrightError):
            page.goto("chrome://crash")  # Chromium's own page that crashes its renderer

    assert log.take() == []  # a crash is not a problem by itself: some tests crash a tab
    assert len(log.crashes) == 1, log.crashes
    assert log.crashes[0].startswith("page crashed: "), log.crashes
    assert "Chromium processes resident" in log.crashes[0]
