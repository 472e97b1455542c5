"""Permanent storage failures stop work with one clear error; transient ones are ridden out.

Real parts only: read-only and corrupt SQLite files, a dropped table, a PostgreSQL
restart with `-m immediate`. Each fault test prints its figures (run with -s).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import random
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyjobqueue import Job, JobContext, JobQueueClient, JobQueueServer, JobQueueWorker
from pyjobqueue.errors import (
    StorageConnectionError,
    StorageCorruptError,
    StorageError,
    StoredValueError,
)
from pyjobqueue.events import EventName
from pyjobqueue.storage import InMemoryQueueStorage

from .backend_postgres import (
    fresh_schema,
    require_dsn,
    restart_command,
    restart_postgres,
)
from .backend_postgres import (
    unavailable_reason as postgres_unavailable,
)
from .cli_apps.harness import POLL, Cli

needs_sqlite = pytest.mark.skipif(
    importlib.util.find_spec("aiosqlite") is None, reason="aiosqlite is not installed"
)
needs_postgres = pytest.mark.skipif(
    postgres_unavailable() is not None, reason=str(postgres_unavailable())
)
# Bounds a broken run; every wait ends as soon as what it waits for happens.
WAIT_SECONDS = 30.0


class Echo(Job[Any, Any]):
    """Returns its input."""

    async def execute(self, input: Any, context: JobContext) -> Any:
        return input


# Per test: the event that lets Gated jobs finish.
GATES: dict[str, asyncio.Event] = {}


class Gated(Job[dict[str, Any], Any]):
    """Finishes once the test opens its gate."""

    async def execute(self, input: dict[str, Any], context: JobContext) -> Any:
        await GATES[input["gate"]].wait()
        return {"n": input["n"]}


# -- helpers -------------------------------------------------------------------------


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make the file read-only for this process (root: the immutable flag)."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(0o644)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)], check=False).returncode:
        pytest.skip("root ignores permission bits, and chattr +i is not available here")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


async def make_database(path: Path, queue: str, jobs: int) -> None:
    """A real SQLite queue file holding `jobs` pending jobs (input padded to fill pages)."""
    from pyjobqueue.storage.sqlite import SqliteQueueStorage

    async with SqliteQueueStorage(path, queue) as storage:
        client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage)
        inputs = [{"n": n, "pad": "x" * 300} for n in range(jobs)]
        await client.submit_batch(inputs)
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def write_garbage_pages(path: Path, pages: int = 4) -> list[int]:
    """Random bytes over `pages` pages in the middle of the file; their numbers (from 1)."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        page_size = int(connection.execute("PRAGMA page_size").fetchone()[0])
    count = path.stat().st_size // page_size
    first = count // 2
    noise = random.Random(20_260_101)
    with path.open("r+b") as file:
        for page in range(first, first + pages):
            file.seek(page * page_size)
            file.write(noise.randbytes(page_size))
    return [page + 1 for page in range(first, first + pages)]


def pyjobqueue_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name.startswith("pyjobqueue")]


# -- classification ------------------------------------------------------------------


def sqlite_error(kind: type[sqlite3.Error], message: str, code: int) -> sqlite3.Error:
    error = kind(message)
    error.sqlite_errorcode = code
    return error


@needs_sqlite
def test_sqlite_tells_transient_from_permanent() -> None:
    from pyjobqueue.storage.sqlite import connection

    transient = [
        sqlite_error(sqlite3.OperationalError, "database is locked", 5),
        sqlite_error(sqlite3.OperationalError, "disk I/O error", 10),
    ]
    permanent = {
        "attempt to write a readonly database": (sqlite3.OperationalError, 8),
        "database disk image is malformed": (sqlite3.DatabaseError, 11),
        "file is not a database": (sqlite3.DatabaseError, 26),
        "no such table: pyjobqueue_jobs": (sqlite3.OperationalError, 1),
    }
    for error in transient:
        assert connection.is_transient(error), error
        assert connection.permanent_error("q.db", error) is None
    for message, (kind, code) in permanent.items():
        error = sqlite_error(kind, message, code)
        assert not connection.is_transient(error), message
        explained = connection.permanent_error("q.db", error)
        assert isinstance(explained, StorageError), message
        assert "'q.db'" in str(explained) and "\n" not in str(explained)
    print(f"\nsqlite: {len(transient)} transient, {len(permanent)} permanent, as expected")


