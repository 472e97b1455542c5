"""What only the SQLite backend has: files, errors, schema versions, locking, polling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pyjobqueue.errors import SchemaVersionError, StorageConnectionError, StorageError
from pyjobqueue.events import JobEvent
from pyjobqueue.job import Job, JobStatus
from pyjobqueue.outcome import Outcome, OutcomeKind
from pyjobqueue.storage import (
    SqliteQueueStorage,
    SqliteRateLimiterStorage,
    default_storage,
    open_storage,
)
from pyjobqueue.storage.sqlite import migrations, queries

from .backend_sqlite import BACKEND
from .conftest import eventually

pytestmark = pytest.mark.skipif(
    BACKEND.unavailable_reason() is not None, reason=str(BACKEND.unavailable_reason())
)


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
async def storage(path: Path) -> AsyncIterator[SqliteQueueStorage]:
    async with SqliteQueueStorage(path, "q", poll_interval_ms=20) as opened:
        yield opened


def raw(path: Path) -> sqlite3.Connection:
    """A plain stdlib connection to the file, as another program would open it."""
    return sqlite3.connect(path, isolation_level=None)


@contextlib.contextmanager
def raw_session(path: Path) -> Iterator[sqlite3.Connection]:
    """`raw`, closed afterwards (sqlite3's own context manager does not close)."""
    connection = raw(path)
    try:
        yield connection
    finally:
        connection.close()


# -- files that cannot be used -------------------------------------------------------------


async def expect_error(path: str | Path, *words: str) -> str:
    """Set up a queue and a rate limiter storage at `path`; both fail with `words`."""
    for storage in (SqliteQueueStorage(path, "q"), SqliteRateLimiterStorage(path)):
        with pytest.raises(StorageError) as raised:
            await storage.setup_database()
        await storage.close()
        message = str(raised.value)
        assert str(path) in message and "\n" not in message
        assert any(word in message for word in words), message
        assert raised.value.__cause__ is None
    return message


async def test_a_file_that_is_not_sqlite_is_refused(path: Path) -> None:
    path.write_text("name,amount\nalice,3\n" * 200)
    await expect_error(path, "not a SQLite database")
    assert path.read_text().startswith("name,amount")  # untouched


async def test_a_corrupt_database_is_refused(path: Path) -> None:
    with raw_session(path) as connection:
        connection.execute("BEGIN")
        connection.execute("CREATE TABLE filler (x)")
        connection.executemany("INSERT INTO filler VALUES (?)", [(i,) for i in range(2000)])
        connection.execute("COMMIT")
    data = bytearray(path.read_bytes())
    data[100:4096] = bytes(range(256)) * 15 + bytes(156)  # the schema page, garbled
    path.write_bytes(data)
    await expect_error(path, "not a SQLite database (or it is corrupt)")


async def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "jobs.db"
    message = await expect_error(path, "does not exist")
    assert str(tmp_path / "no" / "such") in message
    assert not (tmp_path / "no").exists()  # nothing created


async def test_a_directory_is_not_a_database(tmp_path: Path) -> None:
    await expect_error(tmp_path, "is a directory")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs a /proc file system")
async def test_a_location_where_no_file_can_be_created() -> None:
    # /proc refuses new files even to root, so this runs under any user.
    await expect_error("/proc/self/pyjobqueue.db", "read-only", "writable")


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0,
    reason="permission bits do not bind root (the /proc test covers it)",
)
async def test_a_read_only_directory_is_named(tmp_path: Path) -> None:
    directory = tmp_path / "locked"
    directory.mkdir(mode=0o555)
    try:
        await expect_error(directory / "jobs.db", "read-only")
    finally:
        directory.chmod(0o755)


def test_bad_arguments_fail_at_construction(path: Path) -> None:
    with pytest.raises(TypeError):
        SqliteQueueStorage(42, "q")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="path"):
        SqliteQueueStorage("", "q")
    with pytest.raises(ValueError, match="queue_name"):
        SqliteQueueStorage(path, "")
    with pytest.raises(ValueError, match="poll_interval_ms"):
        SqliteQueueStorage(path, "q", poll_interval_ms=0)
    with pytest.raises(ValueError, match="busy_timeout_ms"):
        SqliteRateLimiterStorage(path, busy_timeout_ms=-1)


