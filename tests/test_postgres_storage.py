"""PostgreSQL storage specifics: schema and migrations, one-statement batches, claim
indexes, LISTEN/NOTIFY (large events, hints, reconnects), pools the caller owns."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from pyjobqueue import JobQueueClient, JobQueueServer, JobStatus
from pyjobqueue._json import fingerprint
from pyjobqueue.errors import SchemaVersionError
from pyjobqueue.events import JOB_AVAILABLE, JobEvent
from pyjobqueue.job import Job
from pyjobqueue.outcome import Outcome, OutcomeKind
from pyjobqueue.storage import open_storage

from .backend_postgres import fresh_schema, require_dsn, unavailable_reason
from .conftest import next_event
from .jobs import ScriptedJob, new_job, new_probe

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))

if unavailable_reason() is None:
    import asyncpg

    from pyjobqueue.storage.postgres import PostgresQueueStorage, channel_for, migrations
    from pyjobqueue.storage.postgres import queries as sql

OpenQueue = Callable[..., Awaitable["PostgresQueueStorage"]]


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def open_queue() -> AsyncIterator[OpenQueue]:
    """Set-up storages on the test database (a unique queue name unless given)."""
    opened: list[PostgresQueueStorage] = []

    async def open_one(queue_name: str | None = None, dsn_or_pool: Any = None) -> Any:
        storage = PostgresQueueStorage(
            dsn_or_pool or require_dsn(), queue_name or f"pg-{uuid.uuid4().hex[:12]}"
        )
        await storage.setup_database()
        opened.append(storage)
        return storage

    yield open_one
    for storage in opened:
        await storage.close()


async def logging_pool(statements: list[str], max_size: int) -> Any:
    """An asyncpg pool on the test database that appends every query it runs to `statements`."""

    async def log_queries(connection: Any) -> None:
        connection.add_query_logger(lambda query: statements.append(query.query))

    return await asyncpg.create_pool(require_dsn(), min_size=1, max_size=max_size, init=log_queries)


# -- schema -----------------------------------------------------------------------------------


async def test_concurrent_setups_migrate_once() -> None:
    async with fresh_schema() as dsn:
        storages = [PostgresQueueStorage(dsn, f"q{i}") for i in range(6)]
        try:
            await asyncio.gather(*(storage.setup_database() for storage in storages))
            await storages[0].add(new_job())
            assert await storages[0].size() == 1 and await storages[1].size() == 0
        finally:
            for storage in storages:
                await storage.close()
        connection = await asyncpg.connect(dsn)
        try:
            versions = await connection.fetch(
                "SELECT version FROM pyjobqueue_schema_migrations ORDER BY version"
            )
            versions_applied = [row["version"] for row in versions]
            assert versions_applied == list(range(1, migrations.LATEST_VERSION + 1))
        finally:
            await connection.close()


async def test_a_newer_schema_is_refused() -> None:
    async with fresh_schema() as dsn:
        async with PostgresQueueStorage(dsn, "q"):
            pass
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(sql.RECORD_MIGRATION, migrations.LATEST_VERSION + 1)
        finally:
            await connection.close()
        storage = PostgresQueueStorage(dsn, "q")
        with pytest.raises(SchemaVersionError, match="upgrade pyjobqueue"):
            await storage.setup_database()
        await storage.close()


# The INSERT of the release before migration 3 (schema version 2), as it wrote jobs:
# what an upgrade finds in the table.
VERSION_2_INSERT_JOBS = """
INSERT INTO pyjobqueue_jobs (
    queue_name, status, input, max_retries, created_at, run_after, deadline_at,
    job_run_id, fingerprint)
SELECT $1, 'PENDING', batch.input::json, batch.max_retries, batch.created_at, batch.run_after,
    batch.deadline_at, batch.job_run_id, batch.fingerprint
FROM unnest($2::text[], $3::bigint[], $4::timestamptz[], $5::timestamptz[],
    $6::timestamptz[], $7::text[], $8::text[])
    WITH ORDINALITY AS batch(input, max_retries, created_at, run_after, deadline_at,
        job_run_id, fingerprint, position)
