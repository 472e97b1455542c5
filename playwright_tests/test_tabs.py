"""The console across reloads and tabs: persistence, live events, leader hand-over.

The tests share one browser context (its HTTP cache keeps Pyodide compiled) and each
works on a queue of its own (`?queue=`): its own jobs, leader lock and channels.
"""

from __future__ import annotations

from console_tab import ConsoleTab
from playwright.sync_api import BrowserContext, expect


def test_reload_keeps_the_jobs_and_finishes_the_one_it_interrupted(
    console_context: BrowserContext, queue_name: str
) -> None:
    tab = ConsoleTab.open(console_context, queue_name)
    tab.expect_role("leader")
    (done,) = tab.submit("hash", rounds=50_000)
    tab.expect_status(done, "COMPLETED")
    output = tab.job(done).locator(".result").inner_text()
    (interrupted,) = tab.submit("wait", seconds=2, max_retries=2)
    tab.wait_progress_above(interrupted, 0)

    tab.reload()

    tab.expect_role("leader")
    assert tab.job_ids() == [interrupted, done]
    expect(tab.job(done)).to_have_attribute("data-status", "COMPLETED")
    expect(tab.job(done).locator(".result")).to_have_text(output)
    # The new page's server took the lead and re-ran the job the old page left running.
    tab.expect_status(interrupted, "COMPLETED")
    expect(tab.job(interrupted).locator(".attempts")).to_have_text("after 2 attempts")
    expect(tab.job(interrupted).locator(".result")).to_have_text('{"waited_seconds":2}')


def test_second_tab_sees_jobs_progress_and_aborts_live(
    console_context: BrowserContext, queue_name: str
) -> None:
    leader, other = ConsoleTab.open_two(console_context, queue_name)
    expect(other.badge).to_contain_text(f"tab {leader.tab_id} runs the jobs")

    # Submitted in the standby tab, run by the leader's worker, followed live in both.
    (job_id,) = other.submit("primes", limit=30_000_000)
    leader.expect_status(job_id, "COMPLETED")
    other.expect_status(job_id, "COMPLETED")
    for tab in (leader, other):
        expect(tab.job(job_id).locator(".result")).to_have_text(
            '{"primes":1857859,"largest":29999999}'
        )
    seen = other.progress_seen(job_id)
    assert len({value for value in seen if 0 < value < 100}) >= 3, f"no live progress: {seen}"

    # Aborted from the standby tab while it runs in the leader's worker.
    (running,) = leader.submit("wait", seconds=600)
    other.wait_progress_above(running, 0)
    other.job(running).locator(".action.abort").click()
    for tab in (leader, other):
        tab.expect_status(running, "FAILED")
        expect(tab.job(running).locator(".result")).to_contain_text("AbortSignalJobError")
    assert leader.stat("total") == other.stat("total") == "2"

    # Deleting finished jobs in one tab empties the other's list too.
    other.page.locator("#clear-finished").click()
    for tab in (other, leader):
        expect(tab.page.locator("#job-list li.job")).to_have_count(0)
        expect(tab.page.locator("#empty")).to_have_text("No jobs yet: submit one on the left.")
        expect(tab.page.locator('[data-stat="total"]')).to_have_text("0")


def test_closing_the_leader_tab_hands_the_queue_to_the_other_tab(
    console_context: BrowserContext, queue_name: str
) -> None:
    first, second = ConsoleTab.open_two(console_context, queue_name)
    (flaky,) = second.submit("flaky", failures=2, delay_ms=0, max_retries=2)
    second.expect_status(flaky, "COMPLETED")  # run by the first tab's server: 2 retries
    for tab in (first, second):
        expect(tab.page.locator('[data-stat="retried"]')).to_have_text("2")
    (job_id,) = second.submit("wait", seconds=2, max_retries=2)
    second.wait_progress_above(job_id, 0)  # running in the first tab's worker

    first.page.close()

    second.expect_role("leader")
    expect(second.badge).to_have_text("Leader · this tab runs the jobs")
    second.expect_status(job_id, "COMPLETED")
    expect(second.job(job_id).locator(".attempts")).to_have_text("after 2 attempts")
    expect(second.job(job_id).locator(".result")).to_have_text('{"waited_seconds":2}')
    # The figures come from the stored jobs, not from the leader's server: the new
    # leader's count goes on from the old one's (2, and the interrupted attempt).
    expect(second.page.locator('[data-stat="retried"]')).to_have_text("3")
    expect(second.page.locator('[data-stat="average"]')).not_to_have_text("\N{EN DASH}")
    # And it goes on with new work.
    (new_job,) = second.submit("hash", rounds=10_000)
    second.expect_status(new_job, "COMPLETED")
