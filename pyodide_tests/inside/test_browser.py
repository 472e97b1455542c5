"""Browser-only behaviour, run inside Pyodide (Node 24 with fake-indexeddb, and Chromium).

pyodide_tests/runner.py ships this file as tests/test_inside_browser.py next to the
contract suites, which cover every storage operation; these tests cover what only the
IndexedDB backend and the browser modules have: the runtime seam, value fidelity,
schema versions, transaction failures, proxy leaks and Web Locks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import uuid
from collections.abc import AsyncIterator, Callable, Generator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest

from pyjobqueue import JobQueueClient, JobQueueServer, JobStatus, job
from pyjobqueue._platform import IN_PYODIDE
from pyjobqueue.browser import WebLocksLeaderLock
from pyjobqueue.browser._ffi import JsObject, create_proxy, js_global, js_to_json, json_to_js
from pyjobqueue.browser._idb import IndexedDbError, delete_database, open_database
from pyjobqueue.errors import SchemaVersionError
from pyjobqueue.events import JobEvent
from pyjobqueue.job import Job
from pyjobqueue.outcome import Outcome, OutcomeKind
from pyjobqueue.storage import (
    IndexedDbQueueStorage,
    IndexedDbRateLimiterStorage,
    default_storage,
    open_storage,
)
from pyjobqueue.storage.indexeddb import queue as indexeddb_queue

pytestmark = pytest.mark.skipif(not IN_PYODIDE, reason="runs inside Pyodide only")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def storage() -> AsyncIterator[IndexedDbQueueStorage]:
    opened = IndexedDbQueueStorage(unique("inside"), unique("pyjobqueue-inside"))
    await opened.setup_database()
    yield opened
    await opened.close()
    await delete_database(opened.database_name)


# -- the runtime seam ------------------------------------------------------------------


def test_pyodide_defaults_to_indexeddb() -> None:
    storage = default_storage("jobs")
    assert isinstance(storage, IndexedDbQueueStorage)
    assert (storage.database_name, storage.queue_name) == ("pyjobqueue", "jobs")
    named = open_storage("indexeddb://my%20jobs", "q")
    assert isinstance(named, IndexedDbQueueStorage)
    assert named.database_name == "my jobs"
    assert isinstance(open_storage("indexeddb://", "q"), IndexedDbQueueStorage)


async def test_wait_for_with_a_deadline_already_passed_times_out() -> None:
    """Pyodide's WebLoop raised ValueError here; pyjobqueue._platform fixes it on import."""
    loop = asyncio.get_running_loop()
    ran = asyncio.Event()
    loop.call_at(loop.time() - 1, ran.set)  # CPython's loops run this at once
    await asyncio.wait_for(ran.wait(), 5)
    never = asyncio.Event()
    for _ in range(2000):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(never.wait(), 0.00001)


# -- values --------------------------------------------------------------------------------


async def test_times_round_trip_as_aware_utc_to_the_microsecond(
    storage: IndexedDbQueueStorage,
) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    created = datetime(2031, 2, 3, 4, 5, 6, 789123, tzinfo=india)
    far = datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    early = datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC)
    job_id = await storage.add(Job(input={}, created_at=created, run_after=early, deadline_at=far))
    stored = await storage.get(job_id)
    assert stored is not None
    assert stored.created_at == created and stored.created_at.tzinfo is UTC
    assert stored.run_after == early
    assert stored.deadline_at == far
    assert [job.id for job in await storage.peek(JobStatus.PENDING, 5)] == [job_id]


async def test_naive_datetimes_are_refused_before_anything_is_stored(
    storage: IndexedDbQueueStorage,
) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await storage.add(Job(input={}, run_after=datetime(2030, 1, 1)))
    with pytest.raises(ValueError, match="timezone-aware"):
        await storage.add_batch([Job(input={}), Job(input={}, deadline_at=datetime(2030, 1, 1))])
    assert await storage.size() == 0


async def test_json_values_keep_their_exact_form(storage: IndexedDbQueueStorage) -> None:
    value = {"b": 1.0, "2": None, "a": [True, 0, -0.5, "ünï\u2028", {"": []}], "1": 10**15}
    job_id = await storage.add(Job(input=value))
    stored = await storage.get(job_id)
    assert stored is not None
    assert stored.input == value
    assert list(stored.input) == ["b", "2", "a", "1"]  # JS objects would reorder "1", "2"
    assert isinstance(stored.input["b"], float)  # JSON.parse would make 1.0 an int
    assert stored.output is None and stored.progress_details is None


