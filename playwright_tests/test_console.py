"""The job-queue console in one tab: submit, progress, abort, retries, errors, Python access.

These tests share one tab (booting Pyodide twice per tab is the slow part); each works
on its own jobs. Any browser error fails the test during which it was logged.
"""

from __future__ import annotations

import re
from pathlib import Path

from console_tab import ConsoleTab, fail_on_browser_errors, module_console_tab
from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[1]
WEB_APP_DOC = ROOT / "docs" / "web-app.md"
README = ROOT / "README.md"


tab = module_console_tab("test_console")
no_browser_errors = fail_on_browser_errors()


def test_submitted_job_shows_live_progress_up_to_100_percent_and_its_output(
    tab: ConsoleTab,
) -> None:
    (job_id,) = tab.submit("primes", limit=30_000_000)
    row = tab.job(job_id)

    tab.expect_status(job_id, "COMPLETED")
    expect(row.locator(".percent")).to_have_text("100%")
    expect(row.locator(".result")).to_have_text('{"primes":1857859,"largest":29999999}')
    expect(row.locator(".status")).to_have_text("completed")
    expect(row.locator(".attempts")).to_have_text("after 1 attempt")
    seen = tab.progress_seen(job_id)
    # Progress events move the bar several times a second (reads alone would not).
    assert len({value for value in seen if 0 < value < 100}) >= 3, f"bar barely moved: {seen}"
    assert seen == sorted(seen) and seen[-1] == 100
    expect(row.locator(".action.abort")).to_be_hidden()


def test_abort_stops_a_running_job_while_the_page_stays_responsive(tab: ConsoleTab) -> None:
    (job_id,) = tab.submit("primes", limit=2_000_000_000)  # minutes of work
    tab.wait_progress_above(job_id, 0)

    # The job computes in the Web Worker: the page's timers keep running meanwhile, and the
    # page's Python has no server at all.
    tab.page.evaluate("window.beats = 0; window.beat = setInterval(() => window.beats++, 20)")
    tab.page.wait_for_function("window.beats >= 25", timeout=30_000)
    tab.page.evaluate("clearInterval(window.beat)")
    assert tab.job(job_id).get_attribute("data-status") == "PROCESSING"
    assert tab.run_python("import sys; 'console_worker' in sys.modules") is False

    tab.job(job_id).locator(".action.abort").click()

    tab.expect_status(job_id, "FAILED")
    expect(tab.job(job_id).locator(".result")).to_contain_text("AbortSignalJobError")
    expect(tab.job(job_id).locator(".action.retry")).to_be_visible()
    percent = int(tab.job(job_id).locator(".percent").inner_text().rstrip("%"))
    assert 0 < percent < 100


def test_retryable_job_retries_until_it_succeeds(tab: ConsoleTab) -> None:
    tab.run_python(
        "retried = []\nclient.on('job_retry', lambda q, job_id, at: retried.append(job_id))"
    )

    (job_id,) = tab.submit("flaky", failures=2, delay_ms=200, max_retries=3)

    tab.expect_status(job_id, "COMPLETED")
    row = tab.job(job_id)
    expect(row.locator(".result")).to_have_text('{"succeeded_on_attempt":3}')
    expect(row.locator(".attempts")).to_have_text("after 3 attempts")
    assert tab.run_python(f"retried.count({job_id})") == 2


def test_retryable_job_fails_when_its_retries_run_out(tab: ConsoleTab) -> None:
    (job_id,) = tab.submit("flaky", failures=5, delay_ms=0, max_retries=1)

    tab.expect_status(job_id, "FAILED")
    row = tab.job(job_id)
    expect(row.locator(".result")).to_have_text("PermanentJobError: Max retries reached")
    expect(row.locator(".attempts")).to_have_text("after 2 attempts")


def test_failing_job_shows_its_error_and_runs_again_on_retry(tab: ConsoleTab) -> None:
    tab.run_python("starts = []\nclient.on('job_start', lambda q, job_id: starts.append(job_id))")
    (job_id,) = tab.submit("fail", steps=5)

    tab.expect_status(job_id, "FAILED")
    row = tab.job(job_id)
    expect(row.locator(".result")).to_have_text(
        "ConsoleFailure: gave up after 5 steps, as this task always does"
    )
    row.locator(".action.retry").click()

    tab.page.wait_for_function(
        f"() => pyodide.runPython('starts.count({job_id})') === 2", timeout=30_000
    )
    tab.expect_status(job_id, "FAILED")
    expect(row.locator(".attempts")).to_have_text("after 1 attempt")


