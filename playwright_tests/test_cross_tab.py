"""Two tabs of one browser: job events cross over BroadcastChannel, Web Locks elect one server.

Each tab is pyodide_tests/harness/tab.html: Pyodide with our wheel and a small remote
control (tab.py) that the test calls through `page.evaluate`. Everything runs against
the real IndexedDB, BroadcastChannel and Web Locks of Debian's Chromium.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page

from pyodide_tests import runner

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def harness_url() -> Iterator[str]:
    """The assembled runtime and the harness pages, served on 127.0.0.1."""
    with runner.serve() as base:
        yield base


class Tab:
    """One browser tab running pyjobqueue, driven from here."""

    def __init__(self, page: Page, name: str) -> None:
        self.page = page
        self.name = name

    def call(self, command: str, **arguments: Any) -> Any:
        """Run a command of tab.py in the tab; its result."""
        return self.page.evaluate(
            "([command, argumentsJson]) => window.tab.call(command, argumentsJson)",
            [command, json.dumps(arguments)],
        )


# How many times a tab whose renderer crashed while Pyodide started is opened again.
# Chromium's renderer has crashed (rarely, "Target crashed") on the first call into a
# freshly started Pyodide; that is the browser's fault, not the queue's, and these tests
# are about what the queue does across tabs once they run.
START_ATTEMPTS = 3


def open_tab(context: BrowserContext, base: str, name: str) -> Tab:
    """A new tab with Pyodide and pyjobqueue loaded."""
    for attempt in range(1, START_ATTEMPTS + 1):
        page = context.new_page()
        try:
            page.goto(f"{base}/harness/tab.html")
            page.wait_for_function(
                "window.tabReady === true || window.tabError !== undefined", timeout=120_000
            )
            assert page.evaluate("window.tabError || null") is None
            tab = Tab(page, name)
            tab.call("setup", name=name)
            return tab
        except Exception as error:
            if "crashed" not in str(error):
                raise
            print(f"tab {name}: the renderer crashed while starting (try {attempt}): {error}")
            with contextlib.suppress(Exception):
                page.close()
            if attempt == START_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def eventually(check: Callable[[], Any], timeout: float = 30) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout}s")
        time.sleep(0.05)


def names() -> tuple[str, str]:
    """A queue and a database of this test's own."""
    token = uuid.uuid4().hex[:10]
    return f"cross tab {token}", f"pyjobqueue-cross-tab-{token}"


def test_a_client_in_another_tab_gets_every_event_and_the_result(
    watched_context: BrowserContext, harness_url: str
) -> None:
    queue, database = names()
    worker_tab = open_tab(watched_context, harness_url, "A")
    client_tab = open_tab(watched_context, harness_url, "B")
    worker_tab.call("start_server", queue=queue, database=database, leader_lock=False)
    client_tab.call("connect_client", queue=queue, database=database)

    job_id = client_tab.call("submit", input={"n": 21})
    output = client_tab.call("wait_for", job_id=job_id, timeout=60)

    assert output == {"doubled": 42, "by": "A", "attempt": 1}
    seen = eventually(lambda: _names_of(client_tab, job_id, "job_complete"))
    assert seen == ["job_start", "job_progress", "job_complete"]
    events = client_tab.call("events")
    progress = next(event for event in events if event[0] == "job_progress")
    assert progress == ["job_progress", queue, job_id, 50, "halfway", {"tab": "A"}]
    assert worker_tab.call("stats") == {"completed": 1, "total": 1}