ORDER BY batch.position
RETURNING id, (SELECT pg_notify($9, $10)) AS announced
"""


async def test_a_version_2_database_upgrades_in_place_and_keeps_its_jobs() -> None:
    async with fresh_schema() as dsn:
        connection = await asyncpg.connect(dsn)
        try:
            # What the release before migration 3 ran on setup_database(), then its inserts.
            async with connection.transaction():
                await connection.execute(sql.CREATE_MIGRATIONS_TABLE)
                for migration in migrations.MIGRATIONS[:2]:
                    await connection.execute(migration.steps)
                    await connection.execute(sql.RECORD_MIGRATION, migration.version)
            at = now()
            offsets = [3, 1, 2, 5]  # seconds before `at`: claim order is by run_after
            rows = await connection.fetch(
                VERSION_2_INSERT_JOBS,
                "q",
                [f'{{"i": {i}}}' for i in range(4)],
                [3] * 4,
                [at] * 4,
                [at - timedelta(seconds=offset) for offset in offsets],
                [None] * 4,
                ["run"] * 4,
                [fingerprint({"i": i}) for i in range(4)],
                channel_for("q"),
                "hint",
            )
            old_ids = sorted(row["id"] for row in rows)
            finished = old_ids[3]
            await connection.execute(
                "UPDATE pyjobqueue_jobs SET status = 'COMPLETED', completed_at = $2 WHERE id = $1",
                finished,
                at,
            )
        finally:
            await connection.close()
        async with PostgresQueueStorage(dsn, "q") as storage:
            jobs = await storage.get_by_run_id("run")
            assert [job.id for job in jobs] == old_ids
            assert [job.input for job in jobs] == [{"i": i} for i in range(4)]
            for job in jobs:
                assert (job.kind, job.priority, job.unique_key, job.metadata) == (None, 0, None, {})
                assert (job.timeout_ms, job.error_traceback, job.max_retries) == (None, None, 3)
            assert await storage.counts() == {
                (None, JobStatus.PENDING): 3,
                (None, JobStatus.COMPLETED): 1,
            }
            # A new job of a higher priority goes first, then the old ones by run_after.
            urgent = await storage.add(new_job({"urgent": True}, priority=1, kind="k"))
            claimed = await storage.claim(
                "w", now(), now() + timedelta(seconds=30), 10, kinds=["k"]
            )
            assert [job.id for job in claimed] == [urgent, old_ids[0], old_ids[2], old_ids[1]]
            # Unique keys and pausing work on the upgraded tables.
            (first,) = await storage.add_jobs([new_job(unique_key="once")])
            (second,) = await storage.add_jobs([new_job(unique_key="once")])
            assert first.created and (second.id, second.created) == (first.id, False)
            assert await storage.set_paused(True) and await storage.is_paused()
        connection = await asyncpg.connect(dsn)
        try:
            versions = await connection.fetch(
                "SELECT version FROM pyjobqueue_schema_migrations ORDER BY version"
            )
            indexes = {
                row["indexname"]: row["indexdef"]
                for row in await connection.fetch(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'pyjobqueue_jobs'"
                )
            }
        finally:
            await connection.close()
    assert [row["version"] for row in versions][:3] == [1, 2, 3] and [
        row["version"] for row in versions
    ] == list(range(1, migrations.LATEST_VERSION + 1))
    assert "(queue_name, priority DESC, run_after, id)" in indexes["pyjobqueue_jobs_claim"]
    assert "UNIQUE" in indexes["pyjobqueue_jobs_unique_key"]


def plan_nodes(node: dict[str, Any]) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan (CTEs and InitPlans too), each with
    every node below it."""
    below: list[dict[str, Any]] = []
    for child in node.get("Plans", []):
        for descendant, under in plan_nodes(child):
            yield descendant, under
            below.append(descendant)
    yield node, below