def test_a_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    monkeypatch.setitem(sys.modules, "aiosqlite", None)  # what an absent package does
    with pytest.raises(ImportError, match=r'pip install "pyjobqueue\[sqlite\]"'):
        SqliteQueueStorage(path, "q")
    with pytest.raises(ImportError, match=r"pyjobqueue\[sqlite\]"):
        SqliteRateLimiterStorage(path)


async def test_a_storage_not_set_up_or_closed_says_so(path: Path) -> None:
    storage = SqliteQueueStorage(path, "q")
    with pytest.raises(RuntimeError, match=r"not set up: await storage.setup_database\(\)"):
        await storage.add(Job(input=1))
    limits = SqliteRateLimiterStorage(path)
    with pytest.raises(RuntimeError, match="not set up"):
        await limits.execution_count("q", now())
    await storage.setup_database()
    await storage.close()
    with pytest.raises(RuntimeError, match="closed"):
        await storage.size()


# -- the file and its schema ---------------------------------------------------------------


async def test_schema_is_versioned_and_the_file_in_wal_mode(
    storage: SqliteQueueStorage, path: Path
) -> None:
    await storage.add(Job(input={"x": 1}))
    with raw_session(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        versions = connection.execute("SELECT version FROM pyjobqueue_schema_version").fetchall()
        assert versions == [(version,) for version in range(1, migrations.LATEST_VERSION + 1)]
        indexes = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"pyjobqueue_jobs_claim", "pyjobqueue_jobs_fingerprint"} <= indexes


async def test_setting_up_again_and_at_once_keeps_the_data(path: Path) -> None:
    async with SqliteQueueStorage(path, "q") as first:
        job_id = await first.add(Job(input={"keep": True}))
    again = [SqliteQueueStorage(path, "q") for _ in range(4)]
    await asyncio.gather(*(storage.setup_database() for storage in again))
    try:
        for storage in again:
            job = await storage.get(job_id)
            assert job is not None and job.input == {"keep": True}
    finally:
        for storage in again:
            await storage.close()
    with raw_session(path) as connection:
        count = connection.execute("SELECT count(*) FROM pyjobqueue_schema_version")
        assert count.fetchone() == (migrations.LATEST_VERSION,)


async def test_a_file_of_the_first_release_is_migrated_with_its_data(path: Path) -> None:
    # The first release's schema: migration 1 and the record of its version.
    with raw_session(path) as connection:
        connection.execute(queries.CREATE_MIGRATIONS_TABLE)
        for statement in migrations.MIGRATIONS[0].steps:
            connection.execute(statement)
        connection.execute(f"INSERT INTO {migrations.MIGRATIONS_TABLE} VALUES (1, 0)")
        connection.execute(
            "INSERT INTO pyjobqueue_rate_holds (queue_name, next_available_at) VALUES ('q', 7)"
        )
        connection.commit()
    async with SqliteQueueStorage(path, "q") as storage:
        job_id = await storage.add(Job(input={"kept": True}))
    async with SqliteQueueStorage(path, "q") as storage:
        job = await storage.get(job_id)
        assert job is not None and job.input == {"kept": True}
    async with SqliteRateLimiterStorage(path) as limiter:
        assert await limiter.get_next_available_time("q") == datetime(
            1970, 1, 1, 0, 0, 0, 7, tzinfo=UTC
        )
    with raw_session(path) as connection:
        versions = connection.execute(f"SELECT version FROM {migrations.MIGRATIONS_TABLE}")
        assert [row[0] for row in versions] == list(range(1, migrations.LATEST_VERSION + 1))
        # The first release's tables are still there: its processes keep working, and
        # it refuses the file once it reads the newer version.
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"pyjobqueue_rate_holds", "pyjobqueue_schema_version"} <= tables