@needs_postgres
def test_postgres_tells_transient_from_permanent() -> None:
    import asyncpg

    from pyjobqueue.storage.postgres import connection

    transient: list[BaseException] = [
        asyncpg.exceptions.InternalClientError("unexpected connection_lost() call"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.InterfaceError("connection is closed"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        ConnectionRefusedError(111, "Connect call failed"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
    ]
    permanent: list[BaseException] = [
        asyncpg.exceptions.InvalidPasswordError("password authentication failed"),
        asyncpg.exceptions.InvalidCatalogNameError('database "x" does not exist'),
        asyncpg.exceptions.UndefinedTableError('relation "pyjobqueue_jobs" does not exist'),
        asyncpg.exceptions.InsufficientPrivilegeError("permission denied"),
    ]
    where = "postgresql://user:***@host/db"
    for error in transient:
        assert connection.is_transient(error), error
    for error in permanent:
        assert not connection.is_transient(error), error
        explained = connection.permanent_error(where, error)
        assert isinstance(explained, StorageError), error
        assert where in str(explained)
    # A connection refused at setup is transient; a login refused is not.
    refused = StorageConnectionError("cannot connect")
    refused.__context__ = ConnectionRefusedError(111, "refused")
    login = StorageConnectionError("cannot connect")
    login.__context__ = permanent[0]
    assert connection.is_transient(refused) and not connection.is_transient(login)
    print(f"\npostgres: {len(transient)} transient, {len(permanent)} permanent, as expected")


def test_a_value_that_cannot_be_read_is_not_a_storage_failure() -> None:
    from pyjobqueue._retry import is_permanent

    storage = InMemoryQueueStorage("values")
    assert not is_permanent(storage, StoredValueError("job 1: input cannot be read"))
    assert is_permanent(storage, StorageCorruptError("file is not a database"))
    assert not is_permanent(storage, ConnectionError("reset"))


# -- read-only file ------------------------------------------------------------------


@needs_sqlite
async def test_a_read_only_file_stops_the_server_with_one_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pyjobqueue.storage.sqlite import SqliteQueueStorage

    path = tmp_path / "jobs.db"
    await make_database(path, "ro", jobs=3)
    with read_only(path):
        async with SqliteQueueStorage(path, "ro") as storage:
            server = JobQueueServer(Echo, storage=storage, poll_interval_ms=10)
            stops: list[str] = []
            server.on(EventName.SERVER_STOP, stops.append)
            caplog.set_level(logging.WARNING)
            started = time.monotonic()
            await server.start()
            with pytest.raises(StorageConnectionError, match="read-only") as raised:
                await asyncio.wait_for(server.wait_stopped(), WAIT_SECONDS)
            elapsed = time.monotonic() - started
            assert not server.is_running() and server.error is raised.value
            assert stops == ["ro"]
            # Awaiting it again raises the same error; stop() is a no-op.
            with pytest.raises(StorageConnectionError):
                await server.wait_stopped()
            await server.stop()
            assert stops == ["ro"]
            # The jobs are untouched, and reading still works.
            assert await storage.size() == 3
    records = pyjobqueue_records(caplog)
    print(f"\nread-only file: server stopped after {elapsed:.3f} s, {len(records)} log line(s)")
    assert len(records) == 1 and "read-only" in records[0].getMessage()


@needs_sqlite
async def test_a_read_only_file_stops_a_standalone_worker(tmp_path: Path) -> None:
    from pyjobqueue.storage.sqlite import SqliteQueueStorage

    path = tmp_path / "jobs.db"
    await make_database(path, "ro", jobs=1)
    with read_only(path):
        async with SqliteQueueStorage(path, "ro") as storage:
            worker = JobQueueWorker(Echo, storage=storage, poll_interval_ms=10)
            await worker.start()
            with pytest.raises(StorageConnectionError, match="read-only"):
                await asyncio.wait_for(worker.wait_stopped(), WAIT_SECONDS)
            assert not worker.is_running()
            await worker.stop()


@needs_sqlite
def test_the_cli_worker_on_a_read_only_file_exits_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    asyncio.run(make_database(path, "default", jobs=3))
    cli = Cli(f"sqlite:///{path}", "default", tmp_path)
    with read_only(path):
        started = time.monotonic()
        result = cli.run("worker", "cli_jobs:echo", *POLL)
        elapsed = time.monotonic() - started
    errors = result.stderr.splitlines()
    print(
        f"\nCLI worker on a read-only file: exit {result.returncode} after {elapsed:.1f} s, "
        f"{len(errors)} stderr line(s), {len(result.stdout.splitlines())} stdout line(s)"
    )
    assert result.returncode == 1
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("pyjobqueue: error: worker stopped: SQLite database")
    assert "read-only" in errors[0]
    assert len(result.stdout.splitlines()) <= 1  # worker_start


# -- corrupt file --------------------------------------------------------------------


@needs_sqlite
def test_commands_on_a_file_with_garbage_pages_exit_non_zero(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    asyncio.run(make_database(path, "default", jobs=2_000))
    pages = write_garbage_pages(path)
    cli = Cli(f"sqlite:///{path}", "default", tmp_path)
    figures = []
    for command in (["status"], ["jobs"], ["show", "1"], ["submit", "5"]):
        result = cli.run(*command)
        lines = result.stderr.splitlines()
        figures.append(f"{command[0]}={result.returncode}/{len(lines)}")
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert len(lines) == 1 and "corrupt" in lines[0], result.stderr
        assert str(path) in lines[0] or "jobs.db" in lines[0]
    print(f"\ngarbage over pages {pages}: exit/stderr lines {' '.join(figures)}")


@needs_sqlite
async def test_a_read_that_reaches_a_bad_page_is_a_corrupt_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyjobqueue.storage.sqlite import SqliteQueueStorage, connection

    path = tmp_path / "jobs.db"
    await make_database(path, "bad", jobs=2_000)
    write_garbage_pages(path)
    # As for a file too large to check at setup: the damage shows when a page is read.
    monkeypatch.setattr(connection, "QUICK_CHECK_MAX_BYTES", 0)
    async with SqliteQueueStorage(path, "bad") as storage:
        client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage)
        with pytest.raises(StorageCorruptError, match="corrupt") as raised:
            await client.peek(num=10_000)
        assert not storage.is_transient(raised.value)
        server = JobQueueServer(Echo, storage=storage, worker_count=4, poll_interval_ms=10)
        await server.start()
        with pytest.raises(StorageCorruptError):
            await asyncio.wait_for(server.wait_stopped(), WAIT_SECONDS)
    print(f"\nbad page read: {type(raised.value).__name__}: {raised.value}")


# -- dropped table -------------------------------------------------------------------


@needs_sqlite
async def test_a_dropped_table_is_permanent_on_sqlite(tmp_path: Path) -> None:
    from pyjobqueue.storage.sqlite import SqliteQueueStorage

    path = tmp_path / "jobs.db"
    await make_database(path, "drop", jobs=1)
    async with SqliteQueueStorage(path, "drop") as storage:
        with contextlib.closing(sqlite3.connect(path)) as other:
            other.execute("DROP TABLE pyjobqueue_jobs")
            other.commit()
        with pytest.raises(StorageCorruptError, match="table") as raised:
            await storage.get(1)
        assert not storage.is_transient(raised.value)
        client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage)
        with pytest.raises(StorageCorruptError):
            await client.wait_for(1, timeout=WAIT_SECONDS)
        server = JobQueueServer(Echo, storage=storage, poll_interval_ms=10)
        await server.start()
        with pytest.raises(StorageCorruptError):
            await asyncio.wait_for(server.wait_stopped(), WAIT_SECONDS)
    print(f"\nsqlite dropped table: {raised.value}")


@needs_postgres
async def test_a_dropped_table_is_permanent_on_postgres() -> None:
    import asyncpg

    from pyjobqueue.storage.postgres import PostgresQueueStorage

    async with (
        fresh_schema() as dsn,
        PostgresQueueStorage(dsn, "drop") as storage,
    ):
        client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage)
        handle = await client.submit(1)
        other = await asyncpg.connect(dsn)
        try:
            await other.execute("DROP TABLE pyjobqueue_jobs CASCADE")
        finally:
            await other.close()
        with pytest.raises(StorageCorruptError, match="table is missing") as raised:
            await handle.wait_for(timeout=WAIT_SECONDS)
        assert not storage.is_transient(raised.value)
        server = JobQueueServer(Echo, storage=storage, poll_interval_ms=10)
        await server.start()
        with pytest.raises(StorageCorruptError):
            await asyncio.wait_for(server.wait_stopped(), WAIT_SECONDS)
    assert "password" not in str(raised.value)
    print(f"\npostgres dropped table: {raised.value}")


# -- wait_for ------------------------------------------------------------------------


async def test_wait_for_raises_timeout_error_after_its_timeout() -> None:
    storage = InMemoryQueueStorage("timeout")
    client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage, poll_interval_ms=10)
    handle = await client.submit(1)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=f"job {handle.id} did not finish within 0.2 s"):
        await client.wait_for(handle.id, timeout=0.2)
    with pytest.raises(TimeoutError):
        await handle.wait_for(timeout=0)
    elapsed = time.monotonic() - started
    assert client._waiters == {}
    with pytest.raises(ValueError, match="timeout"):
        await client.wait_for(handle.id, timeout=-1)
    with pytest.raises(TypeError, match="timeout"):
        await client.wait_for(handle.id, timeout="1")  # type: ignore[arg-type]
    print(f"\nwait_for(timeout=0.2) and (timeout=0): TimeoutError after {elapsed:.3f} s")


