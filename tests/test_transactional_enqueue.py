"""Enqueue inside the application's own transaction (SPEC section 9): the job exists if
and only if that transaction commits, and servers are woken when it does."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from pyjobqueue import Job, JobContext, JobQueueClient, JobQueueServer, JobStatus
from pyjobqueue.storage import InMemoryQueueStorage, SqliteQueueStorage

from . import backend_postgres


class Ship(Job[dict[str, Any], str]):
    async def execute(self, input: dict[str, Any], context: JobContext) -> str:
        return f"shipped order {input['order']}"


class Boom(Exception):
    """The application's failure that rolls its transaction back."""


@pytest.fixture
def dsn() -> str:
    reason = backend_postgres.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    return backend_postgres.require_dsn()


async def test_postgres_jobs_exist_iff_the_transaction_commits(dsn: str) -> None:
    import asyncpg

    from pyjobqueue.storage import PostgresQueueStorage

    queue = f"tx-{uuid.uuid4().hex[:8]}"
    table = f"orders_{uuid.uuid4().hex[:8]}"
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    storage = PostgresQueueStorage(dsn, queue)
    # A poll interval far longer than the test: only the NOTIFY at commit can wake it.
    server: JobQueueServer[Any, Any] = JobQueueServer(
        Ship, storage=storage, poll_interval_ms=600_000
    )
    try:
        async with storage, server:
            client: JobQueueClient[dict[str, Any], str] = JobQueueClient(storage=storage)
            client.attach(server)
            await pool.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
            async with pool.acquire() as connection, connection.transaction():
                await connection.execute(f"INSERT INTO {table} VALUES (1)")
                handle = await client.submit({"order": 1}, connection=connection)
                keyed = await client.submit_batch(
                    [{"order": 2}, {"order": 3}],
                    unique_keys=["order-2", "order-2"],
                    connection=connection,
                )
                assert await client.get_job(handle.id) is None  # not committed yet
            assert [h.created for h in keyed] == [True, False] and keyed[0].id == keyed[1].id
            assert await handle.wait_for(timeout=20) == "shipped order 1"
            assert await keyed[0].wait_for(timeout=20) == "shipped order 2"

            with pytest.raises(Boom):
                async with pool.acquire() as connection, connection.transaction():
                    await connection.execute(f"INSERT INTO {table} VALUES (4)")
                    lost = await client.submit({"order": 4}, connection=connection)
                    raise Boom
            assert await client.get_job(lost.id) is None
            assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 1
            assert await client.size(None) == 2
    finally:
        await pool.execute(f"DROP TABLE IF EXISTS {table}")
        await pool.close()


async def test_sqlite_jobs_exist_iff_the_transaction_commits(tmp_path: Path) -> None:
    import aiosqlite

    path = tmp_path / "app.db"
    storage = SqliteQueueStorage(str(path), "tx")
    async with storage:
        client: JobQueueClient[dict[str, Any], str] = JobQueueClient(storage=storage)
        async with aiosqlite.connect(path) as connection:
            await connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
            await connection.commit()
            await connection.execute("INSERT INTO orders VALUES (1)")  # opens a transaction
            handle = await client.submit({"order": 1}, connection=connection)
            again = await client.submit({"order": 1}, unique_key="o1", connection=connection)
            same = await client.submit({"order": 1}, unique_key="o1", connection=connection)
            assert again.created and not same.created and same.id == again.id
            assert await client.get_job(handle.id) is None  # not committed yet
            await connection.commit()
            job = await client.get_job(handle.id)
            assert job is not None and job.status is JobStatus.PENDING

            await connection.execute("INSERT INTO orders VALUES (2)")
            lost = await client.submit({"order": 2}, connection=connection)
            await connection.rollback()
            assert await client.get_job(lost.id) is None
        server = JobQueueServer(Ship, storage=storage, poll_interval_ms=20)
        async with server:
            client.attach(server)
            assert await handle.wait_for(timeout=20) == "shipped order 1"
        assert await client.size(None) == 2


async def test_a_connection_of_another_kind_is_refused(tmp_path: Path) -> None:
    memory = InMemoryQueueStorage("tx")
    client: JobQueueClient[dict[str, Any], str] = JobQueueClient(storage=memory)
    with pytest.raises(TypeError, match="cannot join a transaction"):
        await client.submit({"order": 1}, connection=object())
    async with SqliteQueueStorage(str(tmp_path / "jobs.db"), "tx") as sqlite:
        client = JobQueueClient(storage=sqlite)
        with pytest.raises(TypeError, match=r"aiosqlite\.Connection"):
            await client.submit_batch([{"order": 1}], connection="not a connection")
        assert await client.size(None) == 0