def check_claim_plan(plan_json: str) -> list[str]:
    """What is wrong with a claim's plan: it must walk the claim index in claim order."""
    ((root,),) = [[entry["Plan"] for entry in json.loads(plan_json)]]
    nodes = list(plan_nodes(root))
    jobs = [node for node, _ in nodes if node.get("Relation Name") == "pyjobqueue_jobs"]
    problems = []
    if not any(node.get("Index Name") == "pyjobqueue_jobs_claim" for node in jobs):
        problems.append("no scan of pyjobqueue_jobs_claim")
    for node in jobs:
        if node["Node Type"] in ("Seq Scan", "Bitmap Heap Scan"):
            problems.append(f"a {node['Node Type']} of pyjobqueue_jobs")
    for node, below in nodes:
        # The announcing claim sorts the few rows it claimed (a CTE) for its events: fine.
        if "Sort" in node["Node Type"] and any(
            under.get("Relation Name") == "pyjobqueue_jobs" for under in below
        ):
            problems.append(f"jobs are sorted ({node['Sort Key']})")
    return problems


async def test_claims_walk_the_claim_index_at_any_depth(open_queue: OpenQueue) -> None:
    """SPEC 8.2: the claim statements, as the engine runs them, take the due jobs from the
    claim index in claim order: no Seq Scan, no Sort, with 100,000 pending jobs of mixed
    priorities and kinds and 20,000 finished ones, in custom and generic plans."""
    logged: list[Any] = []

    async def log_queries(connection: Any) -> None:
        connection.add_query_logger(logged.append)

    pool = await asyncpg.create_pool(require_dsn(), min_size=1, max_size=2, init=log_queries)
    connection = await asyncpg.connect(require_dsn())
    try:
        storage = await open_queue(dsn_or_pool=pool)
        at = now()
        await connection.execute(
            """
            INSERT INTO pyjobqueue_jobs (queue_name, status, input, max_retries, created_at,
                run_after, completed_at, priority, kind)
            SELECT $1, CASE WHEN i <= 20000 THEN 'COMPLETED' ELSE 'PENDING' END, '{}', 0,
                $2::timestamptz,
                $2 - make_interval(secs => i % 5000), CASE WHEN i <= 20000 THEN $2 END,
                (i * 7919) % 201 - 100, (ARRAY['resize', 'email', 'report', NULL])[i % 4 + 1]
            FROM generate_series(1, 120000) AS i
            """,
            storage.queue_name,
            at,
        )
        await connection.execute("ANALYZE pyjobqueue_jobs")
        problems = []
        for start_origin in (None, "server-1"):
            for kinds in (None, ["resize", "email"]):
                logged.clear()
                claimed = await storage.claim(
                    "w", at, at + timedelta(seconds=30), 10, start_origin, kinds
                )
                assert len(claimed) == 10 and all(job.priority == 100 for job in claimed)
                assert all(job.kind is None or job.kind in (kinds or [job.kind]) for job in claimed)
                (query,) = [entry for entry in logged if "SKIP LOCKED" in entry.query]
                for mode in ("force_custom_plan", "force_generic_plan"):
                    plan = await explain(connection, query.query, query.args, mode)
                    label = f"origin {start_origin}, kinds {kinds}, {mode}"
                    problems += [f"{label}: {problem}" for problem in check_claim_plan(plan)]
        assert not problems, "\n".join(problems)
    finally:
        await connection.close()
        await pool.close()


async def explain(connection: Any, statement: str, args: tuple[Any, ...], mode: str) -> str:
    """The JSON plan of a statement with these parameters, under `plan_cache_mode`
    `mode` (a generic plan is what a prepared statement may switch to)."""
    await connection.execute(f"SET plan_cache_mode = {mode}")
    await connection.execute(f"PREPARE claim AS {statement}")
    try:
        types = await connection.fetchval(
            "SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = 'claim'"
        )
        # EXECUTE takes no bound parameters: the values go in as literals of their types.
        literals = [
            f"{await connection.fetchval(f'SELECT quote_nullable($1::{kind})', value)}::{kind}"
            for value, kind in zip(args, types, strict=True)
        ]
        plan: str = await connection.fetchval(
            f"EXPLAIN (FORMAT JSON) EXECUTE claim({', '.join(literals)})"
        )
    finally:
        await connection.execute("DEALLOCATE claim")
        await connection.execute("RESET plan_cache_mode")
    return plan


