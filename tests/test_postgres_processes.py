"""Several machines, played by processes: servers in child processes share one database.

Each server runs tests/processes/postgres_server.py and logs every execution it starts,
so the tests can count runs per job across processes, even of a process they kill.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from pyjobqueue import JobQueueClient, JobStatus, PermanentJobError

from .backend_postgres import (
    ServerProcess,
    fresh_schema,
    require_dsn,
    restart_command,
    restart_postgres,
    unavailable_reason,
)
from .conftest import eventually

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]

if unavailable_reason() is None:
    from pyjobqueue.storage.postgres import PostgresQueueStorage

Client = JobQueueClient[dict[str, Any], Any]
StartServer = Callable[..., Any]


@contextlib.asynccontextmanager
async def connected_client(dsn: str, queue: str, **options: Any) -> AsyncIterator[Client]:
    """A client on its own storage (own pool and LISTEN connection), connected."""
    async with PostgresQueueStorage(dsn, queue) as storage:
        client: Client = JobQueueClient(storage=storage, **options)
        await client.connect()
        try:
            yield client
        finally:
            await client.disconnect()


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[list[ServerProcess]]:
    """Server processes a test starts; any still running are stopped (or killed) after it."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        if server.process is not None and server.process.returncode is None:
            with contextlib.suppress(AssertionError):
                await server.stop()


async def start_server(
    started: list[ServerProcess], dsn: str, queue: str, directory: Path, **options: Any
) -> ServerProcess:
    server = ServerProcess(dsn, queue, f"server{len(started)}", directory, **options)
    started.append(server)
    await server.start()
    return server


def runs_per_job(servers: list[ServerProcess]) -> collections.Counter[int]:
    return collections.Counter(job_id for server in servers for job_id, _, _ in server.runs())


async def completed(client: Client, count: int) -> bool:
    return await client.size(JobStatus.COMPLETED) >= count


