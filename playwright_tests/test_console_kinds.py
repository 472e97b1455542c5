"""The console and issue 11: each job's kind and priority, the pause switch, tracebacks.

The first tests share one tab on a queue of their own; the pause test opens two tabs on
another queue. Any browser error fails the test during which it was logged, and so does
a Python traceback in a page's or worker's console: a failed attempt's traceback
belongs on its job's card, not there.
"""

from __future__ import annotations

from typing import Any

import pytest
from console_tab import ConsoleTab, fail_on_browser_errors, module_console_tab
from playwright.sync_api import BrowserContext, expect

# A negative cannot be waited for, only watched: this is four of the leader's poll
# intervals (250 ms), after the job_available hint that wakes its workers at once.
STAYS_PENDING_SECONDS = 1.0

# Records the job events (and pause events) the page's storage feed delivers, in order,
# as [name, job_id] (job_id 0 for queue_paused and queue_resumed).
RECORD_FEED = """
events = []
await storage.subscribe(lambda event, seen=events: seen.append([str(event.name), event.job_id]))
"""


tab = module_console_tab("test_console_kinds")
no_browser_errors = fail_on_browser_errors()


def submit_with_priority(tab: ConsoleTab, priority: str, task: str, **params: Any) -> list[int]:
    """Submit through the form with `priority` typed in its field (then back to 0)."""
    tab.page.locator("#priority").fill(priority)
    try:
        return tab.submit(task, **params)
    finally:
        tab.page.locator("#priority").fill("0")


def stored(tab: ConsoleTab, job_id: int, *fields: str) -> list[Any]:
    """Fields of a job as the page's storage holds it."""
    names = ", ".join(f"job.{name}" for name in fields)
    result: list[Any] = tab.run_python(f"job = await storage.get({job_id})\n[{names}]")
    return result


# Long enough for an event to reach a tab, short of the console's 10 s full re-read: a
# switch that flips within it followed the event.
EVENT_TIMEOUT_MS = 5_000


def switch_shows(tab: ConsoleTab, paused: bool, timeout: float | None = None) -> None:
    """Wait until the tab's pause switch shows the queue paused or running."""
    switch = tab.page.locator("#pause-switch")
    expected = "true" if paused else "false"
    expect(switch).to_have_attribute("aria-checked", expected, timeout=timeout)
    expect(switch).to_have_text("Queue paused" if paused else "Queue running")
    expect(switch).to_be_enabled()


def test_each_job_card_shows_its_kind_and_priority(tab: ConsoleTab) -> None:
    (prime,) = submit_with_priority(tab, "7", "primes", limit=1000)
    batch = submit_with_priority(tab, "-3", "hash", count=2, rounds=10)
    # Without kind= (as from the browser console): stored without a kind, run as ConsoleJob.
    unkinded = tab.run_python(
        "handle = await client.submit({'task': 'primes', 'limit': 100})\nhandle.id"
    )

    for job_id, kind, priority in [
        (prime, "count_primes", "priority 7"),
        (batch[0], "hash_chain", "priority -3"),
        (batch[1], "hash_chain", "priority -3"),
        (unkinded, "no kind", "priority 0"),
    ]:
        row = tab.job(job_id)
        expect(row.locator(".job-kind")).to_have_text(kind)
        expect(row.locator(".job-priority")).to_have_text(priority)
        tab.expect_status(job_id, "COMPLETED")
    assert stored(tab, prime, "kind", "priority") == ["count_primes", 7]
    assert stored(tab, batch[1], "kind", "priority") == ["hash_chain", -3]
    assert stored(tab, unkinded, "kind", "priority") == [None, 0]
    expect(tab.job(prime).locator(".job-task")).to_have_text("Count primes")
    expect(tab.job(unkinded).locator(".result")).to_have_text('{"primes":25,"largest":97}')


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("1.5", "ValueError: priority must be a whole number, got '1.5'"),
        ("", "ValueError: priority must be a whole number, got ''"),
        (
            "2147483648",
            "ValueError: priority must be between -2,147,483,648 and 2,147,483,647",
        ),
    ],
)
def test_a_bad_priority_is_refused_with_a_message_and_nothing_is_stored(
    tab: ConsoleTab, typed: str, message: str
) -> None:
    size_before = tab.run_python("await client.size(None)")
    # The browser's own form check would stop these; the page's Python must refuse them too.
    tab.page.evaluate("document.querySelector('#submit-form').noValidate = true")
    tab.page.locator('.task-choice[data-task="hash"]').click()
    tab.page.locator("#priority").fill(typed)
    try:
        tab.page.locator("#submit").click()
        expect(tab.page.locator(".toast").filter(has_text=message)).to_have_count(1)
    finally:
        tab.page.locator("#priority").fill("0")
        tab.page.evaluate("document.querySelector('#submit-form').noValidate = false")
    assert tab.run_python("await client.size(None)") == size_before


def test_higher_priority_jobs_start_first_once_the_queue_resumes(tab: ConsoleTab) -> None:
    switch_shows(tab, False)
    tab.page.locator("#pause-switch").click()
    switch_shows(tab, True)
    tab.run_python(RECORD_FEED)
    try:
        # Submitted while paused, lowest priority first: they all wait.
        (low,) = submit_with_priority(tab, "1", "wait", seconds=1)
        (high,) = submit_with_priority(tab, "9", "wait", seconds=1)
        (middle,) = submit_with_priority(tab, "5", "wait", seconds=1)
        for job_id in (low, high, middle):
            tab.expect_status(job_id, "PENDING")
            expect(tab.job(job_id).locator(".message")).to_have_text("waiting: the queue is paused")
    finally:
        tab.page.locator("#pause-switch").click()
    switch_shows(tab, False)
    for job_id in (low, high, middle):
        tab.expect_status(job_id, "COMPLETED")

    events = tab.run_python("events")
    starts = [job_id for name, job_id in events if name == "job_start"]
    # Two workers: the two highest priorities start together, the lowest after them.
    assert sorted(starts[:2]) == sorted([high, middle]) and starts[2:] == [low], events
    assert events.index(["queue_resumed", 0]) < events.index(["job_start", high]), events