# -- writes -----------------------------------------------------------------------------------


async def test_add_batch_is_one_statement_on_a_pool_the_caller_owns(
    open_queue: OpenQueue,
) -> None:
    statements: list[str] = []
    pool = await logging_pool(statements, max_size=2)
    try:
        storage = await open_queue(dsn_or_pool=pool)
        statements.clear()
        ids = await storage.add_batch([new_job({"i": i}, job_run_id="run") for i in range(500)])
        # (Besides asyncpg's own type introspection and connection reset.)
        writes = [query for query in statements if "pyjobqueue_jobs" in query]
        assert len(writes) == 1 and "INSERT INTO pyjobqueue_jobs" in writes[0]
        assert ids == sorted(ids) and len(set(ids)) == 500
        jobs = await storage.get_by_run_id("run")
        assert [job.input for job in jobs] == [{"i": i} for i in range(500)]
        await storage.close()
        assert await pool.fetchval("SELECT 1") == 1  # the caller's pool stays open
    finally:
        await pool.close()


async def test_outcomes_written_together_share_a_statement_and_keep_their_rules(
    open_queue: OpenQueue,
) -> None:
    statements: list[str] = []
    pool = await logging_pool(statements, max_size=4)
    try:
        storage = await open_queue(dsn_or_pool=pool)
        ids = await storage.add_batch([new_job({"i": i}) for i in range(6)])
        await storage.claim("w", now(), now() + timedelta(seconds=30), 6)
        at = now()
        later = at + timedelta(minutes=5)
        complete, fail, retry, requeue, stale, twice = ids
        outcomes = [
            (complete, "w", Outcome(OutcomeKind.COMPLETE, at, output={"r": [1, "ü"]})),
            (fail, "w", Outcome(OutcomeKind.FAIL, at, error="bad\x00", error_code="E")),
            (retry, "w", Outcome(OutcomeKind.RETRY, at, error="again", run_after=later)),
            (requeue, "w", Outcome(OutcomeKind.REQUEUE, at, run_after=at)),
            (stale, "other-worker", Outcome(OutcomeKind.COMPLETE, at, output=1)),
            # The same attempt finished twice at once: exactly one of the two applies.
            (twice, "w", Outcome(OutcomeKind.COMPLETE, at, output="first")),
            (twice, "w", Outcome(OutcomeKind.FAIL, at, error="second")),
        ]
        statements.clear()
        applied = await asyncio.gather(
            *(storage.finish(job_id, worker, 1, outcome) for job_id, worker, outcome in outcomes)
        )
        assert applied == [True, True, True, True, False, True, False]
        finishes = [query for query in statements if "UPDATE pyjobqueue_jobs" in query]
        # All are waiting when the writer runs: they share one statement, but for the
        # second finish of the same job, which waits for the next one.
        assert len(finishes) == 2
        jobs = {job_id: cast(Job[Any, Any], await storage.get(job_id)) for job_id in ids}
        assert jobs[complete].status is JobStatus.COMPLETED
        assert (jobs[complete].output, jobs[complete].progress) == ({"r": [1, "ü"]}, 100)
        assert jobs[complete].worker_id is None and jobs[complete].lease_expires_at is None
        assert (jobs[fail].status, jobs[fail].error, jobs[fail].error_code) == (
            JobStatus.FAILED,
            "bad\ufffd",
            "E",
        )
        assert jobs[fail].completed_at is not None and jobs[fail].output is None
        assert (jobs[retry].status, jobs[retry].error, jobs[retry].run_attempts) == (
            JobStatus.PENDING,
            "again",
            1,
        )
        assert jobs[retry].run_after == later and jobs[retry].completed_at is None
        assert (jobs[requeue].status, jobs[requeue].run_attempts) == (JobStatus.PENDING, 0)
        assert jobs[stale].status is JobStatus.PROCESSING and jobs[stale].worker_id == "w"
        assert (jobs[twice].status, jobs[twice].output) == (JobStatus.COMPLETED, "first")
    finally:
        await pool.close()


