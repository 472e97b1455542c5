"""Kinds, priorities, unique keys and pause in IndexedDB, inside Pyodide only.

The contract suites check the rules on every backend; these tests check what only the
IndexedDB engine has: schema version 3 upgrading a database written by the release
before it (records as that release wrote them), upgrade steps that walk a cursor, the
claim's jumps over jobs not yet due and its merge of the kinds a server runs, and the
index-only fields staying true to the job.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Generator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pyjobqueue import JobStatus
from pyjobqueue._platform import IN_PYODIDE
from pyjobqueue.browser._ffi import JsObject, js_to_json, json_to_js
from pyjobqueue.browser._idb import Connection, delete_database, open_database
from pyjobqueue.job import Job
from pyjobqueue.outcome import Outcome, OutcomeKind
from pyjobqueue.storage import IndexedDbQueueStorage
from pyjobqueue.storage.indexeddb.migrations import MIGRATIONS

pytestmark = pytest.mark.skipif(not IN_PYODIDE, reason="runs inside Pyodide only")

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
LEASE = NOW + timedelta(minutes=5)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def storage() -> AsyncIterator[IndexedDbQueueStorage]:
    opened = IndexedDbQueueStorage(unique("kinds"), unique("pyjobqueue-kinds"))
    await opened.setup_database()
    yield opened
    await opened.close()
    await delete_database(opened.database_name)


async def _raw_records(connection: Connection) -> list[dict[str, Any]]:
    def body(transaction: JsObject) -> Generator[JsObject, Any, list[dict[str, Any]]]:
        return js_to_json((yield transaction.objectStore("jobs").getAll())) or []

    return await connection.transaction(["jobs"], "readonly", body)


# -- version 3 over a database of the release before -------------------------------------


def v2_record(queue: str, **fields: Any) -> dict[str, Any]:
    """A job record exactly as pyjobqueue wrote it at schema version 2 (codec.job_to_record
    of that release; no id: the store numbers it)."""
    record = {
        "queue": queue,
        "status": "PENDING",
        "input": '{"n": 1}',
        "output": None,
        "progress": 0.0,
        "progress_message": "",
        "progress_details": None,
        "max_retries": 10,
        "run_attempts": 0,
        "error": None,
        "error_code": None,
        "created_at": "2030-06-01T11:00:00.000000Z",
        "completed_at": None,
        "run_after": "2030-06-01T11:00:00.000000Z",
        "deadline_at": None,
        "last_ran_at": None,
        "job_run_id": None,
        "fingerprint": None,
        "worker_id": None,
        "lease_expires_at": None,
    }
    record.update(fields)
    return record


async def _write_v2_database(name: str, records: list[dict[str, Any]]) -> list[int]:
    """A database as the release before writes it: the first two migrations only."""
    connection = await open_database(name, [migration.steps for migration in MIGRATIONS[:2]])

    def body(transaction: JsObject) -> Generator[JsObject, Any, list[int]]:
        store = transaction.objectStore("jobs")
        requests = [store.add(json_to_js(record)) for record in records]
        yield requests[-1]
        return [int(request.result) for request in requests]

    try:
        return await connection.transaction(["jobs"], "readwrite", body)
    finally:
        connection.close()


async def test_version_3_upgrades_a_version_2_database_and_keeps_its_jobs_claimable() -> None:
    name, queue = unique("pyjobqueue-v2"), unique("old")
    later = "2030-06-01T11:30:00.000000Z"
    ids = await _write_v2_database(
        name,
        [
            v2_record(queue, input='{"n": 1}', run_after=later),
            v2_record(queue, input='{"n": 2}'),
            v2_record(queue, input='{"n": 3}', run_after="2030-06-01T13:00:00.000000Z"),
            v2_record(
                queue,
                status="COMPLETED",
                output='{"ok": true}',
                progress=100.0,
                completed_at=later,
                fingerprint="f1",
            ),
            v2_record(
                queue,
                status="PROCESSING",
                worker_id="gone",
                run_attempts=1,
                last_ran_at=later,
                lease_expires_at=later,
            ),
            v2_record(unique("other"), input='{"n": 4}'),
        ],
    )
    storage = IndexedDbQueueStorage(queue, name)
    try:
        await storage.setup_database()
        first = await storage.get(ids[0])
        assert first is not None
        assert first.input == {"n": 1} and first.run_after == datetime.fromisoformat(later)
        assert (first.kind, first.priority, first.unique_key) == (None, 0, None)
        assert (first.metadata, first.timeout_ms, first.error_traceback) == ({}, None, None)
        done = await storage.get(ids[3])
        assert done is not None and done.output == {"ok": True}
        found = await storage.find_completed_by_fingerprint("f1")
        assert found is not None and found.fields() == done.fields()
        assert [job.id for job in await storage.expired_leases(NOW)] == [ids[4]]
        assert await storage.counts() == {
            (None, JobStatus.PENDING): 3,
            (None, JobStatus.COMPLETED): 1,
            (None, JobStatus.PROCESSING): 1,
        }
        peeked = await storage.peek(JobStatus.PENDING, 10)
        assert [job.id for job in peeked] == [ids[1], ids[0], ids[2]]
        assert await storage.size(JobStatus.PENDING) == 3
        # Claimable in claim order, by a server of any kinds and one of some kinds.
        (claimed,) = await storage.claim("w", NOW, LEASE, 1, kinds=["resize"])
        assert claimed.id == ids[1]
        rest = await storage.claim("w", NOW, LEASE, 5)
        assert [job.id for job in rest] == [ids[0]]  # the third is not due yet
        assert await storage.is_paused() is False
        # A unique key is free: no old record holds one.
        (added,) = await storage.add_jobs([Job(input={}, unique_key="k")])
        assert added.created
    finally:
        await storage.close()
        await delete_database(name)


async def test_upgrade_gives_every_old_record_the_new_fields() -> None:
    name, queue = unique("pyjobqueue-v2-fields"), unique("old")
    (job_id,) = await _write_v2_database(name, [v2_record(queue)])
    storage = IndexedDbQueueStorage(queue, name)
    await storage.setup_database()
    await storage.close()
    connection = await open_database(name, [migration.steps for migration in MIGRATIONS])
    try:
        (record,) = await _raw_records(connection)
    finally:
        connection.close()
        await delete_database(name)
    assert record == {
        **v2_record(queue),
        "id": job_id,
        "kind": None,
        "priority": 0,
        "unique_key": None,
        "metadata": None,
        "timeout_ms": None,
        "error_traceback": None,
        "rank": 0,
        "kind_key": 0,
        "held_key": None,
    }


# -- upgrade steps that walk a cursor --------------------------------------------------------


def _things(database: JsObject, transaction: JsObject) -> None:
    store = database.createObjectStore("things", json_to_js({"keyPath": "id"}))
    for number in range(1, 6):
        store.put(json_to_js({"id": number}))


def _number_things(database: JsObject, transaction: JsObject) -> Generator[JsObject, Any, None]:
    request = transaction.objectStore("things").openCursor()
    cursor = yield request
    while cursor is not None:
        record = js_to_json(cursor.value)
        cursor.update(json_to_js({**record, "double": record["id"] * 2}))
        cursor.continue_()
        cursor = yield request


def _index_doubles(database: JsObject, transaction: JsObject) -> None:
    transaction.objectStore("things").createIndex("double", "double")


async def _all_things(connection: Connection) -> list[dict[str, Any]]:
    def body(transaction: JsObject) -> Generator[JsObject, Any, list[dict[str, Any]]]:
        return js_to_json((yield transaction.objectStore("things").getAll())) or []

    return await connection.transaction(["things"], "readonly", body)


async def test_an_upgrade_step_walks_a_cursor_before_the_next_step_runs() -> None:
    name = unique("pyjobqueue-walk")
    connection = await open_database(name, [_things, _number_things, _index_doubles])
    try:
        assert await _all_things(connection) == [{"id": n, "double": 2 * n} for n in range(1, 6)]

        def by_double(transaction: JsObject) -> Generator[JsObject, Any, int]:
            index = transaction.objectStore("things").index("double")
            return int((yield index.count()))

        assert await connection.transaction(["things"], "readonly", by_double) == 5
    finally:
        connection.close()
        await delete_database(name)


async def test_an_upgrade_step_that_fails_mid_walk_leaves_the_old_version() -> None:
    name = unique("pyjobqueue-walk-fails")
    seen: list[int] = []

    def fails_at_three(database: JsObject, transaction: JsObject) -> Generator[JsObject, Any, None]:
        request = transaction.objectStore("things").openCursor()
        cursor = yield request
        while cursor is not None:
            number = int(cursor.primaryKey)
            seen.append(number)
            if number == 3:
                raise LookupError("record 3 is bad")
            cursor.update(json_to_js({"id": number, "touched": True}))
            cursor.continue_()
            cursor = yield request

    (await open_database(name, [_things])).close()
    with pytest.raises(LookupError, match="record 3 is bad"):
        await open_database(name, [_things, fails_at_three])
    assert seen == [1, 2, 3]
    connection = await open_database(name, [_things])  # still version 1, untouched
    try:
        assert await _all_things(connection) == [{"id": n} for n in range(1, 6)]
    finally:
        connection.close()
        await delete_database(name)


# -- claims ------------------------------------------------------------------------------------


def at(minutes: float) -> datetime:
    return NOW + timedelta(minutes=minutes)


async def _claim_ids(storage: IndexedDbQueueStorage, limit: int, **options: Any) -> list[int]:
    return [job.id or 0 for job in await storage.claim("w", NOW, LEASE, limit, **options)]


async def test_claim_skips_ranks_whose_jobs_are_not_due_yet(
    storage: IndexedDbQueueStorage,
) -> None:
    # Many jobs of high priority that are not due must not hide a due job below them.
    ids = await storage.add_batch(
        [Job(input={"n": n}, priority=5, run_after=at(10 + n)) for n in range(50)]
        + [Job(input={}, priority=5, run_after=at(-1))]
        + [Job(input={"n": n}, priority=3, run_after=at(5)) for n in range(20)]
        + [Job(input={}, priority=1, run_after=at(-2)), Job(input={}, priority=1, run_after=at(-3))]
    )
    assert await _claim_ids(storage, 10) == [ids[50], ids[72], ids[71]]
    assert await _claim_ids(storage, 10) == []
    later = await storage.claim("w", at(20), at(30), 3)
    assert [job.id for job in later] == [ids[0], ids[1], ids[2]]


async def test_claim_merges_the_kinds_a_server_runs_in_claim_order(
    storage: IndexedDbQueueStorage,
) -> None:
    jobs: list[Job[Any, Any]] = [
        Job(input={}, kind="a", priority=1, run_after=at(-1)),  # 0
        Job(input={}, kind="b", priority=2, run_after=at(-1)),  # 1
        Job(input={}, kind=None, priority=1, run_after=at(-2)),  # 2
        Job(input={}, kind="c", priority=9, run_after=at(-9)),  # 3: not run
        Job(input={}, kind="a", priority=1, run_after=at(-1)),  # 4: ties 0, later id
        Job(input={}, kind="b", priority=2, run_after=at(1)),  # 5: not due
        Job(input={}, kind=None, priority=-1, run_after=at(-9)),  # 6
    ]
    ids = await storage.add_batch(jobs)
    assert await _claim_ids(storage, 4, kinds=["b", "a"]) == [ids[1], ids[2], ids[0], ids[4]]
    assert await _claim_ids(storage, 4, kinds=["b", "a"]) == [ids[6]]
    assert await _claim_ids(storage, 4, kinds=[]) == []  # only jobs without a kind
    assert await _claim_ids(storage, 4, kinds=["c"]) == [ids[3]]
    assert await storage.counts() == {
        ("a", JobStatus.PROCESSING): 2,
        ("b", JobStatus.PROCESSING): 1,
        ("b", JobStatus.PENDING): 1,
        ("c", JobStatus.PROCESSING): 1,
        (None, JobStatus.PROCESSING): 2,
    }


async def test_peek_and_size_by_kind_follow_the_claim_order(
    storage: IndexedDbQueueStorage,
) -> None:
    ids = await storage.add_batch(
        [
            Job(input={}, kind="a", run_after=at(2)),
            Job(input={}, kind="b", priority=7),
            Job(input={}, kind="a", priority=-3, run_after=at(-5)),
            Job(input={}, kind="a", priority=4, run_after=at(3)),
            Job(input={}),
        ]
    )
    peeked = await storage.peek(JobStatus.PENDING, 5, kind="a")
    assert [job.id for job in peeked] == [ids[3], ids[0], ids[2]]
    assert [job.id for job in await storage.peek(JobStatus.PENDING, 2)] == [ids[1], ids[3]]
    assert await storage.size(kind="a") == 3
    assert await storage.size(JobStatus.PENDING, kind="b") == 1
    assert await storage.size(JobStatus.FAILED, kind="a") == 0
    assert await storage.size() == 5


# -- unique keys --------------------------------------------------------------------------------


async def test_the_unique_index_holds_a_key_only_while_its_job_holds_it(
    storage: IndexedDbQueueStorage,
) -> None:
    added = await storage.add_jobs(
        [
            Job(input={"n": 1}, unique_key="k"),
            Job(input={"n": 2}, unique_key="k"),
            Job(input={"n": 3}),
            Job(input={"n": 4}, unique_key="j"),
            Job(input={"n": 5}, unique_key="k"),
        ]
    )
    first, _, plain, other, _ = (entry.id for entry in added)
    assert [entry.created for entry in added] == [True, False, True, True, False]
    assert [entry.id for entry in added] == [first, first, plain, other, first]
    (claimed,) = await storage.claim("w", NOW, LEASE, 1)
    assert claimed.id == first  # PROCESSING: still holds "k"
    assert (await storage.add_jobs([Job(input={}, unique_key="k")]))[0].id == first
    done = Outcome(OutcomeKind.COMPLETE, NOW, output=None)
    assert await storage.finish(first, "w", 1, done)
    (again,) = await storage.add_jobs([Job(input={}, unique_key="k")])
    assert again.created and again.id not in (first, plain, other)
    connection = await open_database(
        storage.database_name, [migration.steps for migration in MIGRATIONS]
    )
    try:
        held = {record["id"]: record["held_key"] for record in await _raw_records(connection)}
    finally:
        connection.close()
    assert held == {first: None, plain: None, other: "j", again.id: "k"}


async def test_concurrent_adds_from_many_tabs_store_one_job_per_key(
    storage: IndexedDbQueueStorage,
) -> None:
    tabs = [IndexedDbQueueStorage(storage.queue_name, storage.database_name) for _ in range(4)]
    try:
        for tab in tabs:
            await tab.setup_database()
        results = await asyncio.gather(
            *(
                tab.add_jobs([Job(input={"tab": n}, unique_key="once")])
                for n, tab in enumerate(tabs)
                for _ in range(5)
            )
        )
    finally:
        for tab in tabs:
            await tab.close()
    added = [entry for result in results for entry in result]
    assert sum(entry.created for entry in added) == 1
    assert len({entry.id for entry in added}) == 1
    assert await storage.size() == 1


# -- pause -----------------------------------------------------------------------------------


async def test_pause_is_shared_by_every_storage_of_the_queue_and_stops_claims(
    storage: IndexedDbQueueStorage,
) -> None:
    other_tab = IndexedDbQueueStorage(storage.queue_name, storage.database_name)
    other_queue = IndexedDbQueueStorage(unique("other"), storage.database_name)
    try:
        for opened in (other_tab, other_queue):
            await opened.setup_database()
            await opened.add(Job(input={}, run_after=at(-1)))
        assert await storage.set_paused(True) is True
        assert await storage.set_paused(True) is False
        assert await other_tab.is_paused() is True
        assert await other_queue.is_paused() is False
        assert await other_tab.claim("w", NOW, LEASE, 5) == []
        assert len(await other_queue.claim("w", NOW, LEASE, 5)) == 1
        assert await other_tab.set_paused(False) is True
        assert len(await storage.claim("w", NOW, LEASE, 5)) == 1
    finally:
        await other_tab.close()
        await other_queue.close()
