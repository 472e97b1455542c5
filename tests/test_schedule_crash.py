"""A process killed with SIGKILL while it enqueues ticks (SPEC 8.6) loses no tick and
duplicates none: the advance of a schedule's state and the insert of its job are one
transaction, on SQLite and on PostgreSQL. The child enqueues tick after tick as fast as
it can; it is killed at a moment nobody chose; what is stored must agree."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pyjobqueue import JobStatus
from pyjobqueue.storage import QueueStorage, open_storage

from . import backend_postgres
from .children import Child
from .conftest import eventually

ENQUEUER = """
import asyncio, sys
from datetime import UTC, datetime, timedelta
from pyjobqueue import Schedule
from pyjobqueue.storage import open_storage

async def main():
    name = sys.argv[3]
    schedule = Schedule(name, every=timedelta(seconds=1), input={"n": 1})
    async with open_storage(sys.argv[1], sys.argv[2]) as storage:
        start = datetime(2030, 1, 1, tzinfo=UTC)
        first = schedule.job(start, sys.argv[2])
        await storage.advance_schedule(name, schedule.spec, None, start, first)
        print("ready", flush=True)
        tick = start
        while True:  # one tick after another, as fast as the storage takes them
            following = tick + timedelta(seconds=1)
            job = schedule.job(tick, sys.argv[2])
            assert await storage.advance_schedule(name, schedule.spec, tick, following, job)
            tick = following

asyncio.run(main())
"""


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    reason = backend_postgres.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    return backend_postgres.require_dsn()


@pytest.mark.slow
async def test_a_killed_enqueuer_leaves_each_tick_once_with_its_job(
    url: str, tmp_path: Path
) -> None:
    queue = f"crash-{tmp_path.name[-12:]}"
    storage: QueueStorage = open_storage(url, queue)
    async with storage:
        for round_number in range(3):
            name = f"crash-{round_number}"
            child = Child(name, tmp_path, "-c", ENQUEUER, url, queue, name)
            await child.start()
            before = await storage.size(None)

            async def enqueued_more(before: int = before) -> bool:
                return await storage.size(None) >= before + 20

            # Let it run a while, then kill it wherever it is: mid-stream.
            await eventually(enqueued_more, timeout=30, interval=0.002)
            await child.kill()
            jobs = await storage.peek(JobStatus.PENDING, 100_000)
            ticks = [datetime.fromisoformat(job.metadata["tick"]) for job in jobs]
            (state,) = [s for s in await storage.schedule_states() if s.name == name]
            assert len(ticks) == len(set(ticks)), "a tick was enqueued twice"
            assert state.last_tick == max(ticks), "the last tick and the jobs disagree"
            assert state.next_tick == max(ticks) + (ticks[1] - ticks[0])
            expected: list[Any] = [ticks[0] + (ticks[1] - ticks[0]) * n for n in range(len(ticks))]
            assert sorted(ticks) == expected, "a tick was lost"
            await storage.delete_all()