async def test_a_bad_job_in_a_batch_stores_nothing(open_queue: OpenQueue) -> None:
    storage = await open_queue()
    with pytest.raises(ValueError, match="NUL"):
        await storage.add_batch([new_job({"i": 0}), new_job({"i": 1}, job_run_id="a\x00b")])
    assert await storage.size() == 0


async def test_nul_characters_in_messages_and_json_survive(open_queue: OpenQueue) -> None:
    storage = await open_queue()
    job_id = await storage.add(new_job({"text": "a\x00b"}))
    assert (await storage.get(job_id)).input == {"text": "a\x00b"}  # type: ignore[union-attr]
    await storage.claim("w", now(), now() + timedelta(seconds=30), 1)
    assert await storage.save_progress(job_id, "w", 1, 5, "half\x00way", {"k": "\x00"})
    failure = Outcome(OutcomeKind.FAIL, now(), error="bad\x00byte", error_code="ValueError")
    assert await storage.finish(job_id, "w", 1, failure)
    job = await storage.get(job_id)
    assert job is not None and job.error == "bad\ufffdbyte"
    assert job.progress_message == "half\ufffdway" and job.progress_details == {"k": "\x00"}


# -- LISTEN / NOTIFY ----------------------------------------------------------------------------


async def test_job_available_hints_reach_other_connections(open_queue: OpenQueue) -> None:
    writer = await open_queue()
    reader = await open_queue(writer.queue_name)
    events: asyncio.Queue[JobEvent] = asyncio.Queue()
    unsubscribe = await reader.subscribe(events.put_nowait)
    job_id = await writer.add(new_job())
    assert (await next_event(events)).name == JOB_AVAILABLE
    await writer.claim("w", now(), now() + timedelta(seconds=30), 1)
    retry = Outcome(OutcomeKind.RETRY, now(), error="again", run_after=now())
    assert await writer.finish(job_id, "w", 1, retry)
    assert (await next_event(events)).name == JOB_AVAILABLE
    await unsubscribe()


async def test_events_larger_than_a_notification_arrive_whole_and_in_order(
    open_queue: OpenQueue,
) -> None:
    publisher = await open_queue()
    reader = await open_queue(publisher.queue_name)
    events: asyncio.Queue[JobEvent] = asyncio.Queue()
    unsubscribe = await reader.subscribe(events.put_nowait)
    big = {"text": "ü" * 20_000, "items": list(range(2_000))}
    sent = [
        JobEvent("job_progress", publisher.queue_name, 1, (1.0, "small", None), "me"),
        JobEvent("job_progress", publisher.queue_name, 1, (50.0, "big", big), "me"),
        JobEvent("job_complete", publisher.queue_name, 1, ("done",), "me"),
    ]
    for event in sent:
        await publisher.publish(event)
    assert [await next_event(events) for _ in sent] == sent
    await unsubscribe()
    connection = await asyncpg.connect(require_dsn())
    try:
        count = "SELECT count(*) FROM pyjobqueue_events WHERE queue_name = $1"
        # Every event is in the log (for replay), the large one too.
        assert await connection.fetchval(count, publisher.queue_name) == len(sent)
        await publisher.delete_all()
        assert await connection.fetchval(count, publisher.queue_name) == 0
    finally:
        await connection.close()