# -- schema versions and failures ------------------------------------------------------------


def _store_body(
    action: Callable[[JsObject], Any],
) -> Callable[[JsObject], Generator[JsObject, Any, Any]]:
    def body(transaction: JsObject) -> Generator[JsObject, Any, Any]:
        result = action(transaction.objectStore("things"))
        if result is not None:
            return js_to_json((yield result))
        return None

    return body


async def test_versioned_upgrades_run_each_migration_once() -> None:
    name = unique("pyjobqueue-versions")
    ran: list[int] = []

    def v1(database: JsObject, transaction: JsObject) -> None:
        ran.append(1)
        database.createObjectStore("things", json_to_js({"keyPath": "id"}))

    def v2(database: JsObject, transaction: JsObject) -> None:
        ran.append(2)
        transaction.objectStore("things").createIndex("by_kind", "kind")

    first = await open_database(name, [v1])
    await first.transaction(
        ["things"], "readwrite", _store_body(lambda s: s.put(json_to_js({"id": 1, "kind": "a"})))
    )
    upgraded = await open_database(name, [v1, v2])  # closes `first` (versionchange)
    assert ran == [1, 2]
    with pytest.raises(SchemaVersionError, match="upgraded by a newer pyjobqueue"):
        await first.transaction(["things"], "readonly", _store_body(lambda s: s.count()))
    kept = await upgraded.transaction(["things"], "readonly", _store_body(lambda s: s.get(1)))
    assert kept == {"id": 1, "kind": "a"}
    again = await open_database(name, [v1, v2])
    assert ran == [1, 2]
    with pytest.raises(SchemaVersionError, match="VersionError"):
        await open_database(name, [v1])  # an older pyjobqueue cannot open a newer schema
    for connection in (upgraded, again):
        connection.close()
    await delete_database(name)


async def test_a_failing_transaction_stores_nothing() -> None:
    name = unique("pyjobqueue-failures")

    def v1(database: JsObject, transaction: JsObject) -> None:
        database.createObjectStore("things", json_to_js({"keyPath": "id"}))

    connection = await open_database(name, [v1])

    def put_then_raise(transaction: JsObject) -> Generator[JsObject, Any, None]:
        store = transaction.objectStore("things")
        yield store.put(json_to_js({"id": 1}))
        raise LookupError("changed my mind")

    with pytest.raises(LookupError, match="changed my mind"):
        await connection.transaction(["things"], "readwrite", put_then_raise)

    def add_twice(transaction: JsObject) -> Generator[JsObject, Any, None]:
        store = transaction.objectStore("things")
        store.add(json_to_js({"id": 2}))
        yield store.add(json_to_js({"id": 2}))

    with pytest.raises(IndexedDbError, match="ConstraintError"):
        await connection.transaction(["things"], "readwrite", add_twice)
    count = await connection.transaction(["things"], "readonly", _store_body(lambda s: s.count()))
    assert count == 0
    connection.close()
    await delete_database(name)


async def test_closed_storage_refuses_work(storage: IndexedDbQueueStorage) -> None:
    await storage.close()
    with pytest.raises(RuntimeError, match="closed"):
        await storage.size()
    with pytest.raises(RuntimeError, match="closed"):
        await storage.publish(JobEvent("job_start", storage.queue_name, 1))


# -- pages ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def without_get_all_records() -> Generator[None, None, None]:
    """IndexedDB as browsers before getAllRecords have it (Chromium 141 added it)."""
    prototype = js_global().IDBObjectStore.prototype
    saved = prototype.getAllRecords
    js_global().Reflect.deleteProperty(prototype, "getAllRecords")
    try:
        yield
    finally:
        prototype.getAllRecords = saved


