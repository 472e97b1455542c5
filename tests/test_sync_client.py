"""SyncClient (SPEC section 9): blocking calls from many threads, one loop and one pool for
its life, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyjobqueue import Job, JobContext, JobQueueServer, JobStatus, PermanentJobError
from pyjobqueue.storage import SqliteQueueStorage, open_storage
from pyjobqueue.sync import SyncClient

from . import backend_postgres


class Double(Job[dict[str, Any], dict[str, Any]]):
    async def execute(self, input: dict[str, Any], context: JobContext) -> dict[str, Any]:
        if input.get("fail"):
            raise PermanentJobError("refused")
        return {"doubled": input["n"] * 2}


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def test_many_threads_share_one_client_and_get_every_output(sqlite_url: str) -> None:
    client = SyncClient(sqlite_url, "threads")
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            for n in range(10):
                job_id = client.submit({"n": thread * 100 + n})
                results[job_id] = client.wait_for(job_id, timeout=60)
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)

    async def serve_until_done() -> None:
        storage = open_storage(sqlite_url, "threads")
        async with storage, JobQueueServer(Double, storage=storage, poll_interval_ms=20):
            threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                await asyncio.to_thread(thread.join)

    with client:
        asyncio.run(serve_until_done())
        assert not errors, errors
        assert len(results) == 60
        assert sorted(output["doubled"] for output in results.values()) == sorted(
            2 * (t * 100 + n) for t in range(6) for n in range(10)
        )
        assert client.size(JobStatus.COMPLETED) == 60
        assert client.size(None) == 60


def test_errors_timeouts_and_batches_come_through(sqlite_url: str) -> None:
    with SyncClient(lambda: SqliteQueueStorage(sqlite_url[len("sqlite:///") :], "q")) as client:
        ids = client.submit_batch([{"n": 1}, {"n": 2, "fail": True}])
        pending = client.submit({"n": 3}, priority=5)
        with pytest.raises(TimeoutError):
            client.wait_for(pending, timeout=0.05)  # no server runs yet
        job = client.get_job(pending)
        assert job is not None and job.priority == 5 and job.status is JobStatus.PENDING
        assert [j.id for j in client.peek(JobStatus.PENDING)] == [pending, *ids]
        client.abort(pending)

        async def run_two() -> None:
            storage = SqliteQueueStorage(sqlite_url[len("sqlite:///") :], "q")
            async with storage, JobQueueServer(Double, storage=storage, poll_interval_ms=20):
                await asyncio.to_thread(client.wait_for, ids[0], 60)

        asyncio.run(run_two())
        assert client.wait_for(ids[0]) == {"doubled": 2}
        with pytest.raises(PermanentJobError, match="refused"):
            client.wait_for(ids[1])
        assert client.get_job(pending) is not None
        assert client.get_job(10**9) is None
    with pytest.raises(RuntimeError, match="closed"):
        client.submit({"n": 4})
    client.close()  # twice is fine


def test_bad_arguments_are_clear() -> None:
    with pytest.raises(TypeError, match="needs the queue name"):
        SyncClient("memory://")
    with pytest.raises(TypeError, match="URL or a callable"):
        SyncClient(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a QueueStorage"):
        SyncClient(lambda: "not a storage")  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="unknown storage url"):
        SyncClient("nosuch://x", "q")
    with SyncClient("memory://", "q") as client, pytest.raises(TypeError, match="priority"):
        client.submit({"n": 1}, priority="high")


@pytest.fixture
def postgres_dsn() -> Iterator[str]:
    reason = backend_postgres.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    yield backend_postgres.require_dsn()


def test_a_postgres_client_outlives_many_event_loops(postgres_dsn: str) -> None:
    """The pool lives on the client's own loop: other loops come and go around it."""
    queue = f"sync-{uuid.uuid4().hex[:8]}"
    with SyncClient(postgres_dsn, queue) as client:
        first = client.submit({"n": 20})
        for round_number in range(3):  # three asyncio.run, as three requests of an app

            async def one_round(job_id: int) -> None:
                storage = open_storage(postgres_dsn, queue)
                async with storage, JobQueueServer(Double, storage=storage, poll_interval_ms=20):
                    await asyncio.to_thread(client.wait_for, job_id, 60)

            job_id = first if round_number == 0 else client.submit({"n": round_number})
            asyncio.run(one_round(job_id))
        assert client.wait_for(first) == {"doubled": 40}
        assert client.size(JobStatus.COMPLETED) == 3
