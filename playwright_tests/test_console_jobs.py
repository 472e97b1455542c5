"""The console's jobs (web/py/console_jobs.py) on CPython, in a real server on memory storage.

The module is plain pyjobqueue, so it runs here as in the browser's worker; these checks
are quick and pin down what the page tests only see through the DOM. Playwright's sync
API keeps an event loop running in this thread for the whole session, so each scenario
runs in a fresh event loop on a thread of its own (`scenario`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeAlias

import pytest

from pyjobqueue import (
    AbortSignalJobError,
    JobError,
    JobQueueClient,
    JobQueueServer,
    PermanentJobError,
)
from pyjobqueue.storage import InMemoryQueueStorage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web" / "py"))
import console_jobs

Client: TypeAlias = JobQueueClient[dict[str, Any], dict[str, Any]]


def scenario(test: Callable[[Client], Awaitable[None]]) -> Callable[[], None]:
    """A test that runs `test(client)` against a server of ConsoleJob on memory storage."""

    async def with_server() -> None:
        storage = InMemoryQueueStorage(console_jobs.QUEUE_NAME)
        server = JobQueueServer(
            console_jobs.ConsoleJob, storage=storage, worker_count=console_jobs.WORKER_COUNT
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
    """Submit one task and wait for its output."""
    handle = await client.submit(console_jobs.make_input(task, params), max_retries=max_retries)
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
async def test_fail_fails_at_once_with_its_own_error(client: Client) -> None:
    handle = await client.submit(console_jobs.make_input("fail", {"steps": 3}), max_retries=5)
    with pytest.raises(JobError, match="gave up after 3 steps"):
        await handle.wait_for()
    job = await client.get_job(handle.id)
    assert job is not None
    assert (job.error_code, job.run_attempts) == ("ConsoleFailure", 1)


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