class FlakyReads(InMemoryQueueStorage):
    """Reads fail `failures` times, as while a database restarts."""

    def __init__(self, queue_name: str, failures: int) -> None:
        super().__init__(queue_name)
        self.failures = failures
        self.failed = 0

    async def get(self, job_id: int) -> Any:
        if self.failed < self.failures:
            self.failed += 1
            raise ConnectionResetError(104, "Connection reset by peer")
        return await super().get(job_id)


async def test_wait_for_rides_through_transient_failures_within_its_timeout() -> None:
    storage = FlakyReads("flaky", failures=5)
    client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage, poll_interval_ms=5)
    async with JobQueueServer(Echo, storage=storage, poll_interval_ms=5):
        handle = await client.submit({"ok": 1})
        assert await handle.wait_for(timeout=WAIT_SECONDS) == {"ok": 1}
    # An outage longer than the timeout ends in TimeoutError, not in the outage's error.
    endless = FlakyReads("endless", failures=10**9)
    waiting: JobQueueClient[Any, Any] = JobQueueClient(storage=endless, poll_interval_ms=5)
    job_id = (await waiting.submit(1)).id
    with pytest.raises(TimeoutError):
        await waiting.wait_for(job_id, timeout=0.3)
    print(f"\nflaky reads: {storage.failed} ridden through; {endless.failed} until the timeout")