def test_two_tabs_share_the_work_and_never_run_a_job_twice(
    watched_context: BrowserContext, harness_url: str
) -> None:
    queue, database = names()
    tabs = [open_tab(watched_context, harness_url, name) for name in ("A", "B")]
    client = tabs[0]
    client.call("connect_client", queue=queue, database=database)
    job_ids = client.call("submit_batch", inputs=[{"n": n} for n in range(40)])
    for tab in tabs:  # both claim from the start: every claim is one readwrite transaction
        tab.call("start_server", queue=queue, database=database, leader_lock=False)

    outputs = [client.call("wait_for", job_id=job_id, timeout=60) for job_id in job_ids]

    assert [output["doubled"] for output in outputs] == [2 * n for n in range(40)]
    assert {output["attempt"] for output in outputs} == {1}
    completed = [tab.call("stats")["completed"] for tab in tabs]
    assert sum(completed) == 40
    print(f"jobs run per tab: {completed}")


def _names_of(tab: Tab, job_id: int, last: str) -> list[str] | None:
    """The event names a tab's client saw for a job, once `last` is among them."""
    seen = [event[0] for event in tab.call("events") if event[2] == job_id]
    return seen if last in seen else None


def _end_tab(tab: Tab, how: str) -> None:
    if how == "close":
        tab.page.close()
        return
    session = tab.page.context.new_cdp_session(tab.page)
    # expect_event pumps Playwright's events while it waits (a plain poll would not).
    # The renderer dies before it can answer the CDP call, hence the suppress.
    with tab.page.expect_event("crash", timeout=30_000), contextlib.suppress(Exception):
        session.send("Page.crash", timeout=2000)


@pytest.mark.parametrize("how", ["close", "crash"])
def test_one_tab_leads_and_another_takes_over_when_it_ends(
    watched_context: BrowserContext, harness_url: str, how: str
) -> None:
    queue, database = names()
    tabs = [open_tab(watched_context, harness_url, name) for name in ("A", "B")]
    for tab in tabs:
        tab.call("start_server", queue=queue, database=database, leader_lock=True)
        tab.call("watch_leadership")
    leader = eventually(lambda: next((tab for tab in tabs if tab.call("is_leader")), None))
    follower = next(tab for tab in tabs if tab is not leader)
    assert not follower.call("is_leader")

    # The follower's client submits a job that the leader starts and never finishes.
    follower.call("connect_client", queue=queue, database=database)
    job_id = follower.call("submit", input={"n": 5, "hold_in": leader.name})
    eventually(lambda: _names_of(follower, job_id, "job_progress"))
    assert follower.call("get_job", job_id=job_id)["status"] == "PROCESSING"
    assert not follower.call("is_leader")

    ended_at = time.time() * 1000
    _end_tab(leader, how)
    output = follower.call("wait_for", job_id=job_id, timeout=60)

    # The new leader recovered the job at once (its lease had a minute to run) and ran it.
    assert output == {"doubled": 10, "by": follower.name, "attempt": 2}
    assert follower.call("is_leader")
    assert "job_retry" in _names_of(follower, job_id, "job_complete")  # type: ignore[operator]
    took = follower.call("became_leader_at") - ended_at
    print(f"the lock passed to the other tab {took:.0f} ms after the leader's tab ended ({how})")


def test_two_tabs_running_one_schedule_enqueue_each_tick_exactly_once(
    watched_context: BrowserContext, harness_url: str
) -> None:
    queue, database = names()
    tabs = [open_tab(watched_context, harness_url, name) for name in ("A", "B")]
    for tab in tabs:  # no leader lock: both check every tick, each in its own tab
        tab.call("start_server", queue=queue, database=database, leader_lock=False, scheduled=True)
    tabs[0].call("connect_client", queue=queue, database=database)
    ticks = eventually(lambda: _at_least(tabs[0].call("scheduled_ticks"), 4), timeout=60)
    for tab in tabs:
        tab.call("stop_server")
    ticks = tabs[0].call("scheduled_ticks")
    assert len(ticks) == len(set(ticks)), f"a tick ran twice: {ticks}"
    seconds = [datetime.fromisoformat(tick).timestamp() for tick in ticks]
    assert all(b - a == 1 for a, b in itertools.pairwise(seconds)), ticks


def _at_least(ticks: list[str], count: int) -> list[str] | None:
    return ticks if len(ticks) >= count else None
