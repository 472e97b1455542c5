"""PostgreSQL and SPEC 8: unique keys under concurrent inserts (pools, processes), the
tracebacks of grouped outcomes, the pause flag shared through the database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pyjobqueue import JobStatus
from pyjobqueue.outcome import Outcome, OutcomeKind
from pyjobqueue.storage.base import Added

from .backend_postgres import require_dsn, unavailable_reason
from .conftest import eventually
from .jobs import new_job

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))

if unavailable_reason() is None:
    import asyncpg

    from pyjobqueue.storage.postgres import PostgresQueueStorage

OpenQueues = Callable[[int], Awaitable[list["PostgresQueueStorage"]]]
LEASE = timedelta(seconds=30)


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def open_queues() -> AsyncIterator[OpenQueues]:
    """`count` storages of one new queue, each with its own pool, connected and warm."""
    opened: list[PostgresQueueStorage] = []

    async def open_some(count: int) -> list[PostgresQueueStorage]:
        queue_name = f"kinds-{uuid.uuid4().hex[:12]}"
        storages = [PostgresQueueStorage(require_dsn(), queue_name) for _ in range(count)]
        opened.extend(storages)
        await asyncio.gather(*(storage.setup_database() for storage in storages))
        await asyncio.gather(*(storage.size() for storage in storages))
        return storages

    yield open_some
    for storage in opened:
        await storage.close()


async def complete(storage: PostgresQueueStorage, job_id: int) -> None:
    """Claim the queue's only pending job, `job_id`, and complete it: its key is free."""
    (job,) = await storage.claim("w", now(), now() + LEASE, 10)
    assert job.id == job_id
    assert await storage.finish(job_id, "w", 1, Outcome(OutcomeKind.COMPLETE, now(), output=1))


# -- unique keys --------------------------------------------------------------------------------


async def test_concurrent_submits_with_one_key_from_many_pools_store_one_job(
    open_queues: OpenQueues,
) -> None:
    storages = await open_queues(6)
    holders = []
    for _round in range(3):  # once the holder completed, the key is free again
        added = await asyncio.gather(
            *(
                storage.add_jobs([new_job({"from": index}, unique_key="sync-user-42")])
                for index, storage in enumerate(storages * 5)
            )
        )
        results = [result for (result,) in added]
        created = [result for result in results if result.created]
        assert len(created) == 1, f"{len(created)} jobs stored for one key"
        assert {result.id for result in results} == {created[0].id}
        assert await storages[0].size(JobStatus.PENDING) == 1
        holders.append(created[0].id)
        await complete(storages[0], created[0].id)
    assert len(set(holders)) == 3
    assert await storages[0].size() == 3


async def test_batches_sharing_keys_in_any_order_store_one_job_per_key(
    open_queues: OpenQueues,
) -> None:
    storages = await open_queues(6)
    shuffler = random.Random(11)
    for round_number in range(10):  # new keys each round: the inserts meet uncommitted ones
        keys = [f"key-{round_number}-{number}" for number in range(20)]
        batches = []
        for _ in range(len(storages) * 2):
            # Every key, twice for some, in another order each time; jobs without a key.
            batch_keys: list[str | None] = [*keys, keys[0], keys[2], None, None]
            shuffler.shuffle(batch_keys)
            batches.append(batch_keys)
        # Batches that take the same keys in opposite orders would wait for each other in
        # a circle (a deadlock: an error for one of them) unless the rows go in by key.
        added = await asyncio.gather(
            *(
                storage.add_jobs([new_job({"key": key}, unique_key=key) for key in batch_keys])
                for storage, batch_keys in zip(storages * 2, batches, strict=True)
            )
        )
        check_one_job_per_key(batches, added)
        stored = {job.id: job for job in await storages[0].peek(JobStatus.PENDING, 1000)}
        holders = {result.id for results in added for result in results if not result.created}
        assert {stored[job_id].unique_key for job_id in holders} == set(keys)
    assert await storages[0].size() == 10 * (20 + 2 * 12)


def check_one_job_per_key(batches: list[list[str | None]], added: list[list[Added]]) -> None:
    """Each key got one job in all the batches; a key's later job in a batch is held by
    the job its first one got; every job without a key is stored."""
    holder: dict[str, int] = {}
    for batch_keys, results in zip(batches, added, strict=True):
        first_seen: dict[str, Added] = {}
        for key, result in zip(batch_keys, results, strict=True):
            if key is None:
                assert result.created
                continue
            assert holder.setdefault(key, result.id) == result.id, f"two jobs hold {key}"
            if key in first_seen:
                assert result == Added(first_seen[key].id, False)
            first_seen.setdefault(key, result)
    created = [result for results in added for result in results if result.created]
    assert len(created) == len(holder) + sum(batch.count(None) for batch in batches)