@needs_postgres
async def test_wait_for_rides_through_an_immediate_postgres_restart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pyjobqueue.storage.postgres import PostgresQueueStorage

    caplog.set_level(logging.DEBUG, logger="pyjobqueue.client")

    command = restart_command(mode="immediate")
    if command is None:
        pytest.skip("the test cluster's pg_ctl is not known (python build.py test sets it)")
    dsn, queue, gate = require_dsn(), f"restart-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    GATES[gate] = asyncio.Event()
    calls = 200
    async with (
        PostgresQueueStorage(dsn, queue) as server_storage,
        PostgresQueueStorage(dsn, queue) as client_storage,
    ):
        client: JobQueueClient[dict[str, Any], Any] = JobQueueClient(
            storage=client_storage, poll_interval_ms=20
        )
        await client.connect()
        server = JobQueueServer(Gated, storage=server_storage, worker_count=20, poll_interval_ms=20)
        async with server:
            handles = await client.submit_batch([{"gate": gate, "n": n} for n in range(calls)])
            # The test cluster commits asynchronously (synchronous_commit = off): flush the
            # log first, or the crash of an immediate restart can take the batch with it.
            await _checkpoint(dsn)
            waits = [asyncio.ensure_future(handle.wait_for(timeout=120)) for handle in handles]
            started = time.monotonic()
            await asyncio.to_thread(restart_postgres, command)
            restart_seconds = time.monotonic() - started
            GATES[gate].set()  # the jobs finish after the restart
            results = await asyncio.gather(*waits, return_exceptions=True)
        await client.disconnect()
    errors = [result for result in results if isinstance(result, BaseException)]
    right = sum(result == {"n": n} for n, result in enumerate(results))
    ridden = sum("reading the job failed" in record.getMessage() for record in caplog.records)
    print(
        f"\nwait_for across pg_ctl restart -m immediate ({restart_seconds:.1f} s): "
        f"{calls} calls, {right} results, {len(errors)} errors, "
        f"{ridden} failed reads ridden through" + (f" (first: {errors[0]!r})" if errors else "")
    )
    assert errors == [] and right == calls
    assert server.error is None


async def _checkpoint(dsn: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()
