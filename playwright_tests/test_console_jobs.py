"""The console's jobs (web/py/console_jobs.py) on CPython, in a real server on memory storage,
and the page's Console (web/py/console_page.py) with a stand-in for its view.

Both modules are plain pyjobqueue, so they run here as in the browser; these checks are
quick and pin down what the page tests only see through the DOM. Playwright's sync
API keeps an event loop running in this thread for the whole session, so each scenario
runs in a fresh event loop on a thread of its own (`scenario`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeAlias

import pytest

from pyjobqueue import (
    AbortSignalJobError,
    Job,
    JobContext,
    JobError,
    JobQueueClient,
    JobQueueServer,
    JobStatus,
    PermanentJobError,
    RetryableJobError,
)
from pyjobqueue.storage import InMemoryQueueStorage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web" / "py"))
import console_jobs
import console_model
import console_page

Client: TypeAlias = JobQueueClient[dict[str, Any], dict[str, Any]]


def scenario(test: Callable[[Client], Awaitable[None]]) -> Callable[[], None]:
    """A test that runs `test(client)` against a server of the console's job classes (as
    its worker runs them) on memory storage."""

    async def with_server() -> None:
        storage = InMemoryQueueStorage(console_jobs.QUEUE_NAME)
        server: JobQueueServer[Any, Any] = JobQueueServer(
            console_jobs.JOB_CLASSES, storage=storage, worker_count=console_jobs.WORKER_COUNT
        )
        async with storage, server:
            client: Client = JobQueueClient(storage=storage)
            client.attach(server)
            await test(client)

    def run() -> None:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, with_server()).result()

    run.__name__, run.__doc__ = test.__name__, test.__doc__
    return run


async def run(client: Client, task: str, max_retries: int = 0, **params: int) -> Any:
    """Submit one task, of its kind as the page does, and wait for its output."""
    handle = await client.submit(
        console_jobs.make_input(task, params),
        kind=console_jobs.TASKS[task].kind,
        max_retries=max_retries,
    )
    return await asyncio.wait_for(handle.wait_for(), 30)


@scenario
async def test_primes_counts_the_primes_below_the_limit(client: Client) -> None:
    assert await run(client, "primes", limit=1000) == {"primes": 168, "largest": 997}
    assert await run(client, "primes", limit=200_000) == {"primes": 17984, "largest": 199999}
    assert await run(client, "primes", limit=10) == {"primes": 4, "largest": 7}


@scenario
async def test_primes_reports_progress_up_to_100(client: Client) -> None:
    seen: list[float] = []
    client.on(
        "job_progress", lambda queue, job_id, progress, message, details: seen.append(progress)
    )
    await run(client, "primes", limit=100)
    assert seen[-1] == 100


@scenario
async def test_hash_applies_sha256_round_after_round(client: Client) -> None:
    digest = b"pyjobqueue"
    for _ in range(3001):
        digest = hashlib.sha256(digest).digest()
    assert await run(client, "hash", rounds=3000) == {"sha256": digest.hex(), "rounds": 3000}


@scenario
async def test_flaky_succeeds_after_its_failures_with_one_retry_event_each(client: Client) -> None:
    retries: list[int] = []
    client.on("job_retry", lambda queue, job_id, run_after: retries.append(job_id))
    assert await run(client, "flaky", max_retries=2, failures=2, delay_ms=0) == {
        "succeeded_on_attempt": 3
    }
    assert len(retries) == 2


@scenario
async def test_flaky_fails_when_retries_run_out(client: Client) -> None:
    with pytest.raises(PermanentJobError, match="Max retries reached"):
        await run(client, "flaky", max_retries=1, failures=3, delay_ms=0)


@scenario
async def test_fail_fails_at_once_with_its_own_error_and_traceback(client: Client) -> None:
    handle = await client.submit(
        console_jobs.make_input("fail", {"steps": 3}), kind="always_fails", max_retries=5
    )
    with pytest.raises(JobError, match="gave up after 3 steps"):
        await handle.wait_for()
    job = await client.get_job(handle.id)
    assert job is not None
    assert (job.error_code, job.run_attempts) == ("ConsoleFailure", 1)
    assert job.error_traceback is not None
    assert job.error_traceback.startswith("Traceback (most recent call last):")
    assert "in fail" in job.error_traceback  # the task function's frame
    assert job.error_traceback.rstrip().endswith(
        "ConsoleFailure: gave up after 3 steps, as this task always does"
    )


@scenario
async def test_every_task_is_stored_and_run_as_its_own_kind(client: Client) -> None:
    small = {"primes": {"limit": 1000}, "hash": {"rounds": 10}, "wait": {"seconds": 1}}
    for name, task in console_jobs.TASKS.items():
        handle = await client.submit(
            console_jobs.make_input(name, small.get(name, {})), kind=task.kind, max_retries=0
        )
        with contextlib.suppress(JobError):  # flaky and fail fail, as they should
            await asyncio.wait_for(handle.wait_for(), 30)
    for task in console_jobs.TASKS.values():
        finished = [
            *await client.peek(JobStatus.COMPLETED, kind=task.kind),
            *await client.peek(JobStatus.FAILED, kind=task.kind),
        ]
        assert [job.input["task"] for job in finished] == [task.name]
    assert await client.size(JobStatus.COMPLETED, kind="count_primes") == 1
    assert await client.size(JobStatus.FAILED, kind="always_fails") == 1


@scenario
async def test_a_job_stored_without_a_kind_still_runs_as_console_job(client: Client) -> None:
    # What older consoles stored, and what `client.submit(input)` in the browser stores.
    handle = await client.submit({"task": "primes", "limit": 1000})
    assert await asyncio.wait_for(handle.wait_for(), 30) == {"primes": 168, "largest": 997}
    job = await client.get_job(handle.id)
    assert job is not None and job.kind is None


@scenario
async def test_a_job_of_a_task_kind_runs_that_task_whatever_its_input_says(
    client: Client,
) -> None:
    handle = await client.submit({"task": "hash", "limit": 1000}, kind="count_primes")
    assert await asyncio.wait_for(handle.wait_for(), 30) == {"primes": 168, "largest": 997}


def test_job_classes_have_distinct_kinds_with_console_job_first() -> None:
    classes = console_jobs.JOB_CLASSES
    assert classes[0] is console_jobs.ConsoleJob
    kinds = [job_class.kind for job_class in classes]
    assert len(set(kinds)) == len(kinds)
    assert kinds[1:] == [task.kind for task in console_jobs.TASKS.values()]
    assert [entry["kind"] for entry in console_jobs.catalogue()] == kinds[1:]


@pytest.mark.parametrize(
    ("task", "params"), [("wait", {"seconds": 600}), ("primes", {"limit": 2_000_000_000})]
)
def test_long_tasks_stop_when_aborted(task: str, params: dict[str, int]) -> None:
    async def abort_while_running(client: Client) -> None:
        handle = await client.submit(console_jobs.make_input(task, params))
        progressed = asyncio.Event()
        handle.on_progress(lambda progress, message, details: progressed.set())
        await asyncio.wait_for(progressed.wait(), 30)
        await handle.abort()
        with pytest.raises(AbortSignalJobError):
            await asyncio.wait_for(handle.wait_for(), 30)

    scenario(abort_while_running)()


def test_make_input_fills_in_defaults_and_keeps_given_values() -> None:
    assert console_jobs.make_input("flaky", {"failures": 1}) == {
        "task": "flaky",
        "failures": 1,
        "delay_ms": 500,
    }
    assert console_jobs.make_input("primes", {"limit": "1000"}) == {"task": "primes", "limit": 1000}
    assert console_jobs.make_input("wait", {"seconds": 2.0}) == {"task": "wait", "seconds": 2}


@pytest.mark.parametrize(
    ("task", "params", "message"),
    [
        ("nope", {}, "unknown task 'nope'"),
        (None, {}, "unknown task None"),
        ("primes", [], "params must be an object"),
        ("primes", {"limt": 5}, "primes has no parameter 'limt'"),
        ("primes", {"limit": 5}, "limit must be between 10 and 2,000,000,000"),
        ("primes", {"limit": 10.5}, "limit must be a whole number"),
        ("primes", {"limit": "ten"}, "limit must be a whole number"),
        ("primes", {"limit": True}, "limit must be a whole number"),
        ("primes", {"limit": None}, "limit must be a whole number"),
        ("hash", {"rounds": float("nan")}, "rounds must be a whole number"),
        ("wait", {"seconds": 0}, "seconds must be between 1 and 3,600"),
    ],
)
def test_make_input_refuses_bad_requests(task: object, params: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        console_jobs.make_input(task, params)


def test_catalogue_lists_every_task_as_json_with_valid_defaults() -> None:
    catalogue = json.loads(json.dumps(console_jobs.catalogue()))
    assert [task["name"] for task in catalogue] == list(console_jobs.TASKS)
    for task in catalogue:
        defaults = {param["name"]: param["default"] for param in task["params"]}
        assert console_jobs.make_input(task["name"], defaults) == {"task": task["name"], **defaults}


@scenario
async def test_unknown_task_in_a_stored_input_fails_the_job(client: Client) -> None:
    handle = await client.submit({"task": "gone"}, max_retries=0)
    with pytest.raises(JobError, match="unknown task 'gone'"):
        await handle.wait_for()


@pytest.mark.parametrize(
    ("value", "priority"),
    [(0, 0), (7, 7), ("-3", -3), (" 12 ", 12), (2**31 - 1, 2**31 - 1), ("-2147483648", -(2**31))],
)
def test_priority_field_takes_whole_numbers_of_32_bits(value: object, priority: int) -> None:
    assert console_jobs.PRIORITY.check(value) == priority


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "priority must be a whole number, got ''"),
        ("high", "priority must be a whole number, got 'high'"),
        ("1.5", "priority must be a whole number, got '1.5'"),
        (None, "priority must be a whole number"),
        (True, "priority must be a whole number"),
        (2**31, "priority must be between -2,147,483,648 and 2,147,483,647"),
        ("-2147483649", "priority must be between -2,147,483,648 and 2,147,483,647"),
    ],
)
def test_priority_field_refuses_anything_else(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        console_jobs.PRIORITY.check(value)


class FakeView:
    """What the page's JavaScript view is told, as Python values."""

    def __init__(self) -> None:
        self.shown: dict[int, dict[str, Any]] = {}
        self.count_rows: list[list[Any]] = []
        self.stats_shown: dict[str, Any] = {}
        self.paused_shown: list[bool] = []
        self.schedules_shown: list[dict[str, Any]] = []
        self.additions = 0
        self.changed = asyncio.Event()

    def job(self, job_json: str) -> None:
        job = json.loads(job_json)
        self.shown[job["id"]] = job
        self.changed.set()

    def added(self) -> None:
        self.additions += 1
        self.changed.set()

    def reload(self) -> None:
        pass

    def shown_ids(self) -> str:
        return json.dumps(list(self.shown))

    def progress(self, job_id: int, progress: float, message: str) -> None:
        pass

    def counts(self, rows_json: str) -> None:
        self.count_rows = json.loads(rows_json)
        self.changed.set()

    def stats(self, stats_json: str) -> None:
        self.stats_shown = json.loads(stats_json)

    def schedules(self, schedules_json: str) -> None:
        self.schedules_shown = json.loads(schedules_json)

    def paused(self, paused: bool) -> None:
        self.paused_shown.append(paused)
        self.changed.set()

    def counted(self) -> dict[str, int]:
        """The counts shown, by status."""
        totals: dict[str, int] = {}
        for _kind, status, count in self.count_rows:
            totals[status] = totals.get(status, 0) + count
        return totals

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait until `condition()` holds, woken by what the view is told."""
        while not condition():
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 5)


def page_scenario(
    test: Callable[[console_page.Console, FakeView, Client], Awaitable[None]],
) -> Callable[[], None]:
    """A test of the page's Console on memory storage, with another client on the queue
    (another tab) and no server: what is submitted stays PENDING."""

    async def with_console() -> None:
        storage = InMemoryQueueStorage(console_jobs.QUEUE_NAME)
        async with storage:
            other: Client = JobQueueClient(storage=storage)
            view = FakeView()
            console = console_page.Console(storage, view)
            await console.start()
            try:
                await test(console, view, other)
            finally:
                await console.stop()

    def run() -> None:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, with_console()).result()

    run.__name__, run.__doc__ = test.__name__, test.__doc__
    return run


@page_scenario
async def test_page_submits_each_task_with_its_kind_and_the_priority_typed(
    console: console_page.Console, view: FakeView, other: Client
) -> None:
    request = {"task": "hash", "params": {"rounds": 10}, "priority": "5"}
    (one,) = json.loads(await console.submit(json.dumps(request)))
    batch = json.loads(await console.submit(json.dumps({**request, "count": 3, "priority": -2})))
    mix = json.loads(await console.submit_mix())

    jobs = {job_id: await other.get_job(job_id) for job_id in [one, *batch, *mix]}
    assert [(job.kind, job.priority) for job in jobs.values() if job is not None] == [
        ("hash_chain", 5),
        *[("hash_chain", -2)] * 3,
        *[(task.kind, 0) for task in console_jobs.TASKS.values()],
    ]
    page = json.loads(await console.page(json.dumps({"status": "", "kind": "", "limit": 50})))
    shown = {job["id"]: job for job in page["jobs"]}
    assert (shown[one]["kind"], shown[one]["priority"]) == ("hash_chain", 5)
    assert shown[batch[0]]["error_traceback"] is None
    await view.until(lambda: view.counted() == {"PENDING": 9})


@pytest.mark.parametrize(
    ("priority", "message"),
    [
        ("1.5", "priority must be a whole number, got '1.5'"),
        ("", "priority must be a whole number, got ''"),
        ("2147483648", "priority must be between -2,147,483,648 and 2,147,483,647"),
    ],
)
def test_page_refuses_a_bad_priority_and_stores_nothing(priority: str, message: str) -> None:
    async def refuse(console: console_page.Console, view: FakeView, other: Client) -> None:
        for count in (1, 4):
            request: dict[str, Any] = {"task": "hash", "count": count, "priority": priority}
            with pytest.raises(ValueError, match=re.escape(message)):
                await console.submit(json.dumps(request))
        assert await other.size(None) == 0

    page_scenario(refuse)()


@page_scenario
async def test_page_shows_the_stored_pause_flag_and_follows_every_change(
    console: console_page.Console, view: FakeView, other: Client
) -> None:
    assert view.paused_shown == [False]  # read at start

    async def shown(paused: bool) -> None:
        while view.paused_shown[-1] is not paused:
            view.changed.clear()
            await asyncio.wait_for(view.changed.wait(), 5)  # well before the 10 s re-read

    await other.pause()  # another tab pauses: its event reaches this page
    await shown(True)
    await console.set_paused(False)
    await shown(False)
    assert not await other.is_paused()
    await console.set_paused(False)  # nothing changes, and nothing says otherwise
    assert view.paused_shown[-1] is False
    await console.set_paused(True)
    assert await other.is_paused()
    await shown(True)
    await console.sync()  # the periodic re-read agrees
    assert view.paused_shown[-1] is True


def test_page_reads_a_pause_stored_before_it_started() -> None:
    async def paused_before(console: console_page.Console, view: FakeView, other: Client) -> None:
        view2 = FakeView()
        second = console_page.Console(console.storage, view2)
        await other.pause()
        await second.start()
        try:
            assert view2.paused_shown[0] is True
        finally:
            await second.stop()

    page_scenario(paused_before)()


def before_each_call(target: Any, name: str, hook: Callable[..., Awaitable[None]]) -> None:
    """From now on `await hook(*args)` runs before each call of the async method `name`
    of `target` (with its arguments), then the method itself."""
    method = getattr(target, name)

    async def hooked(*args: Any, **kwargs: Any) -> Any:
        await hook(*args, **kwargs)
        return await method(*args, **kwargs)

    setattr(target, name, hooked)


def count_reads(storage: Any) -> list[int]:
    """The ids of the jobs `storage.get` reads from now on."""
    reads: list[int] = []

    async def note(job_id: int) -> None:
        reads.append(job_id)

    before_each_call(storage, "get", note)
    return reads


@page_scenario
async def test_page_counts_follow_events_and_read_only_what_an_event_lacks(
    console: console_page.Console, view: FakeView, other: Client
) -> None:
    handles = await other.submit_batch([{"n": n} for n in range(60)], kind="nobody")
    await view.until(lambda: view.counted() == {"PENDING": 60})  # found, not announced
    page = json.loads(await console.page(json.dumps({"limit": 50})))  # the first page
    assert [job["id"] for job in page["jobs"]] == [h.id for h in reversed(handles)][:50]
    reads = count_reads(console.storage)

    await other.abort(handles[0].id)  # not on the page: its job_error says enough
    await view.until(lambda: view.counted() == {"PENDING": 59, "FAILED": 1})
    assert reads == []
    await other.abort(handles[-1].id)  # on the page: its card shows the error, read it
    await view.until(lambda: view.shown.get(handles[-1].id, {}).get("status") == "FAILED")
    assert reads == [handles[-1].id]
    assert view.counted() == {"PENDING": 58, "FAILED": 2}


def hold_reads(console: console_page.Console) -> tuple[asyncio.Event, asyncio.Event]:
    """From now on the console's reads of pages (list_jobs) wait: `held` is set when
    one does, and they go on once `go_on` is set."""
    held, go_on = asyncio.Event(), asyncio.Event()

    async def hold(*_args: Any, **_kwargs: Any) -> None:
        held.set()
        await go_on.wait()

    before_each_call(console.storage, "list_jobs", hold)
    return held, go_on


class RetriedInAnHour(Job[dict[str, Any], None]):
    """Fails its attempt, to be tried again in an hour (so it stays put after one retry)."""

    async def execute(self, input: dict[str, Any], context: JobContext) -> None:
        raise RetryableJobError("not yet", retry_date=datetime.now(UTC) + timedelta(hours=1))


@page_scenario
async def test_a_retry_that_comes_while_the_page_reads_its_job_counts_once(
    console: console_page.Console, view: FakeView, other: Client
) -> None:
    # The page's first read of a job is held until the job has started and been
    # retried: the read shows the retry, and so did the events that came meanwhile.
    held, go_on = hold_reads(console)
    retried = asyncio.Event()
    # Subscribed after the page: when this listener has an event, the page has it.
    await console.storage.subscribe(
        lambda event: retried.set() if event.name == "job_retry" else None
    )
    await other.submit({"n": 1}, max_retries=3)
    await held.wait()  # the page looks for the new job
    server: JobQueueServer[Any, Any] = JobQueueServer(RetriedInAnHour, storage=console.storage)
    async with server:
        await asyncio.wait_for(retried.wait(), 10)
    go_on.set()
    await view.until(lambda: view.counted() == {"PENDING": 1})
    await console.settled()
    assert view.stats_shown["retried_jobs"] == 1


def count_full_reads(console: console_page.Console) -> list[None]:
    """One entry per full read of the queue the console makes from now on."""
    reads: list[None] = []

    async def note() -> None:
        reads.append(None)

    before_each_call(console, "_sync", note)
    return reads


@page_scenario
async def test_the_check_reads_the_queue_again_after_a_change_no_event_told(
    console: console_page.Console, view: FakeView, other: Client
) -> None:
    handles = await other.submit_batch([{"n": n} for n in range(3)], kind="nobody")
    await view.until(lambda: view.counted() == {"PENDING": 3})
    await console.settled()
    reads = count_full_reads(console)
    await console._check_once()
    assert await other.storage.delete(handles[0].id)  # no event says so
    await console._check_once()  # one difference may be a read that passed an event
    await console.settled()
    assert (reads, view.counted()) == ([], {"PENDING": 3})
    await console._check_once()  # two in a row: read it all again
    await view.until(lambda: view.counted() == {"PENDING": 2})
    assert reads == [None]


@page_scenario
async def test_the_check_waits_while_the_page_is_still_finding_new_jobs(
    console: console_page.Console, view: FakeView, other: Client
) -> None:
    # The page's search for new jobs is held: storage has them, the page not yet.
    held, go_on = hold_reads(console)
    reads = count_full_reads(console)
    await other.submit_batch([{"n": n} for n in range(3)], kind="nobody")
    await held.wait()
    for _ in range(3):
        await console._check_once()  # the counts differ, for a reason the page knows
    go_on.set()
    await view.until(lambda: view.counted() == {"PENDING": 3})
    await console.settled()
    assert reads == []


def test_retries_and_run_times_come_from_the_stored_jobs_in_every_tab() -> None:
    async def two_tabs(client: Client) -> None:
        first = FakeView()
        console = console_page.Console(client.storage, first)
        await console.start()
        try:
            await run(client, "flaky", max_retries=2, failures=2, delay_ms=0)
            await first.until(lambda: first.stats_shown.get("retried_jobs") == 2)
            assert first.stats_shown["average_processing_time"] is not None
            # A tab opened later (or one that takes the lead) says the same.
            second = FakeView()
            later = console_page.Console(client.storage, second)
            await later.start()
            await later.stop()
            assert second.stats_shown["retried_jobs"] == 2
            assert second.counted() == first.counted() == {"COMPLETED": 1}
        finally:
            await console.stop()

    scenario(two_tabs)()


def test_the_model_applies_events_and_keeps_what_changed_during_a_full_read() -> None:
    model = console_model.QueueModel()
    job: Job[Any, Any] = Job(input={"task": "hash"}, id=7, kind="hash_chain")
    model.learn(job)
    for name in ("job_start", "job_retry", "job_start", "job_complete"):
        assert model.apply(name, 7, 100.0)
    assert not model.apply("job_start", 8, 100.0)  # unknown: it has to be read
    assert model.count_rows() == [["hash_chain", "COMPLETED", 1]]
    assert model.stats() == {"retried_jobs": 1, "average_processing_time": 0.0}

    model.begin_rebuild()
    assert model.apply("job_start", 7, 200.0)  # retried elsewhere, started meanwhile
    stale: Job[Any, Any] = Job(input={}, id=7, kind="hash_chain")
    model.end_rebuild([stale])  # read before the start: the event's state stays
    assert model.count_rows() == [["hash_chain", "PROCESSING", 1]]
    model.begin_rebuild()
    model.end_rebuild([])  # deleted meanwhile
    assert model.count_rows() == [] and model.stats()["retried_jobs"] == 0


def test_jobs_released_by_a_completion_are_counted_as_pending() -> None:
    async def release(client: Client) -> None:
        view = FakeView()
        console = console_page.Console(client.storage, view)
        await console.start()
        try:
            await client.pause()  # both are stored before the first runs
            first = await client.submit(console_jobs.make_input("hash", {"rounds": 10}))
            # Of a kind no server here runs: once released it stays PENDING.
            await client.submit({"n": 1}, kind="nobody", depends_on=[first])
            await view.until(lambda: view.counted() == {"PENDING": 1, "WAITING": 1})
            await client.resume()
            await asyncio.wait_for(first.wait_for(), 30)
            # No event says that the second job stopped waiting: the completion makes
            # the page look.
            await view.until(lambda: view.counted() == {"COMPLETED": 1, "PENDING": 1})
        finally:
            await console.stop()

    scenario(release)()
