"""Schedules (SPEC 8.6) on every storage: each tick enqueued exactly once, however many
servers check it, with no leader."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pyjobqueue import Job, JobContext, JobQueueClient, JobQueueServer, JobStatus, Schedule
from pyjobqueue.storage import QueueStorage

from .conftest import Storages, eventually

EVERY_SECOND = Schedule("heartbeat", kind="beat", every=timedelta(seconds=1), input={"n": 1})


def at(seconds: float) -> datetime:
    return datetime(2030, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)


def tick_job(schedule: Schedule, tick: datetime, queue: str) -> Job[Any, Any]:
    return schedule.job(tick, queue)


async def advance(
    storage: QueueStorage, schedule: Schedule, due: datetime | None, next_tick: datetime
) -> int | None:
    job = tick_job(schedule, due or next_tick, storage.queue_name)
    return await storage.advance_schedule(schedule.name, schedule.spec, due, next_tick, job)


async def test_a_schedule_starts_at_its_next_tick_and_enqueues_each_tick_once(
    storage: QueueStorage,
) -> None:
    assert await storage.schedule_states() == []
    # First seen at 10.5 s: it starts at the next tick, 11 s; the past tick 10 s is not run.
    assert await advance(storage, EVERY_SECOND, at(10), at(11)) is None
    (state,) = await storage.schedule_states()
    assert (state.name, state.last_tick, state.next_tick) == ("heartbeat", None, at(11))
    assert await storage.size(None) == 0
    assert await advance(storage, EVERY_SECOND, at(10), at(11)) is None  # still before 11 s
    job_id = await advance(storage, EVERY_SECOND, at(11), at(12))
    assert job_id is not None
    assert await advance(storage, EVERY_SECOND, at(11), at(12)) is None  # once
    (state,) = await storage.schedule_states()
    assert (state.last_tick, state.next_tick) == (at(11), at(12))
    job = await storage.get(job_id)
    assert job is not None and job.status is JobStatus.PENDING
    assert job.kind == "beat" and job.input == {"n": 1}
    assert job.metadata == {"schedule": "heartbeat", "tick": at(11).isoformat()}
    # After a downtime only the latest missed tick runs: one job, not one per tick.
    late = await advance(storage, EVERY_SECOND, at(500), at(501))
    assert late is not None and await storage.size(None) == 2
    assert [s.last_tick for s in await storage.schedule_states()] == [at(500)]


async def test_a_changed_schedule_starts_afresh_and_keeps_its_last_tick(
    storage: QueueStorage,
) -> None:
    await advance(storage, EVERY_SECOND, None, at(5))
    assert await advance(storage, EVERY_SECOND, at(5), at(6)) is not None
    slower = Schedule("heartbeat", kind="beat", every=timedelta(seconds=10))
    assert await advance(storage, slower, at(6), at(10)) is None  # new spec: START
    (state,) = await storage.schedule_states()
    assert (state.last_tick, state.next_tick, state.spec) == (at(5), at(10), slower.spec)
    assert await advance(storage, slower, at(10), at(20)) is not None


async def test_servers_racing_for_one_tick_enqueue_it_once(storages: Storages) -> None:
    storage = await storages.queue()
    others = [storage]
    if storages.backend.shares_location:
        others += [await storages.queue() for _ in range(3)]  # separate connections
    await advance(storage, EVERY_SECOND, None, at(1))
    for second in range(1, 6):
        results = await asyncio.gather(
            *(
                advance(others[i % len(others)], EVERY_SECOND, at(second), at(second + 1))
                for i in range(8)
            )
        )
        assert sum(result is not None for result in results) == 1, results
    assert await storage.size(None) == 5
    other_queue = await storages.queue("other")
    assert await other_queue.schedule_states() == []


class Beat(Job[dict[str, Any], str]):
    kind = "beat"

    async def execute(self, input: dict[str, Any], context: JobContext) -> str:
        return str(context.job.metadata.get("tick"))


@pytest.fixture
async def servers(storages: Storages) -> AsyncIterator[list[JobQueueServer[Any, Any]]]:
    made: list[JobQueueServer[Any, Any]] = []
    yield made
    for server in made:
        await server.stop()


async def test_three_servers_run_a_schedule_each_tick_exactly_once(
    storages: Storages, servers: list[JobQueueServer[Any, Any]]
) -> None:
    storage = await storages.queue()
    for _ in range(3):
        shared = await storages.queue() if storages.backend.shares_location else storage
        server: JobQueueServer[Any, Any] = JobQueueServer(
            Beat, storage=shared, schedules=[EVERY_SECOND], poll_interval_ms=20
        )
        servers.append(server)
        await server.start()
    client: JobQueueClient[Any, str] = JobQueueClient(storage=storage)

    async def three_done() -> bool:
        return await client.size(JobStatus.COMPLETED) >= 3

    await eventually(three_done, timeout=30)
    for server in servers:
        await server.stop()
    jobs = await client.peek(JobStatus.COMPLETED, 100)
    tick_times = sorted(datetime.fromisoformat(job.metadata["tick"]) for job in jobs)
    assert len(set(tick_times)) == len(tick_times), "a tick ran twice"
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(tick_times))
    (state,) = await client.schedules()
    assert state.name == "heartbeat" and state.last_tick == tick_times[-1]
    assert state.next_tick == tick_times[-1] + timedelta(seconds=1)
    assert all(job.kind == "beat" for job in jobs)


async def test_schedules_are_checked_at_construction(storage: QueueStorage) -> None:
    with pytest.raises(TypeError, match="list of Schedule"):
        JobQueueServer(Beat, storage=storage, schedules=EVERY_SECOND)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="two schedules are named 'heartbeat'"):
        JobQueueServer(Beat, storage=storage, schedules=[EVERY_SECOND, EVERY_SECOND])
    paris = Schedule("paris", cron="0 8 * * *", timezone="Europe/Paris")  # zoneinfo works here
    assert paris.next_tick(datetime(2026, 7, 10, tzinfo=UTC)) == datetime(
        2026, 7, 10, 6, tzinfo=UTC
    )