async def test_pages_read_in_batches_or_by_cursor_alike(
    storage: IndexedDbQueueStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another queue's jobs in the same database, between this one's.
    other = IndexedDbQueueStorage(unique("other"), storage.database_name)
    await other.setup_database()
    mine: list[tuple[int, str]] = []
    for n in range(12):
        kind = "mail" if n % 3 else "resize"
        mine.append((await storage.add(Job(input={"n": n}, kind=kind)), kind))
        await other.add(Job(input={"n": n}, kind=kind))
    await storage.abort(mine[4][0], datetime.now(UTC))  # one FAILED job
    newest_first = [job_id for job_id, _kind in reversed(mine)]

    async def walk(**query: Any) -> list[int]:
        """Every page of 2, newest first, as ids."""
        found: list[int] = []
        before = None
        while True:
            page = await storage.list_jobs(before_id=before, limit=2, **query)
            found += [job.id for job in page if job.id is not None]
            if len(page) < 2:
                return found
            before = page[-1].id

    monkeypatch.setattr(indexeddb_queue, "PAGE_BATCH", 3)  # batches that end mid-page
    expected = {
        "all": newest_first,
        "mail": [job_id for job_id, kind in reversed(mine) if kind == "mail"],
        "failed": [mine[4][0]],
    }
    for reading in ("batches", "cursor"):
        with contextlib.ExitStack() as stack:
            if reading == "cursor":
                stack.enter_context(without_get_all_records())
            seen = {
                "all": await walk(),
                "mail": await walk(kind="mail"),
                "failed": await walk(status=JobStatus.FAILED),
            }
        assert seen == expected, reading
    await other.close()


# -- the events log ----------------------------------------------------------------------------


async def _next_job_event(events: asyncio.Queue[JobEvent]) -> JobEvent:
    while True:
        event = await asyncio.wait_for(events.get(), 20)
        if event.name != "job_available":
            return event


async def test_a_tab_that_missed_messages_reads_them_from_the_log_once_in_order(
    storage: IndexedDbQueueStorage,
) -> None:
    # Another "tab": a storage of its own on the same database and queue.
    writer = IndexedDbQueueStorage(storage.queue_name, storage.database_name)
    await writer.setup_database()
    received: asyncio.Queue[JobEvent] = asyncio.Queue()
    unsubscribe = await storage.subscribe(received.put_nowait)
    try:
        first = JobEvent.job_start(storage.queue_name, 1, "other tab")
        await writer.publish(first)
        assert await _next_job_event(received) == first
        # This tab goes deaf (as a frozen tab does): the messages of the next events are lost.
        channel = cast(Any, storage)._engine.feed._channel
        receiver = channel._receiver
        channel._receiver = None
        missed = [
            JobEvent.job_complete(storage.queue_name, n, {"n": n}, "other tab")
            for n in range(2, 42)
        ]
        for event in missed:
            await writer.publish(event)
        channel._receiver = receiver  # awake again: the next message shows the gap
        last = JobEvent.job_error(storage.queue_name, 42, "late", "PermanentJobError", "x")
        await writer.publish(last)
        got = [await _next_job_event(received) for _ in range(len(missed) + 1)]
        assert got == [*missed, last]
        # Asleep again, and nothing comes after: the periodic look at the log finds them.
        channel._receiver = None
        tail = [JobEvent.job_start(storage.queue_name, n, "other tab") for n in range(43, 46)]
        for event in tail:
            await writer.publish(event)
        assert [await _next_job_event(received) for _ in tail] == tail
        assert received.empty()
    finally:
        await unsubscribe()
        await writer.close()


# -- proxies ---------------------------------------------------------------------------------


class ProxyCount:
    """Live Python-to-JavaScript proxies, from Pyodide's allocation tracing."""

    def __init__(self) -> None:
        import pyodide_js

        self.module = pyodide_js._module

    def __enter__(self) -> ProxyCount:
        self.module.enable_pyproxy_allocation_tracing()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.module.disable_pyproxy_allocation_tracing()

    def now(self) -> int:
        gc.collect()
        return int(self.module.pyproxy_alloc_map.size)


def test_the_proxy_count_sees_a_leak() -> None:
    with ProxyCount() as proxies:
        before = proxies.now()
        leaked = [create_proxy(lambda: None) for _ in range(5)]
        assert proxies.now() == before + 5
        for proxy in leaked:
            proxy.destroy()
        assert proxies.now() == before


async def _work_cycle(storage: IndexedDbQueueStorage, index: int) -> None:
    """Nine operations: every kind of transaction and the event feed."""
    job_id = await storage.add(Job(input={"i": index}, job_run_id="leak"))
    now = datetime.now(UTC)
    (claimed,) = await storage.claim("w", now, now + timedelta(seconds=30), 1)
    assert claimed.id == job_id
    await storage.save_progress(job_id, "w", 1, 50, "half", {"i": index})
    await storage.renew_lease(job_id, "w", 1, now + timedelta(seconds=60))
    assert await storage.finish(job_id, "w", 1, Outcome(OutcomeKind.COMPLETE, now, output=index))
    assert (await storage.get(job_id)) is not None
    assert len(await storage.get_by_run_id("leak")) == 1
    await storage.publish(JobEvent("job_complete", storage.queue_name, job_id, (index,)))
    assert await storage.delete(job_id)


async def test_thousands_of_operations_leak_no_proxies(storage: IndexedDbQueueStorage) -> None:
    seen: collections.Counter[str] = collections.Counter()  # events, without keeping them
    unsubscribe = await storage.subscribe(lambda event: seen.update([event.name]))
    limits = IndexedDbRateLimiterStorage(storage.database_name)
    with ProxyCount() as proxies:
        for index in range(10):  # warm up: connections, channels, caches
            await _work_cycle(storage, index)
        await limits.try_record_execution("leak", 10**6, datetime.now(UTC), datetime.now(UTC))
        proxies_before, objects_before = proxies.now(), len(gc.get_objects())
        cycles = 300
        for index in range(cycles):
            await _work_cycle(storage, index)
            now = datetime.now(UTC)
            await limits.try_record_execution("leak", 10**6, now - timedelta(seconds=1), now)
        proxies_after, objects_after = proxies.now(), len(gc.get_objects())
    await unsubscribe()
    await limits.close()
    assert seen["job_complete"] == cycles + 10
    assert proxies_after - proxies_before <= 1, f"{proxies_after - proxies_before} proxies leaked"
    grown = objects_after - objects_before
    assert grown < cycles / 10, f"{grown} more Python objects after {cycles} cycles"


# -- Web Locks -------------------------------------------------------------------------------


async def _held(lock: WebLocksLeaderLock, timeout: float = 5) -> bool:
    try:
        await asyncio.wait_for(asyncio.shield(lock.acquire()), timeout)
    except TimeoutError:
        return False
    return True


async def test_web_lock_has_one_holder_and_passes_on_release() -> None:
    name = unique("lock")
    first, second, third = (WebLocksLeaderLock(name) for _ in range(3))
    await first.acquire()
    waiting = asyncio.ensure_future(second.acquire())
    withdrawn = asyncio.ensure_future(third.acquire())
    await asyncio.sleep(0.2)
    assert not waiting.done() and not withdrawn.done()
    withdrawn.cancel()  # a cancelled wait gives up its place in the queue
    with pytest.raises(asyncio.CancelledError):
        await withdrawn
    await first.release()
    await asyncio.wait_for(waiting, 5)
    assert await _held(third, 0.3) is False  # `second` holds it now
    await second.release()
    await first.release()  # releasing twice is harmless
    with pytest.raises(ValueError, match="non-empty"):
        WebLocksLeaderLock("")


async def test_web_lock_cycles_leak_no_proxies() -> None:
    name = unique("lock-cycles")
    lock = WebLocksLeaderLock(name)
    with ProxyCount() as proxies:
        await lock.acquire()
        await lock.release()
        before = proxies.now()
        for _ in range(200):
            await lock.acquire()
            await lock.release()
        assert proxies.now() - before <= 1


@job
async def double(input: dict[str, int], context: Any) -> int:
    return input["n"] * 2


async def test_web_locks_let_one_server_process_and_hand_over() -> None:
    queue, database = unique("leader"), unique("pyjobqueue-leader")
    storages = [IndexedDbQueueStorage(queue, database) for _ in range(3)]
    servers = [
        JobQueueServer(
            double,
            storage=storages[i],
            leader_lock=WebLocksLeaderLock(f"pyjobqueue {database} {queue}"),
            poll_interval_ms=20,
        )
        for i in range(2)
    ]
    client: JobQueueClient[dict[str, int], int] = JobQueueClient(storage=storages[2])
    await client.connect()
    try:
        for server in servers:
            await server.start()
        while not any(server.is_leader() for server in servers):
            await asyncio.sleep(0.01)
        leader = next(server for server in servers if server.is_leader())
        follower = next(server for server in servers if server is not leader)
        handle = await client.submit({"n": 21})
        assert await asyncio.wait_for(handle.wait_for(), 10) == 42
        assert leader.get_stats().completed_jobs == 1 and not follower.is_leader()
        await leader.stop()
        handle = await client.submit({"n": 5})
        assert await asyncio.wait_for(handle.wait_for(), 10) == 10
        assert follower.is_leader() and follower.get_stats().completed_jobs == 1
    finally:
        await client.disconnect()
        for server in servers:
            await server.stop()
        for opened in storages:
            await opened.close()
        await delete_database(database)
