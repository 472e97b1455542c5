"""ConsoleTab: drives one tab of the job-queue console (web/) the way a person would.

Every wait is on a DOM state or a promise, with a timeout; none is a bare sleep.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from browser_log import BrowserLog
from playwright.sync_api import BrowserContext, Locator, Page, expect

# Two Pyodides boot per tab (page and worker); on a busy 2-core machine that can take a while.
READY_TIMEOUT_MS = 90_000
JOB_TIMEOUT_MS = 60_000

# Records every value each job's progress bar showed, so a test can tell that it moved.
RECORD_PROGRESS = """() => {
  window.progressSeen = {};
  const note = (row) => {
    const value = Number(row.querySelector('.progress').getAttribute('aria-valuenow'));
    (window.progressSeen[row.dataset.jobId] ??= []).push(value);
  };
  new MutationObserver((changes) => {
    for (const change of changes) {
      const row = change.target.closest && change.target.closest('li.job');
      if (row) note(row);
    }
  }).observe(document.querySelector('#job-list'), {
    subtree: true, attributes: true, attributeFilter: ['aria-valuenow'],
  });
}"""


def console_url(queue: str, **params: str) -> str:
    """The console's address for one queue (and other page parameters: schedule=N)."""
    return "/?" + urllib.parse.urlencode({"queue": queue, **params})