def test_bad_parameters_are_refused_with_a_message_and_nothing_is_stored(tab: ConsoleTab) -> None:
    size_before = tab.run_python("await client.size(None)")
    tab.page.locator('.task-choice[data-task="hash"]').click()
    tab.page.locator('#submit-form input[name="rounds"]').fill("0")
    # The browser's own form check would stop this; the page's Python must refuse it too.
    tab.page.evaluate("document.querySelector('#submit-form').noValidate = true")
    tab.page.locator("#submit").click()

    expect(tab.page.locator(".toast")).to_have_text(
        "ValueError: rounds must be between 1 and 100,000,000"
    )
    assert tab.run_python("await client.size(None)") == size_before
    tab.page.evaluate("document.querySelector('#submit-form').noValidate = false")


def test_window_pyodide_drives_the_same_queue(tab: ConsoleTab) -> None:
    job_id, output = tab.run_python(
        "handle = await client.submit({'task': 'primes', 'limit': 1000})\n"
        "(handle.id, await handle.wait_for())"
    )

    assert output == {"primes": 168, "largest": 997}
    tab.expect_status(job_id, "COMPLETED")
    expect(tab.job(job_id).locator(".result")).to_have_text('{"primes":168,"largest":997}')


def browser_quick_starts() -> dict[str, str]:
    """The Python blocks marked `<!-- browser-quick-start -->` in the README and the docs."""
    blocks = {}
    for doc in (README, WEB_APP_DOC):
        pattern = r"<!-- browser-quick-start -->\s*```python\n(.*?)```"
        for index, code in enumerate(re.findall(pattern, doc.read_text(), re.DOTALL)):
            blocks[f"{doc.name} #{index + 1}"] = code
    assert f"{WEB_APP_DOC.name} #1" in blocks, f"{WEB_APP_DOC} has no browser quick start"
    return blocks


RUN_IN_FRESH_PYODIDE = """async (code) => {
  const { loadPyodide } = await import("/dist/pyodide/pyodide.mjs");
  const python = await loadPyodide({ indexURL: "/dist/pyodide/" });
  await python.loadPackage("micropip", { messageCallback: () => {} });
  const printed = [];
  // Pyodide's package loader says what it loads (our wheel's dependency tzdata, under
  // micropip.install): that is not the example's output.
  const loader = /^(Loading|Loaded|Didn't find package) /;
  python.setStdout({ batched: (line) => { if (!loader.test(line)) printed.push(line); } });
  await python.runPythonAsync(code);
  await python.runPythonAsync("await server.stop()");
  return printed;
}"""


def test_browser_quick_starts_of_the_docs_run_in_a_fresh_pyodide(
    tab: ConsoleTab, base_url: str
) -> None:
    for name, code in browser_quick_starts().items():
        code = code.replace("http://127.0.0.1:8000", base_url)
        printed = tab.page.evaluate(RUN_IN_FRESH_PYODIDE, code)
        assert printed == ["42"], name


def test_batches_are_listed_together_and_can_be_aborted_together(tab: ConsoleTab) -> None:
    batch = tab.submit("hash", count=3, rounds=20_000)
    for job_id in batch:
        tab.expect_status(job_id, "COMPLETED")
    run_ids = {tab.job(job_id).locator(".batch").inner_text() for job_id in batch}
    assert len(run_ids) == 1 and run_ids.pop().startswith("batch-")

    before = max(tab.job_ids())
    listed = len(tab.job_ids())  # counted before the click: the new rows may come at once
    tab.page.locator("#submit-mix").click()  # one job of each task, as one run
    tab.page.wait_for_function(
        "n => document.querySelectorAll('#job-list li.job').length >= n",
        arg=listed + 5,
        timeout=30_000,
    )
    mix = [job_id for job_id in tab.job_ids() if job_id > before]
    tab.job(mix[0]).locator(".batch").click()  # aborts every unfinished job of the run

    for job_id in mix:
        expect(tab.job(job_id)).to_have_attribute(
            "data-status", re.compile("COMPLETED|FAILED"), timeout=30_000
        )
    assert tab.run_python(f"(await client.get_job({mix[-1]})).error_code") == "AbortSignalJobError"


def test_stats_strip_counts_the_queue_and_the_screenshot_shows_it(
    tab: ConsoleTab, tmp_path: Path
) -> None:
    (flaky,) = tab.submit("flaky", failures=2, delay_ms=0, max_retries=2)
    (failing,) = tab.submit("fail", steps=3)
    tab.expect_status(flaky, "COMPLETED")
    tab.expect_status(failing, "FAILED")

    counts = tab.run_python(
        "from pyjobqueue import JobStatus\n{s.value: await client.size(s) for s in JobStatus}"
    )
    expect(tab.page.locator('[data-stat="total"]')).to_have_text(str(sum(counts.values())))
    expect(tab.page.locator('[data-stat="completed"]')).to_have_text(str(counts["COMPLETED"]))
    failed = counts["FAILED"] + counts["DISABLED"]
    expect(tab.page.locator('[data-stat="failed"]')).to_have_text(str(failed))
    assert int(tab.stat("retried")) >= 2  # counted by the leader's server

    shot = tmp_path / "console.png"
    tab.page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")