async def test_a_schema_from_a_newer_release_is_refused(path: Path) -> None:
    async with SqliteQueueStorage(path, "q"):
        pass
    newer = migrations.LATEST_VERSION + 1
    with raw_session(path) as connection:
        connection.execute(
            "INSERT INTO pyjobqueue_schema_version (version, applied_at) VALUES (?, 0)", (newer,)
        )
    with pytest.raises(SchemaVersionError, match="newer than this pyjobqueue"):
        await SqliteQueueStorage(path, "q").setup_database()


async def test_times_keep_microseconds_and_come_back_in_utc(storage: SqliteQueueStorage) -> None:
    run_after = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    elsewhere = run_after.astimezone(datetime.now().astimezone().tzinfo)
    job_id = await storage.add(Job(input=None, run_after=elsewhere, created_at=run_after))
    job = await storage.get(job_id)
    assert job is not None
    assert job.run_after == run_after and job.run_after.tzinfo is UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        await storage.add(Job(input=None, run_after=datetime(2031, 1, 1)))
    assert await storage.size() == 1


async def test_memory_database_is_private_to_its_storage() -> None:
    async with (
        SqliteQueueStorage(":memory:", "q") as first,
        SqliteQueueStorage(":memory:", "q") as second,
    ):
        assert not first.shared_across_processes
        job_id = await first.add(Job(input=1))
        assert (await first.get(job_id)) is not None
        assert await second.size() == 0
        received: asyncio.Queue[JobEvent] = asyncio.Queue()
        unsubscribe = await first.subscribe(received.put_nowait)
        await first.publish(JobEvent("job_start", "q", job_id))
        event = await asyncio.wait_for(received.get(), 10)
        assert (event.name, event.job_id) == ("job_start", job_id)
        await unsubscribe()


async def test_urls_and_the_default_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    storage = default_storage("q")
    assert isinstance(storage, SqliteQueueStorage)
    async with storage:
        await storage.add(Job(input=1))
    assert (tmp_path / "pyjobqueue.db").is_file()
    relative = open_storage("sqlite:///relative.db", "q")
    absolute = open_storage(f"sqlite:///{tmp_path / 'absolute.db'}", "q")
    memory = open_storage("sqlite://:memory:", "q")
    for opened in (relative, absolute, memory):
        assert isinstance(opened, SqliteQueueStorage)
        async with opened:
            await opened.add(Job(input=1))
    assert (tmp_path / "relative.db").is_file() and (tmp_path / "absolute.db").is_file()
    with pytest.raises(StorageConnectionError, match="does not exist"):
        await open_storage(f"sqlite:///{tmp_path / 'missing' / 'x.db'}", "q").setup_database()


# -- locking and cancellation ----------------------------------------------------------------


