"""`pyjobqueue console` in Chromium, on a SQLite and a PostgreSQL queue that a real
`pyjobqueue worker` process runs: live progress, abort, retry, pause, the token gate,
read-only mode, and the screenshot of the README.

Jobs move only when the test opens their gates (files), so every wait is on a page
state or a line the worker printed, never on time.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_log import BrowserLog
from playwright.sync_api import Browser, Locator, Page, ViewportSize, expect

from tests.cli_apps.harness import Cli, Running, cli_on

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "console-test-token-1"
VIEWPORT: ViewportSize = {"width": 1360, "height": 900}  # the browser console's suites' size


@pytest.fixture(params=["sqlite", "postgres"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    """Commands on a fresh queue of each storage; their processes killed afterwards."""
    with cli_on(request.param, tmp_path, "console") as commands:
        yield commands


def start_console(cli: Cli, *args: str) -> tuple[Running, str]:
    """`pyjobqueue console --port 0 --json ARGS`, running; (the process, its URL)."""
    running = cli.start("console", "--port", "0", "--json", *args)
    line = running.wait_for(lambda line: line.get("event") == "console_start")
    return running, str(line["url"])


@pytest.fixture
def log() -> Iterator[BrowserLog]:
    """Errors the pages report; any fails the test."""
    problems = BrowserLog()
    yield problems
    problems.assert_clean()


@pytest.fixture
def open_page(browser: Browser, log: BrowserLog) -> Iterator[Any]:
    """Opens the console at a URL in a fresh context (its own cookies) and waits for it."""
    contexts = []

    def open_at(url: str) -> Page:
        context = browser.new_context(viewport=VIEWPORT)
        log.watch(context)
        contexts.append(context)
        page = context.new_page()
        page.goto(url)
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(page.locator("#leader-badge")).to_have_attribute("data-role", "leader")
        return page

    yield open_at
    for context in contexts:
        context.close()


def submit(cli: Cli, value: Any, *args: str) -> int:
    [job_id] = [int(line) for line in cli.ok("submit", *args, json.dumps(value)).stdout.split()]
    return job_id


def row(page: Page, job_id: int) -> Locator:
    return page.locator(f'li.job[data-job-id="{job_id}"]')


def progress(page: Page, job_id: int) -> Locator:
    return row(page, job_id).locator(".progress")


def test_progress_moves_live_abort_and_retry_work(cli: Cli, tmp_path: Path, open_page: Any) -> None:
    worker = cli.worker("cli_jobs:GatedSteps")
    _console, url = start_console(cli)
    page = open_page(url)
    expect(page.locator("#server-list .server")).to_have_count(1)  # the worker's heartbeat

    gates = tmp_path / "gates"
    gates.mkdir()
    job = submit(cli, {"gates": str(gates), "steps": [25, 50, 75]}, "--max-retries", "0")
    # A job submitted by another process shows up without a reload, and starts.
    expect(row(page, job)).to_have_attribute("data-status", "PROCESSING")
    (gates / "25").touch()
    expect(progress(page, job)).to_have_attribute("aria-valuenow", "25")
    expect(row(page, job).locator(".message")).to_have_text("passed gate 25")
    (gates / "50").touch()
    expect(progress(page, job)).to_have_attribute("aria-valuenow", "50")

    row(page, job).locator(".action.abort").click()
    expect(row(page, job)).to_have_attribute("data-status", "FAILED")
    expect(row(page, job).locator(".result.error")).to_contain_text("AbortSignalJobError")
    worker.event("job_error", job)

    row(page, job).locator(".action.retry").click()
    (gates / "75").touch()
    expect(row(page, job)).to_have_attribute("data-status", "COMPLETED")
    expect(row(page, job).locator(".result.output")).to_contain_text('"attempt":1')
    expect(progress(page, job)).to_have_attribute("aria-valuenow", "100")
    assert cli.job(job)["output"] == {"gates": 3, "attempt": 1}
    expect(page.locator('[data-stat="completed"]')).to_have_text("1")
    # One completed and one failed (the abort) as this console saw them finish.
    expect(page.locator('[data-stat="failure-rate"]')).to_have_text("50.0%")


def test_pause_stops_the_worker_claiming_until_resumed(
    cli: Cli, tmp_path: Path, open_page: Any
) -> None:
    worker = cli.worker("cli_jobs:echo")
    _console, url = start_console(cli)
    page = open_page(url)
    switch = page.locator("#pause-switch")
    expect(switch).to_have_attribute("data-paused", "false")
    switch.click()
    expect(switch).to_have_attribute("data-paused", "true")
    worker.event("queue_paused")  # the worker took note: its claims take nothing now
    assert cli.json("status")["paused"] is True

    held = [submit(cli, f"held {n}") for n in range(2)]
    for job in held:
        expect(row(page, job)).to_have_attribute("data-status", "PENDING")
        expect(row(page, job).locator(".message")).to_have_text("waiting: the queue is paused")

    assert len(cli.json("jobs", "--status", "pending")) == 2
    before_resume = len(worker.lines)
    switch.click()
    expect(switch).to_have_attribute("data-paused", "false")
    for job in held:
        expect(row(page, job)).to_have_attribute("data-status", "COMPLETED")
    started = [int(line["job_id"]) for line in worker.lines if line.get("event") == "job_start"]
    assert sorted(started) == held
    assert all(line.get("event") != "job_start" for line in worker.lines[:before_resume])


def test_disable_delete_and_purge_ask_first_and_lookups_find_jobs(cli: Cli, open_page: Any) -> None:
    _console, url = start_console(cli)  # no worker: the jobs stay where the test puts them
    run = [submit(cli, f"run job {n}", "--run-id", "import-7") for n in range(3)]
    other = submit(cli, "another", "--kind", "shout")
    page = open_page(url)
    expect(page.locator("li.job")).to_have_count(4)

    row(page, run[0]).locator(".action.disable").click()
    expect(row(page, run[0])).to_have_attribute("data-status", "DISABLED")

    row(page, run[0]).locator(".action.delete").click()
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(row(page, run[0])).to_have_count(1)
    row(page, run[0]).locator(".action.delete").click()
    dialog.get_by_role("button", name="Yes, do it").click()
    expect(row(page, run[0])).to_have_count(0)
    assert cli.run("show", str(run[0])).returncode != 0

    page.locator("#lookup-run").fill("import-7")
    page.get_by_role("button", name="Find").click()
    expect(page.locator("li.job")).to_have_count(2)
    row(page, run[1]).locator(".batch").click()  # abort the run: asks first
    dialog.get_by_role("button", name="Yes, do it").click()
    expect(row(page, run[1])).to_have_attribute("data-status", "FAILED")
    expect(row(page, run[2])).to_have_attribute("data-status", "FAILED")

    page.locator("#lookup-run").fill("")
    page.locator("#lookup-id").fill(str(other))
    page.get_by_role("button", name="Find").click()
    expect(page.locator("li.job")).to_have_count(1)
    expect(row(page, other).locator(".job-kind")).to_have_text("shout")
    page.get_by_role("button", name="Show all").click()
    expect(page.locator("li.job")).to_have_count(3)

    page.locator("#status-filter").select_option("FAILED")
    expect(page.locator("li.job")).to_have_count(2)
    page.locator("#purge-form input[value=FAILED]").check()
    page.locator("#purge-hours").fill("0")
    page.get_by_role("button", name="Purge finished jobs").click()
    dialog.get_by_role("button", name="Yes, do it").click()
    expect(page.locator(".toast")).to_contain_text("2 finished jobs deleted")
    expect(page.locator("li.job")).to_have_count(0)
    assert [job["id"] for job in cli.json("jobs")] == [other]


def test_pages_walk_the_queue_by_id_with_status_and_kind_filters(cli: Cli, open_page: Any) -> None:
    _console, url = start_console(cli)
    inputs = "".join(json.dumps({"n": n}) + "\n" for n in range(120))
    ids = [int(line) for line in cli.ok("submit", "--kind", "bulk", stdin=inputs).stdout.split()]
    page = open_page(url)
    jobs = page.locator("li.job")
    expect(jobs).to_have_count(50)
    expect(jobs.first).to_have_attribute("data-job-id", str(ids[-1]))
    page.locator("#older").click()
    expect(jobs.first).to_have_attribute("data-job-id", str(ids[-51]))
    expect(page.locator("#page-label")).to_have_text("51\N{EN DASH}100 of 120")
    page.locator("#older").click()
    expect(jobs).to_have_count(20)
    expect(page.locator("#older")).to_be_disabled()
    page.locator("#newer").click()
    expect(jobs.first).to_have_attribute("data-job-id", str(ids[-51]))
    page.locator("#kind-filter").select_option("bulk")
    expect(jobs).to_have_count(50)
    expect(jobs.first).to_have_attribute("data-job-id", str(ids[-1]))
    page.locator("#status-filter").select_option("COMPLETED")
    expect(page.locator("#empty")).to_have_text("No jobs match this filter.")


def test_schedules_and_servers_show_and_new_ticks_appear_live(cli: Cli, open_page: Any) -> None:
    worker = cli.worker("cli_jobs:Tick", "--schedules", "cli_jobs:SCHEDULES", "-w", "2")
    _console, url = start_console(cli)
    page = open_page(url)
    schedule = page.locator('#schedules li[data-schedule="every-second"]')
    expect(schedule.locator(".schedule-next")).to_contain_text("next tick")
    server = page.locator("#server-list .server")
    expect(server).to_have_count(1)
    expect(server.locator(".server-kinds")).to_have_text("tick")
    expect(server.locator(".server-workers")).to_have_text("2 workers")
    # Ticks are enqueued by the worker's process: each one shows up on its own.
    first = int(worker.event("job_complete")["job_id"])
    expect(row(page, first)).to_have_attribute("data-status", "COMPLETED")
    expect(schedule.locator(".schedule-last")).to_contain_text("last")
    later = int(
        worker.wait_for(
            lambda line: line.get("event") == "job_complete" and int(line["job_id"]) > first
        )["job_id"]
    )
    expect(row(page, later)).to_have_attribute("data-status", "COMPLETED")
    expect(row(page, later).locator(".job-kind")).to_have_text("tick")


def test_the_token_is_needed_for_the_page_the_api_and_the_stream(cli: Cli, open_page: Any) -> None:
    _console, url = start_console(cli, "--token", TOKEN)
    assert url.endswith(f"/?token={TOKEN}")
    base = url.split("?")[0]
    page = open_page(url)
    # The token became a cookie: it left the address bar, and the live stream carries it.
    assert "token" not in page.url
    job = submit(cli, "with a token")
    expect(row(page, job)).to_have_attribute("data-status", "PENDING")
    refused = page.context.browser
    assert refused is not None
    stranger = refused.new_context()
    try:
        for path in ("", "api/state", "api/jobs", "api/events", "static/server.js"):
            response = stranger.request.get(base + path)
            assert response.status == 401, path
        wrong = stranger.request.get(base + "api/state?token=console-test-token-2")
        assert wrong.status == 401
        action = stranger.request.post(base + "api/actions/pause", data="{}")
        assert action.status == 401
    finally:
        stranger.close()
    assert cli.json("status")["paused"] is False


def test_read_only_hides_and_refuses_every_action(cli: Cli, tmp_path: Path, open_page: Any) -> None:
    _console, url = start_console(cli, "--read-only")
    failed = submit(cli, {"message": "no"}, "--max-retries", "0")
    cli.ok("abort", str(failed))
    pending = submit(cli, "waits")
    page = open_page(url)
    expect(page.locator("#read-only")).to_be_visible()
    expect(row(page, failed)).to_have_attribute("data-status", "FAILED")
    expect(row(page, pending)).to_have_attribute("data-status", "PENDING")
    expect(page.locator("li.job .action:visible")).to_have_count(0)
    expect(page.locator("#purge-box")).to_be_hidden()
    expect(page.locator("#pause-switch")).to_be_disabled()
    headers = {"Content-Type": "application/json", "X-Pyjobqueue-Console": "1"}
    for name, body in (("retry", {"id": failed}), ("pause", {}), ("delete", {"id": pending})):
        response = page.request.post(
            url + f"api/actions/{name}", data=json.dumps(body), headers=headers
        )
        assert response.status == 403, name
        assert "read-only" in response.json()["error"]
    assert cli.job(failed)["status"] == "FAILED"
    assert cli.job(pending)["status"] == "PENDING"
    assert cli.json("status")["paused"] is False


@pytest.fixture
def file_cli(tmp_path: Path) -> Iterator[Cli]:
    """Commands on ./jobs.db of the test's directory (a relative URL: a short label)."""
    if importlib.util.find_spec("aiosqlite") is None:
        pytest.skip("aiosqlite is not installed")
    commands = Cli("sqlite:///jobs.db", "thumbnails", tmp_path)
    yield commands
    commands.close()