async def test_four_servers_drain_2000_jobs_exactly_once(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    queue = f"drain-{uuid.uuid4().hex[:8]}"
    # A new schema: the four processes also race to create the tables. Leases are the
    # default 30 s, so only a double claim could make a job run twice.
    async with fresh_schema() as dsn:
        await asyncio.gather(
            *(start_server(servers, dsn, queue, tmp_path, workers=4) for _ in range(4))
        )
        async with connected_client(dsn, queue) as client:
            handles = await client.submit_batch([{"n": n} for n in range(2000)])
            await eventually(lambda: completed(client, 2000), timeout=90, interval=0.2)
            outputs = await asyncio.gather(*(handle.wait_for() for handle in handles))
            jobs = await client.peek(JobStatus.COMPLETED, 5000)
        for server in servers:
            assert await server.stop() == 0, server.stderr()
    assert [output["n"] for output in outputs] == list(range(2000))
    assert len(jobs) == 2000 and {job.run_attempts for job in jobs} == {1}
    runs = runs_per_job(servers)
    assert sorted(runs) == sorted(handle.id for handle in handles)
    assert set(runs.values()) == {1}, "a job ran more than once"
    # The work was shared: every process ran jobs, none of them all.
    assert all(0 < len(server.runs()) < 2000 for server in servers)


async def test_a_killed_server_s_job_is_recovered_by_another(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    dsn, queue = require_dsn(), f"kill-{uuid.uuid4().hex[:8]}"
    victim = await start_server(servers, dsn, queue, tmp_path, lease_ms=1000)
    async with connected_client(dsn, queue) as client:
        retries: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        client.on("job_retry", lambda *args: retries.put_nowait(args))
        handle = await client.submit({"n": 1, "hang_in": victim.name})
        await eventually(lambda: _has_run(victim, handle.id))
        await victim.kill()
        # The survivor's own leases are long: on a loaded machine a stall of its event
        # loop must not make its attempt expire too.
        survivor = await start_server(servers, dsn, queue, tmp_path)
        assert await asyncio.wait_for(handle.wait_for(), 30) == {"n": 1, "server": survivor.name}
        queue_name, job_id, _run_after = await asyncio.wait_for(retries.get(), 10)
        assert (queue_name, job_id) == (queue, handle.id)
        job = await client.get_job(handle.id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.run_attempts == 2
    assert [attempt for job_id, attempt, _ in victim.runs() if job_id == handle.id] == [1]
    assert [attempt for job_id, attempt, _ in survivor.runs() if job_id == handle.id] == [2]
    assert await survivor.stop() == 0, survivor.stderr()


async def _has_run(server: ServerProcess, job_id: int) -> bool:
    return any(run[0] == job_id for run in server.runs())


async def test_a_postgres_restart_mid_run_loses_nothing(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    command = restart_command()
    if command is None:
        pytest.skip("PYJOBQUEUE_TEST_PG_CTL / PYJOBQUEUE_TEST_PGDATA are not set")
    dsn, queue = require_dsn(), f"restart-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        await start_server(servers, dsn, queue, tmp_path, workers=3, lease_ms=2000)
    async with connected_client(dsn, queue, poll_interval_ms=50) as client:
        completions: list[int] = []
        client.on("job_complete", lambda _queue, job_id, _output: completions.append(job_id))
        # Jobs report progress as they go: the restart meets some of them mid-job.
        inputs = [{"n": n, "sleep": 0.03, "steps": [25, 50, 75]} for n in range(150)]
        handles = await client.submit_batch(inputs)
        await eventually(lambda: completed(client, 20), timeout=60)
        await asyncio.to_thread(restart_postgres, command)
        # Servers and this client reconnect by themselves; every job ends COMPLETED.
        await eventually(lambda: _all_completed(client, handles), timeout=90, interval=0.2)
        # The client's LISTEN connection is back too: a new job's completion reaches it.
        late = await client.submit({"n": 150})
        assert (await asyncio.wait_for(late.wait_for(), 30))["n"] == 150
        await eventually(lambda: _contains(completions, late.id))
    # The restart dropped the client's LISTEN connection: it replayed what it missed.
    wanted = {handle.id for handle in handles} | {late.id}
    missed = wanted - set(completions)
    print(f"job_complete across a restart: {len(wanted) - len(missed)} of {len(wanted)} seen")
    assert not missed, f"{len(missed)} completions never reached the connected client"
    runs = runs_per_job(servers)
    assert all(runs[handle.id] >= 1 for handle in handles)
    for server in servers:
        assert await server.stop() == 0, server.stderr()


async def _all_completed(client: Client, handles: list[Any]) -> bool:
    return await client.size(JobStatus.COMPLETED) >= len(handles)


async def _contains(values: list[int], value: int) -> bool:
    return value in values


async def test_a_client_elsewhere_sees_events_and_results(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    dsn, queue = require_dsn(), f"client-{uuid.uuid4().hex[:8]}"
    await start_server(servers, dsn, queue, tmp_path, workers=2)
    # Hour-long polls: only notifications from the server process can end these waits.
    async with connected_client(dsn, queue, poll_interval_ms=3_600_000) as client:
        seen: list[tuple[Any, ...]] = []
        for name in ("job_start", "job_progress", "job_complete", "job_error"):
            client.on(name, lambda *args, name=name: seen.append((name, *args)))
        progress: list[tuple[Any, ...]] = []
        stepped = await client.submit({"n": 1, "steps": [25, 75]})
        stepped.on_progress(lambda *args: progress.append(args))
        failing = await client.submit({"fail": "no way"})
        big = await client.submit({"big": 50_000})
        assert await asyncio.wait_for(stepped.wait_for(), 30) == {"n": 1, "server": "server0"}
        with pytest.raises(PermanentJobError, match="no way"):
            await asyncio.wait_for(failing.wait_for(), 30)
        assert await asyncio.wait_for(big.wait_for(), 30) == "x" * 50_000
    assert progress == [(25.0, "step 25", {"step": 25}), (75.0, "step 75", {"step": 75})]
    names = [event[0] for event in seen if event[2] == stepped.id]
    assert names == ["job_start", "job_progress", "job_progress", "job_complete"]
    assert ("job_error", queue, failing.id, "no way") in seen