async def test_ids_of_a_batch_with_keys_follow_its_order(open_queues: OpenQueues) -> None:
    (storage,) = await open_queues(1)
    (held,) = await storage.add_jobs([new_job(unique_key="m")])
    keys = ["z", None, "m", "a", None, "z"]
    added = await storage.add_jobs(
        [new_job({"i": i}, unique_key=key) for i, key in enumerate(keys)]
    )
    stored = [result.id for result in added if result.created]
    assert stored == sorted(stored) and len(stored) == 4
    assert added[2] == Added(held.id, False) and added[5] == Added(added[0].id, False)
    assert added[0].created
    jobs = {job.id: job for job in await storage.peek(JobStatus.PENDING, 10)}
    assert [jobs[result.id].input for result in added] == [
        {"i": 0},
        {"i": 1},
        {"n": 1},
        {"i": 3},
        {"i": 4},
        {"i": 0},
    ]


async def test_a_holder_that_finishes_between_insert_and_read_lets_the_job_in(
    open_queues: OpenQueues, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the read after ON CONFLICT DO NOTHING can lose: the holder the insert
    met has finished by the time the holders are read. The job goes in again."""
    storage, other = await open_queues(2)
    (holder,) = await other.add_jobs([new_job(unique_key="k")])
    engine: Any = storage._engine
    read_holders = engine._key_holders
    reads: list[list[str | None]] = []

    async def finish_first(connection: Any, keys: list[str | None]) -> list[Any]:
        if not reads:  # another process completes the holder right now
            await complete(other, holder.id)
        reads.append(keys)
        rows: list[Any] = await read_holders(connection, keys)
        return rows

    monkeypatch.setattr(engine, "_key_holders", finish_first)
    (added,) = await storage.add_jobs([new_job({"late": True}, unique_key="k")])
    assert reads == [["k"]]
    assert added.created and added.id != holder.id
    job = await storage.get(added.id)
    assert job is not None and (job.status, job.input) == (JobStatus.PENDING, {"late": True})


async def test_a_retry_never_makes_a_second_holder_of_a_key(open_queues: OpenQueues) -> None:
    (storage,) = await open_queues(1)
    (first,) = await storage.add_jobs([new_job(unique_key="k")])
    assert await storage.disable(first.id, now())
    (second,) = await storage.add_jobs([new_job(unique_key="k")])
    assert second.created
    # While the second job holds the key, the first one cannot take it back...
    assert not await storage.retry(first.id, now())
    job = await storage.get(first.id)
    assert job is not None and job.status is JobStatus.DISABLED
    # ...and once it is free, it can.
    assert await storage.disable(second.id, now())
    assert await storage.retry(first.id, now())
    (again,) = await storage.add_jobs([new_job(unique_key="k")])
    assert again == Added(first.id, False)


async def test_a_retry_that_meets_a_key_taken_meanwhile_is_refused(
    open_queues: OpenQueues,
) -> None:
    """The key is taken by an insert the retry's check cannot see yet (uncommitted):
    the unique index makes the retry wait for it, and then refuse."""
    (storage,) = await open_queues(1)
    (first,) = await storage.add_jobs([new_job(unique_key="k")])
    assert await storage.disable(first.id, now())
    connection = await asyncpg.connect(require_dsn())
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute(
            """
            INSERT INTO pyjobqueue_jobs (queue_name, status, input, max_retries, created_at,
                run_after, unique_key)
            VALUES ($1, 'PENDING', '{}', 0, now(), now(), 'k')
            """,
            storage.queue_name,
        )
        retry = asyncio.create_task(storage.retry(first.id, now()))

        async def retry_waits() -> bool:
            waiting: int = await connection.fetchval(
                """
                SELECT count(*) FROM pg_stat_activity
                WHERE wait_event_type = 'Lock' AND query LIKE '%holder.unique_key%'
                """
            )
            return waiting == 1

        await eventually(retry_waits)
        await transaction.commit()
        assert await asyncio.wait_for(retry, 10) is False
    finally:
        await connection.close()
    job = await storage.get(first.id)
    assert job is not None and job.status is JobStatus.DISABLED


# The submitter of the multi-process test: one storage, `count` concurrent submits with
# one key once the test says "go"; prints what each got as JSON.
SUBMITTER = """
import asyncio, json, sys
from pyjobqueue.job import Job
from pyjobqueue.storage.postgres import PostgresQueueStorage

async def main(dsn, queue, key, count):
    async with PostgresQueueStorage(dsn, queue) as storage:
        await asyncio.gather(*(storage.size() for _ in range(count)))  # a warm pool
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        added = await asyncio.gather(*(
            storage.add_jobs([Job(input={"n": n}, unique_key=key)]) for n in range(count)
        ))
        print(json.dumps([list(result) for (result,) in added]), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


@contextlib.asynccontextmanager
async def submitters(
    count: int, queue: str, key: str, submits: int
) -> AsyncIterator[Sequence[asyncio.subprocess.Process]]:
    """Processes running SUBMITTER, ready; killed if still running afterwards."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SUBMITTER,
            require_dsn(),
            queue,
            key,
            str(submits),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        for _ in range(count)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert await asyncio.wait_for(process.stdout.readline(), 60) == b"ready\n"
        yield processes
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()


@pytest.mark.slow
async def test_submits_with_one_key_from_several_processes_store_one_job() -> None:
    queue = f"kinds-processes-{uuid.uuid4().hex[:8]}"
    async with PostgresQueueStorage(require_dsn(), queue) as storage:
        async with submitters(4, queue, "nightly-report", 8) as processes:
            for process in processes:  # all at once
                assert process.stdin is not None
                process.stdin.write(b"go\n")
            results = []
            for process in processes:
                assert process.stdout is not None
                line = await asyncio.wait_for(process.stdout.readline(), 60)
                results += [Added(*result) for result in json.loads(line)]
                assert await asyncio.wait_for(process.wait(), 30) == 0
        created = [result for result in results if result.created]
        assert len(results) == 32 and len(created) == 1
        assert {result.id for result in results} == {created[0].id}
        assert await storage.size() == 1


# -- outcomes and pausing ---------------------------------------------------------------------


async def test_outcomes_written_together_keep_their_tracebacks(open_queues: OpenQueues) -> None:
    (storage,) = await open_queues(1)
    ids = [result.id for result in await storage.add_jobs([new_job({"i": i}) for i in range(4)])]
    await storage.claim("w", now(), now() + LEASE, 4)
    at = now()
    for job_id in ids[1:]:  # an earlier attempt's traceback, which REQUEUE keeps
        earlier = Outcome(OutcomeKind.RETRY, at, error="e", run_after=at, traceback="old\x00")
        assert await storage.finish(job_id, "w", 1, earlier)
    await storage.claim("w", now(), now() + LEASE, 4)
    complete, fail, retry, requeue = ids
    outcomes = {
        complete: Outcome(OutcomeKind.COMPLETE, at, output=1),
        fail: Outcome(OutcomeKind.FAIL, at, error="bad", traceback="Traceback: fail"),
        retry: Outcome(OutcomeKind.RETRY, at, error="again", run_after=at, traceback="retry"),
        requeue: Outcome(OutcomeKind.REQUEUE, at, run_after=at),
    }
    attempts = {complete: 1, fail: 2, retry: 2, requeue: 2}
    applied = await asyncio.gather(
        *(
            storage.finish(job_id, "w", attempts[job_id], outcome)
            for job_id, outcome in outcomes.items()
        )
    )
    assert applied == [True] * 4
    tracebacks = {job_id: (await storage.get(job_id)).error_traceback for job_id in ids}  # type: ignore[union-attr]
    assert tracebacks == {
        complete: None,
        fail: "Traceback: fail",
        retry: "retry",
        requeue: "old\ufffd",
    }
    await storage.claim("w", now(), now() + LEASE, 4)
    assert await storage.finish(retry, "w", 3, Outcome(OutcomeKind.FAIL, at, error="x"))
    assert (await storage.get(retry)).error_traceback is None  # type: ignore[union-attr]
    assert await storage.finish(
        requeue, "w", 2, Outcome(OutcomeKind.FAIL, at, error="x", traceback="t")
    )
    assert await storage.retry(requeue, now())
    assert (await storage.get(requeue)).error_traceback is None  # type: ignore[union-attr]


async def test_a_pause_reaches_every_pool_in_the_claim_statement(open_queues: OpenQueues) -> None:
    pausing, claiming = await open_queues(2)
    await pausing.add_jobs([new_job({"i": i}) for i in range(3)])
    assert not await claiming.set_paused(False)  # never paused: nothing changed
    assert await pausing.set_paused(True) and not await pausing.set_paused(True)
    assert await claiming.is_paused()
    for kinds in (None, ["k"]):
        for origin in (None, "server"):
            assert await claiming.claim("w", now(), now() + LEASE, 10, origin, kinds) == []
    assert await claiming.size(JobStatus.PENDING) == 3
    assert await claiming.set_paused(False) and not await pausing.is_paused()
    assert len(await claiming.claim("w", now(), now() + LEASE, 10, "server", ["k"])) == 3
    connection = await asyncpg.connect(require_dsn())
    try:
        row = await connection.fetchrow(
            "SELECT paused, updated_at FROM pyjobqueue_queues WHERE queue_name = $1",
            pausing.queue_name,
        )
    finally:
        await connection.close()
    assert row is not None and row["paused"] is False and row["updated_at"] is not None
