"""Runs in a browser tab (tab.html): a small remote control over pyjobqueue for Playwright.

`call(name, arguments_json)` runs one of the coroutines below and returns its result as
JSON, so a test can drive several tabs of one browser context from Python.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

from pyjobqueue import JobContext, JobQueueClient, JobQueueServer, JobStatus, Schedule, job
from pyjobqueue.browser import WebLocksLeaderLock
from pyjobqueue.storage import IndexedDbQueueStorage

TAB: dict[str, Any] = {"name": "", "server": None, "client": None, "events": []}


@job
async def double(input: dict[str, Any], context: JobContext) -> dict[str, Any]:
    """Reports progress, holds while running in the tab named by `hold_in`, then doubles n."""
    await context.update_progress(50, "halfway", {"tab": TAB["name"]})
    if input.get("hold_in") == TAB["name"]:
        await asyncio.Event().wait()  # until this tab closes
    return {"doubled": input["n"] * 2, "by": TAB["name"], "attempt": context.job.run_attempts}


async def setup(name: str) -> str:
    """Name this tab (jobs say where they ran)."""
    TAB["name"] = name
    return name


# What `start_server(scheduled=True)` runs: a job every second, whatever tab enqueues it.
EVERY_SECOND = Schedule("every-second", kind=double, every=timedelta(seconds=1), input={"n": 1})


async def start_server(
    queue: str, database: str, leader_lock: bool, scheduled: bool = False
) -> bool:
    """A server for `queue`; with a leader lock it runs only while this tab holds the lock;
    `scheduled`: it also runs the EVERY_SECOND schedule."""
    lock = WebLocksLeaderLock(f"pyjobqueue {database} {queue}") if leader_lock else None
    server = JobQueueServer(
        double,
        storage=IndexedDbQueueStorage(queue, database),
        leader_lock=lock,
        poll_interval_ms=50,
        lease_ms=60_000,  # longer than the tests: recovery must come from the takeover
        schedules=[EVERY_SECOND] if scheduled else None,
    )
    TAB["server"] = server
    await server.start()
    return True


async def is_leader() -> bool:
    """Whether this tab's server processes jobs now."""
    server: JobQueueServer[Any, Any] | None = TAB["server"]
    return server is not None and server.is_leader()


async def became_leader_at() -> float | None:
    """Wall-clock time (ms since the epoch) when this tab's server became the leader."""
    return TAB.get("leader_at")


async def watch_leadership() -> bool:
    """Record when this tab's server becomes the leader."""

    async def watch() -> None:
        while not await is_leader():
            await asyncio.sleep(0.005)
        TAB["leader_at"] = time.time() * 1000

    TAB["watcher"] = asyncio.ensure_future(watch())
    return True


async def connect_client(queue: str, database: str) -> bool:
    """A client of `queue` that receives events through storage (other tabs' too)."""
    client: JobQueueClient[dict[str, Any], Any] = JobQueueClient(
        storage=IndexedDbQueueStorage(queue, database)
    )
    for event in ("job_start", "job_progress", "job_complete", "job_error", "job_retry"):
        client.on(event, lambda *args, event=event: TAB["events"].append([event, *args]))
    await client.connect()
    TAB["client"] = client
    return True


async def submit(input: dict[str, Any]) -> int:
    """Submit a job through this tab's client; its id."""
    handle = await TAB["client"].submit(input)
    return int(handle.id)


async def submit_batch(inputs: list[dict[str, Any]]) -> list[int]:
    """Submit jobs in one transaction through this tab's client; their ids."""
    handles = await TAB["client"].submit_batch(inputs)
    return [int(handle.id) for handle in handles]


async def wait_for(job_id: int, timeout: float) -> Any:
    """The output of a job, waited for through this tab's client."""
    return await asyncio.wait_for(TAB["client"].wait_for(job_id), timeout)


async def events() -> list[Any]:
    """Every event this tab's client received, as [name, queue, job id, *args]."""
    return [[str(item) if not _jsonable(item) else item for item in e] for e in TAB["events"]]


async def get_job(job_id: int) -> dict[str, Any] | None:
    """The stored job, as a dict."""
    stored = await TAB["client"].get_job(job_id)
    return None if stored is None else stored.as_dict()


async def stop_server() -> bool:
    """Stop this tab's server."""
    server: JobQueueServer[Any, Any] | None = TAB["server"]
    if server is not None:
        await server.stop()
    return True


async def scheduled_ticks() -> list[str]:
    """The ticks of the completed jobs of the schedule, from the connected client."""
    client: JobQueueClient[Any, Any] = TAB["client"]
    jobs = await client.peek(JobStatus.COMPLETED, 1000)
    return sorted(job.metadata["tick"] for job in jobs if "tick" in job.metadata)


async def stats() -> dict[str, Any]:
    """What this tab's server did."""
    server: JobQueueServer[Any, Any] = TAB["server"]
    result = server.get_stats()
    return {"completed": result.completed_jobs, "total": result.total_jobs}


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


COMMANDS = {
    function.__name__: function
    for function in (
        setup,
        start_server,
        is_leader,
        became_leader_at,
        watch_leadership,
        connect_client,
        submit,
        submit_batch,
        wait_for,
        events,
        get_job,
        stats,
        stop_server,
        scheduled_ticks,
    )
}


async def call(name: str, arguments: str) -> str:
    """Run command `name` with keyword arguments from JSON; its result as JSON."""
    result = await COMMANDS[name](**json.loads(arguments))
    return json.dumps(result)