def drain(queue: asyncio.Queue[str]) -> list[str]:
    """What the queue holds now."""
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def test_a_claim_and_a_batch_of_outcomes_each_log_one_row_and_one_notification(
    open_queue: OpenQueue,
) -> None:
    writer = await open_queue()
    reader = await open_queue(writer.queue_name)
    events: asyncio.Queue[JobEvent] = asyncio.Queue()
    unsubscribe = await reader.subscribe(events.put_nowait)
    # 120 job_start events do not fit in one notification: that row is read back.
    ids = await writer.add_batch([new_job({"i": i}, priority=i % 3) for i in range(120)])
    connection = await asyncpg.connect(require_dsn())
    notified: asyncio.Queue[str] = asyncio.Queue()
    await connection.add_listener(
        channel_for(writer.queue_name), lambda *args: notified.put_nowait(args[3])
    )
    try:
        lease = now() + timedelta(seconds=30)
        claimed = await writer.claim("w", now(), lease, 120, start_origin="w")
        assert len(claimed) == 120
        done = claimed[:5]
        await asyncio.gather(
            *(
                writer.finish(
                    job.id or 0,
                    "w",
                    1,
                    Outcome(OutcomeKind.COMPLETE, now(), output=n),
                    event=JobEvent.job_complete(writer.queue_name, job.id or 0, n, "w"),
                )
                for n, job in enumerate(done)
            )
        )
        starts = [await next_event(events, "job_start") for _ in claimed]
        assert [event.job_id for event in starts] == [job.id for job in claimed]  # claim order
        completes = [await next_event(events, "job_complete") for _ in done]
        assert sorted((event.job_id, event.output) for event in completes) == sorted(
            (job.id, n) for n, job in enumerate(done)
        )
        count = "SELECT count(*) FROM pyjobqueue_events WHERE queue_name = $1"
        logged = await connection.fetchval(count, writer.queue_name)
        # One row for the claim; the five outcomes, written together, one or two more.
        assert 2 <= logged <= 3
        tags: list[str] = []
        while len(tags) < logged:  # one notification per row, besides the hints
            payload = await asyncio.wait_for(notified.get(), 20)
            if payload[:1] != "A":
                tags.append(payload[:1])
        assert sorted(tags)[0] == "R"  # the claim's row was too large
        assert all(payload[:1] == "A" for payload in drain(notified))  # and nothing more
        assert sorted(ids) == sorted(job.id or 0 for job in claimed)
    finally:
        await connection.close()
    await unsubscribe()


async def test_the_listener_reconnects_after_its_connection_is_killed(
    open_queue: OpenQueue,
) -> None:
    reader = await open_queue()
    events: asyncio.Queue[JobEvent] = asyncio.Queue()
    unsubscribe = await reader.subscribe(events.put_nowait)
    connection = await asyncpg.connect(require_dsn())
    try:
        killed = await connection.fetchval(
            """
            SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
            WHERE pid <> pg_backend_pid() AND query LIKE '%' || $1 || '%'
            """,
            channel_for(reader.queue_name),
        )
    finally:
        await connection.close()
    assert killed == 1
    # Back on a new connection, it tells its listeners to look for missed work...
    assert (await next_event(events)).name == JOB_AVAILABLE
    # ...and delivers what is published from then on.
    publisher = await open_queue(reader.queue_name)
    await publisher.publish(JobEvent("job_start", reader.queue_name, 5, (), "me"))
    assert (await next_event(events, "job_start")).job_id == 5
    await unsubscribe()


async def test_idle_workers_wake_on_notify_not_on_their_poll(open_queue: OpenQueue) -> None:
    server_storage = await open_queue()
    client_storage = await open_queue(server_storage.queue_name)
    # Polls an hour apart: only a notification can make these jobs run within the test.
    server = JobQueueServer(ScriptedJob, storage=server_storage, poll_interval_ms=3_600_000)
    client: JobQueueClient[dict[str, Any], Any] = JobQueueClient(
        storage=client_storage, poll_interval_ms=3_600_000
    )
    await client.connect()
    probe = new_probe()
    async with server:
        for value in range(3):
            handle = await client.submit({"probe": probe.key, "value": value})
            output = await asyncio.wait_for(handle.wait_for(), 10)
            assert output["echo"] == value
    await client.disconnect()


async def test_open_storage_makes_a_postgres_storage() -> None:
    storage = open_storage(require_dsn(), f"url-{uuid.uuid4().hex[:8]}")
    assert isinstance(storage, PostgresQueueStorage)
    async with storage:
        job_id = await storage.add(new_job())
        assert (await storage.get(job_id)).status is JobStatus.PENDING  # type: ignore[union-attr]