def test_pausing_in_one_tab_pauses_every_tab_until_resumed(
    console_context: BrowserContext, queue_name: str
) -> None:
    leader, other = ConsoleTab.open_two(console_context, queue_name)
    for tab in (leader, other):
        switch_shows(tab, False)
    leader.run_python(RECORD_FEED)

    other.page.locator("#pause-switch").click()  # in the tab that does not run the jobs

    switch_shows(other, True)
    switch_shows(leader, True, timeout=EVENT_TIMEOUT_MS)
    assert leader.run_python("await client.is_paused()") is True
    (job_id,) = other.submit("hash", rounds=20_000)
    for tab in (other, leader):
        tab.expect_status(job_id, "PENDING")
        expect(tab.job(job_id).locator(".message")).to_have_text("waiting: the queue is paused")
    still = leader.run_python(
        f"import asyncio\nawait asyncio.sleep({STAYS_PENDING_SECONDS})\n"
        f"job = await storage.get({job_id})\n[job.status.value, job.run_attempts]"
    )
    assert still == ["PENDING", 0]
    # The flag is stored: a tab opened again reads it.
    other.reload()
    switch_shows(other, True)

    leader.page.locator("#pause-switch").click()

    switch_shows(leader, False)
    switch_shows(other, False, timeout=EVENT_TIMEOUT_MS)
    for tab in (leader, other):
        tab.expect_status(job_id, "COMPLETED")
        expect(tab.job(job_id).locator(".attempts")).to_have_text("after 1 attempt")
    events = leader.run_python("events")
    assert events.index(["queue_paused", 0]) < events.index(["queue_resumed", 0])
    assert events.index(["queue_resumed", 0]) < events.index(["job_start", job_id]), events


def test_a_failed_job_shows_its_traceback_collapsed_on_its_card(tab: ConsoleTab) -> None:
    (job_id,) = tab.submit("fail", steps=3)
    tab.expect_status(job_id, "FAILED")
    row = tab.job(job_id)
    box = row.locator("details.traceback")
    text = box.locator(".traceback-text")

    expect(box).to_be_visible()
    expect(text).to_be_hidden()  # collapsed
    box.locator("summary").click()
    expect(text).to_be_visible()
    expect(text).to_contain_text("Traceback (most recent call last):")
    expect(text).to_contain_text("ConsoleFailure: gave up after 3 steps, as this task always does")
    (traceback,) = stored(tab, job_id, "error_traceback")
    assert text.text_content() == traceback
    expect(row.locator(".result")).to_have_text(
        "ConsoleFailure: gave up after 3 steps, as this task always does"
    )

    # A retry clears it; the attempt fails again and shows its own.
    row.locator(".action.retry").click()
    tab.expect_status(job_id, "FAILED")
    expect(box).to_be_visible()
    expect(text).to_contain_text("ConsoleFailure")


def test_a_job_waiting_to_retry_shows_the_traceback_of_its_failed_attempt(
    tab: ConsoleTab,
) -> None:
    (job_id,) = tab.submit("flaky", failures=1, delay_ms=60_000, max_retries=1)
    row = tab.job(job_id)
    expect(row.locator(".attempts")).to_have_text("attempt 1 of 2")
    tab.expect_status(job_id, "PENDING")
    box = row.locator("details.traceback")
    box.locator("summary").click()
    expect(box.locator(".traceback-text")).to_contain_text(
        "RetryableJobError: attempt 1 of 2 failed on purpose"
    )

    row.locator(".action.abort").click()  # rather than wait a minute for its retry
    tab.expect_status(job_id, "FAILED")
    expect(row.locator(".result")).to_contain_text("AbortSignalJobError")
    # The card was filled again; the box the user opened stays open, with the traceback
    # of the attempt that raised (an abort of a waiting job raises nothing).
    expect(box).to_have_attribute("open", "")
    expect(box.locator(".traceback-text")).to_contain_text("RetryableJobError")


def test_a_completed_job_has_no_traceback(tab: ConsoleTab) -> None:
    (job_id,) = tab.submit("flaky", failures=1, delay_ms=0, max_retries=1)
    tab.expect_status(job_id, "COMPLETED")
    expect(tab.job(job_id).locator("details.traceback")).to_be_hidden()
    assert stored(tab, job_id, "error_traceback") == [None]


def test_the_demo_schedule_shows_its_next_tick_and_its_jobs_run(
    shared_context: BrowserContext,
) -> None:
    scheduled = ConsoleTab.open(shared_context, "test_console_schedule", schedule="1")
    try:
        scheduled.expect_role("leader")
        item = scheduled.page.locator('#schedules [data-schedule="hash every 1 s"]')
        expect(item).to_be_visible(timeout=30_000)
        expect(item.locator(".schedule-next")).to_contain_text("next tick")
        # A tick has run: the schedule says when, and its job is done (a hash chain).
        expect(item.locator(".schedule-last")).to_contain_text("last", timeout=30_000)
        scheduled.page.wait_for_function(
            "() => Number(document.querySelector('[data-stat=\"completed\"]').textContent) >= 2",
            timeout=30_000,
        )
        kinds = scheduled.page.locator("#job-list .job-kind").all_inner_texts()
        assert kinds and all("hash_chain" in kind for kind in kinds), kinds
    finally:
        scheduled.page.close()