class ConsoleTab:
    """One open tab of the console."""

    def __init__(self, page: Page) -> None:
        self.page = page

    @classmethod
    def open(cls, context: BrowserContext, queue: str, **params: str) -> ConsoleTab:
        """Open the console of `queue` in a new tab of `context` and wait until it is up."""
        tab = cls(context.new_page())
        tab.page.goto(console_url(queue, **params))
        tab.wait_ready()
        return tab

    @classmethod
    def open_two(cls, context: BrowserContext, queue: str) -> tuple[ConsoleTab, ConsoleTab]:
        """Open two tabs at once (they boot in parallel); (the leader, the other one)."""
        tabs = [cls(context.new_page()) for _ in range(2)]
        for tab in tabs:
            tab.page.goto(console_url(queue))
        for tab in tabs:
            tab.wait_ready()
        roles = [tab.settled_role() for tab in tabs]
        assert sorted(roles) == ["leader", "standby"], roles
        leader = tabs[roles.index("leader")]
        return leader, tabs[1 - roles.index("leader")]

    def settled_role(self) -> str:
        """Wait until this tab leads, or knows which tab does; "leader" or "standby"."""
        self.page.wait_for_function(
            "() => { const badge = document.querySelector('#leader-badge');"
            " return badge.dataset.role === 'leader'"
            " || (badge.dataset.role === 'standby' && !!badge.dataset.leaderTab); }",
            timeout=READY_TIMEOUT_MS,
        )
        return str(self.badge.get_attribute("data-role"))

    def wait_ready(self) -> None:
        """Wait until the page's and the worker's Pythons are both up (the page is ready
        first: window.pyjobqueueReady, then window.pyjobqueueWorker)."""
        self.page.wait_for_function(
            "document.body.dataset.worker === 'started'"
            " || !document.querySelector('#fatal').hidden",
            timeout=READY_TIMEOUT_MS,
        )
        fatal = self.page.locator("#fatal")
        assert fatal.is_hidden(), f"the console did not start: {fatal.inner_text()}"
        self.page.evaluate(RECORD_PROGRESS)

    def reload(self) -> None:
        """Reload the tab and wait until it is up again."""
        self.page.reload()
        self.wait_ready()

    # -- the leader badge ------------------------------------------------------------------

    @property
    def badge(self) -> Locator:
        """The leader badge in the header."""
        return self.page.locator("#leader-badge")

    @property
    def tab_id(self) -> str:
        """The short id this tab shows in its header ("tab 3f2a" -> "3f2a")."""
        return self.page.locator("#tab-id").inner_text().removeprefix("tab ").strip()

    def expect_role(self, role: str, timeout: float = JOB_TIMEOUT_MS) -> None:
        """Wait until the badge says this tab is the leader or on standby."""
        expect(self.badge).to_have_attribute("data-role", role, timeout=timeout)

    # -- jobs ------------------------------------------------------------------------------

    def job_ids(self) -> list[int]:
        """Ids of the jobs listed, newest first."""
        ids: list[int] = self.page.eval_on_selector_all(
            "#job-list li.job", "rows => rows.map(row => Number(row.dataset.jobId))"
        )
        return ids

    def submit(
        self, task: str, *, count: int = 1, max_retries: int | None = None, **params: int
    ) -> list[int]:
        """Fill in and send the submit form; the ids of the new jobs, oldest first."""
        before = max(self.job_ids(), default=0)
        self.page.locator(f'.task-choice[data-task="{task}"]').click()
        form = self.page.locator("#submit-form")
        for name, value in params.items():
            form.locator(f'input[name="{name}"]').fill(str(value))
        form.locator('input[name="count"]').fill(str(count))
        if max_retries is not None:
            form.locator('input[name="max_retries"]').fill(str(max_retries))
        self.page.locator("#submit").click()
        self.page.wait_for_function(
            "([before, count]) => [...document.querySelectorAll('#job-list li.job')]"
            ".filter(row => Number(row.dataset.jobId) > before).length >= count",
            arg=[before, count],
            timeout=JOB_TIMEOUT_MS,
        )
        return sorted(job_id for job_id in self.job_ids() if job_id > before)

    def job(self, job_id: int) -> Locator:
        """The row of one job."""
        return self.page.locator(f'#job-list li.job[data-job-id="{job_id}"]')

    def expect_status(self, job_id: int, status: str, timeout: float = JOB_TIMEOUT_MS) -> None:
        """Wait until the job's row shows `status` (PENDING, PROCESSING, COMPLETED...)."""
        expect(self.job(job_id)).to_have_attribute("data-status", status, timeout=timeout)

    def wait_progress_above(self, job_id: int, percent: float) -> None:
        """Wait until the job's progress bar is past `percent`."""
        self.page.wait_for_function(
            "([id, percent]) => Number(document.querySelector("
            "`li.job[data-job-id='${id}'] .progress`)?.getAttribute('aria-valuenow')) > percent",
            arg=[job_id, percent],
            timeout=JOB_TIMEOUT_MS,
        )

    def progress_seen(self, job_id: int) -> list[float]:
        """Every value the job's progress bar took since the page was ready."""
        seen: list[float] = self.page.evaluate("id => window.progressSeen[id] || []", str(job_id))
        return seen

    def stat(self, name: str) -> str:
        """The text of one figure of the stats strip (pending, running, completed...)."""
        return self.page.locator(f'[data-stat="{name}"]').inner_text()

    # -- Python in the page ----------------------------------------------------------------

    def run_python(self, code: str) -> Any:
        """Run Python in the page's Pyodide (window.pyodide); its result as JSON."""
        return self.page.evaluate(
            """async (code) => {
              await window.pyjobqueueReady;
              const result = await window.pyodide.runPythonAsync(code);
              if (result && typeof result.toJs === 'function') {
                const value = result.toJs({ dict_converter: Object.fromEntries });
                result.destroy();
                return value;
              }
              return result;
            }""",
            code,
        )


def module_console_tab(queue_name: str) -> Any:
    """A module fixture `tab`: one console tab on a queue of the module's own (so it
    leads it), closed after the module."""

    @pytest.fixture(scope="module")
    def tab(shared_context: BrowserContext) -> Iterator[ConsoleTab]:
        opened = ConsoleTab.open(shared_context, queue_name)
        try:
            opened.expect_role("leader")
            yield opened
        finally:
            opened.page.close()

    return tab


def fail_on_browser_errors() -> Any:
    """An autouse fixture: the test during which a tab logged an error fails."""

    @pytest.fixture(autouse=True)
    def no_browser_errors(session_log: BrowserLog) -> Iterator[None]:
        yield
        session_log.assert_clean()

    return no_browser_errors