class BusyLog(logging.Handler):
    """Sets an event when the storage reports that the file is busy."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.busy = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "busy" in record.getMessage():
            self.busy.set()


@pytest.fixture
def busy_log() -> Any:
    handler = BusyLog()
    logger = logging.getLogger("pyjobqueue")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


async def wait_until_busy(busy_log: BusyLog) -> None:
    async def busy() -> bool:
        return busy_log.busy.is_set()

    await eventually(busy)


async def test_a_locked_file_is_waited_for_not_reported(path: Path, busy_log: BusyLog) -> None:
    async with SqliteQueueStorage(path, "q", busy_timeout_ms=10) as storage:
        job_id = await storage.add(Job(input=1))
        other = raw(path)
        other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        claim = asyncio.create_task(storage.claim("w", now(), now() + timedelta(seconds=30), 5))
        await wait_until_busy(busy_log)  # past busy_timeout: the storage is retrying
        assert not claim.done()
        other.execute("COMMIT")
        other.close()
        assert [job.id for job in await asyncio.wait_for(claim, 10)] == [job_id]


async def test_a_cancelled_write_leaves_the_connection_sound(path: Path, busy_log: BusyLog) -> None:
    async with SqliteQueueStorage(path, "q", busy_timeout_ms=10) as storage:
        other = raw(path)
        other.execute("BEGIN IMMEDIATE")
        add = asyncio.create_task(storage.add(Job(input="cancelled")))
        await wait_until_busy(busy_log)
        add.cancel()
        with pytest.raises(asyncio.CancelledError):
            await add
        other.execute("COMMIT")
        other.close()
        # The connection goes on working. The cancelled write is whole or absent: it
        # was either already running in the connection's thread (then it finished
        # before the next statement) or still waiting out the busy file (then it never
        # ran).
        await storage.add(Job(input="next"))
        stored = sorted(job.input for job in await storage.peek(JobStatus.PENDING, 10))
        assert stored in (["next"], ["cancelled", "next"])


# -- the change feed ---------------------------------------------------------------------------


async def test_an_idle_subscriber_only_asks_whether_the_file_changed(
    storage: SqliteQueueStorage, path: Path
) -> None:
    statements: list[str] = []
    connection = storage._database._connection
    assert connection is not None
    await connection.set_trace_callback(statements.append)
    unsubscribe = await storage.subscribe(lambda event: None)

    async def polled_a_while() -> bool:
        return statements.count(queries.DATA_VERSION) >= 5

    await eventually(polled_a_while)
    seen = list(statements)
    await unsubscribe()
    first_poll = seen.index(queries.DATA_VERSION)
    # The first poll reads the feed once; after that nothing changed: no table reads.
    assert set(seen[first_poll + 2 :]) <= {queries.DATA_VERSION}


async def test_events_from_another_connection_arrive_in_order(
    storage: SqliteQueueStorage, path: Path
) -> None:
    received: asyncio.Queue[JobEvent] = asyncio.Queue()
    unsubscribe = await storage.subscribe(received.put_nowait)
    async with SqliteQueueStorage(path, "q") as publisher:
        for job_id in range(1, 51):
            await publisher.publish(JobEvent("job_progress", "q", job_id, (job_id, "", None)))
    got = [(await asyncio.wait_for(received.get(), 10)).job_id for _ in range(50)]
    assert got == list(range(1, 51))
    await unsubscribe()


async def test_old_events_are_pruned(storage: SqliteQueueStorage, path: Path) -> None:
    await storage.publish(JobEvent("job_start", "q", 1))
    with raw_session(path) as connection:
        connection.execute("UPDATE pyjobqueue_events SET created_at = 0")
    storage._feed._next_prune = 0.0  # as if the prune interval had passed
    await storage.publish(JobEvent("job_start", "q", 2))
    with raw_session(path) as connection:
        payloads = connection.execute("SELECT payload FROM pyjobqueue_events").fetchall()
    assert len(payloads) == 1 and '"job_id":2' in payloads[0][0]


async def test_an_outcome_is_never_stored_without_its_event(
    storage: SqliteQueueStorage, path: Path
) -> None:
    job_id = await storage.add(Job(input={"x": 1}))
    (claimed,) = await storage.claim("w", now(), now() + timedelta(seconds=30), 1)
    with raw_session(path) as connection:  # the event's row cannot be written
        connection.execute(
            "CREATE TRIGGER refuse_events BEFORE INSERT ON pyjobqueue_events "
            "BEGIN SELECT RAISE(ABORT, 'no room for events'); END"
        )
    done = Outcome(OutcomeKind.COMPLETE, now(), output={"ok": True})
    event = JobEvent.job_complete(storage.queue_name, job_id, {"ok": True}, "w")
    with pytest.raises(sqlite3.IntegrityError, match="no room for events"):
        await storage.finish(job_id, "w", claimed.run_attempts, done, event=event)
    job = await storage.get(job_id)
    assert job is not None and job.status is JobStatus.PROCESSING  # nothing half written
    with raw_session(path) as connection:
        connection.execute("DROP TRIGGER refuse_events")
    assert await storage.finish(job_id, "w", claimed.run_attempts, done, event=event)
    with raw_session(path) as connection:
        payloads = [row[0] for row in connection.execute("SELECT payload FROM pyjobqueue_events")]
    assert [JobEvent.from_json(json.loads(payload)) for payload in payloads] == [event]