def test_a_screenshot_of_a_busy_queue(file_cli: Cli, tmp_path: Path, open_page: Any) -> None:
    """The README's picture (docs/console-server.png is a copy of what this prints)."""
    cli = file_cli
    gates = tmp_path / "gates"
    gates.mkdir()
    worker = cli.worker("cli_jobs:GatedSteps", "cli_jobs:Fails", "cli_jobs:echo", "-w", "3")
    _console, url = start_console(cli)
    for n in range(4):
        submit(cli, f"report {n}", "--kind", "echo", "--run-id", "nightly")
    failing = submit(cli, {"message": "the upstream API said 503"}, "--kind", "Fails")
    (gates / "40").touch()
    running = [
        # The worker runs in tmp_path: a relative path keeps the input short.
        submit(cli, {"gates": "gates", "steps": [40, 80, 100]}, "--kind", "GatedSteps")
        for _ in range(2)
    ]
    waiting = submit(cli, "after the others", "--kind", "echo", "--priority", "-5")
    worker.event("job_error", failing)
    page = open_page(url)
    for job in running:
        expect(progress(page, job)).to_have_attribute("aria-valuenow", "40")
    expect(row(page, failing)).to_have_attribute("data-status", "FAILED")
    expect(row(page, waiting)).to_have_attribute("data-status", re.compile("PENDING|COMPLETED"))
    expect(page.locator("#storage-label")).to_contain_text("sqlite:///jobs.db")
    shot = tmp_path / "console-server.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")
    (gates / "80").touch()
    (gates / "100").touch()
    for job in running:
        expect(row(page, job)).to_have_attribute("data-status", "COMPLETED")


def test_jobs_waiting_for_others_show_what_they_wait_for_and_run_after_them(
    cli: Cli, open_page: Any
) -> None:
    _console, url = start_console(cli)  # the worker starts later: the jobs wait
    first = submit(cli, "first")
    second = submit(cli, "second")
    last = submit(cli, "last", "--depends-on", f"{first},{second}")
    page = open_page(url)
    expect(row(page, last)).to_have_attribute("data-status", "WAITING")
    expect(row(page, last).locator(".status")).to_have_text("waiting")
    expect(row(page, last).locator(".message")).to_have_text(
        f"waiting for 2 of the jobs it depends on (#{first}, #{second})"
    )
    expect(page.locator('[data-stat="pending"]')).to_have_text("3")
    page.locator("#status-filter").select_option("WAITING")
    expect(page.locator("li.job")).to_have_count(1)
    page.locator("#status-filter").select_option("")
    worker = cli.worker("cli_jobs:echo")
    worker.event("job_complete", last)
    expect(row(page, last)).to_have_attribute("data-status", "COMPLETED")
