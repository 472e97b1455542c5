"""Several processes on one SQLite file: real child processes, not threads or mocks.

Servers run tests/processes/sqlite_server.py and log every execution they start, so a
test can count runs per job across processes, even of a process it killed with
SIGKILL. A watcher (tests/processes/sqlite_watch.py) is a connected client in its own
process that prints the events it receives.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pyjobqueue import (
    AbortSignalJobError,
    JobDisabledError,
    JobQueueClient,
    JobStatus,
    PermanentJobError,
)
from pyjobqueue.events import JOB_EVENTS
from pyjobqueue.storage import SqliteQueueStorage

from .backend_sqlite import BACKEND
from .children import Child
from .conftest import eventually

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        BACKEND.unavailable_reason() is not None, reason=str(BACKEND.unavailable_reason())
    ),
]

SCRIPTS = Path(__file__).resolve().parent / "processes"
Client = JobQueueClient[dict[str, Any], Any]


class Server(Child):
    """A server process; `runs()` reads its execution log."""

    def __init__(
        self, name: str, directory: Path, database: Path, queue: str, *options: str
    ) -> None:
        self.log = directory / f"{name}.log"
        script = str(SCRIPTS / "sqlite_server.py")
        super().__init__(name, directory, script, str(database), queue, str(self.log), *options)

    def lines(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [line.split() for line in self.log.read_text().splitlines()]

    def runs(self, kind: str = "start") -> list[tuple[int, int]]:
        """(job id, attempt) of every execution this server started (or finished)."""
        return [(int(line[1]), int(line[2])) for line in self.lines() if line[0] == kind]


class Watcher(Child):
    """A connected client in another process; `events` is what it printed so far."""

    def __init__(self, directory: Path, database: Path, queue: str) -> None:
        script = str(SCRIPTS / "sqlite_watch.py")
        super().__init__("watcher", directory, script, str(database), queue)
        self.events: list[tuple[str, list[Any]]] = []

    async def wait_for_event(self, name: str, job_id: int, timeout: float = 20.0) -> list[Any]:
        """The arguments of the first `name` event of `job_id` (reading more lines)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for seen, args in self.events:
                if seen == name and args[1] == job_id:
                    return args
            line = await self.read_line(max(0.01, deadline - loop.time()))
            if not line:
                raise AssertionError(f"watcher ended before {name} of job {job_id}")
            event = json.loads(line)
            self.events.append((event["name"], event["args"]))


@pytest.fixture
async def children() -> AsyncIterator[list[Child]]:
    """Child processes a test starts; any still running are killed after it."""
    started: list[Child] = []
    yield started
    for child in started:
        await child.ensure_ended()


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def queue() -> str:
    return "processes 'q' ü"


@contextlib.asynccontextmanager
async def connected_client(database: Path, queue: str) -> AsyncIterator[Client]:
    async with SqliteQueueStorage(database, queue, poll_interval_ms=20) as storage:
        client: Client = JobQueueClient(storage=storage, poll_interval_ms=20)
        await client.connect()
        try:
            yield client
        finally:
            await client.disconnect()


class Recorder:
    """Every event a client receives, and a way to wait for one of them."""

    def __init__(self, client: Client) -> None:
        self.seen: list[tuple[str, tuple[Any, ...]]] = []
        self._changed = asyncio.Event()
        for name in JOB_EVENTS:
            client.on(name, lambda *args, name=name: self._add(name, args))

    def _add(self, name: str, args: tuple[Any, ...]) -> None:
        self.seen.append((name, args))
        self._changed.set()

    async def wait(self, name: str, job_id: int, timeout: float = 20.0) -> tuple[Any, ...]:
        """The arguments of the first `name` event of `job_id`."""
        async with asyncio.timeout(timeout):
            while True:
                for seen, args in self.seen:
                    if seen == name and args[1] == job_id:
                        return args
                self._changed.clear()
                await self._changed.wait()


async def start_servers(
    children: list[Child], count: int, tmp_path: Path, database: Path, queue: str, *options: str
) -> list[Server]:
    servers = [
        Server(f"server{len(children) + index}", tmp_path, database, queue, *options)
        for index in range(count)
    ]
    children.extend(servers)
    await asyncio.gather(*(server.start() for server in servers))
    return servers


async def test_three_servers_drain_a_thousand_jobs_exactly_once(
    children: list[Child], tmp_path: Path, database: Path, queue: str
) -> None:
    async with connected_client(database, queue) as client:
        servers = await start_servers(children, 3, tmp_path, database, queue, "--workers", "4")
        handles = await client.submit_batch([{"action": "echo", "value": i} for i in range(1000)])

        async def all_completed() -> bool:
            return await client.size(JobStatus.COMPLETED) == 1000

        await eventually(all_completed, timeout=100, interval=0.2)
        for server in servers:
            await server.stop()
        jobs = await client.peek(JobStatus.COMPLETED, 2000)
    ids = {handle.id for handle in handles}
    assert {job.id for job in jobs} == ids
    assert all(job.run_attempts == 1 for job in jobs)
    assert all(job.output == {"echo": job.input["value"], "attempt": 1} for job in jobs)
    starts = collections.Counter(job_id for server in servers for job_id, _ in server.runs())
    finishes = collections.Counter(
        job_id for server in servers for job_id, _ in server.runs("done")
    )
    assert starts == finishes == collections.Counter(ids)


async def test_killed_server_job_is_recovered_after_its_lease(
    children: list[Child], tmp_path: Path, database: Path, queue: str
) -> None:
    async with connected_client(database, queue) as client:
        blocked, *quick = await client.submit_batch(
            [{"action": "block_first"}, {"action": "echo", "value": 1}, {"action": "echo"}]
        )
        events = Recorder(client)
        (doomed,) = await start_servers(
            children, 1, tmp_path, database, queue, "--workers", "1", "--lease-ms", "1500"
        )

        async def doomed_started() -> bool:
            return bool(doomed.runs())

        await eventually(doomed_started, timeout=20)
        assert doomed.runs() == [(blocked.id, 1)]
        (rescuer,) = await start_servers(
            children, 1, tmp_path, database, queue, "--workers", "2", "--lease-ms", "1500"
        )
        assert [(await handle.wait_for())["echo"] for handle in quick] == [1, None]
        # The rescuer runs but leaves a job whose lease is renewed alone.
        running = await client.get_job(blocked.id)
        assert running is not None and running.status is JobStatus.PROCESSING

        await doomed.kill()
        assert await asyncio.wait_for(blocked.wait_for(), 30) == {"attempt": 2}
        assert (await events.wait("job_retry", blocked.id))[0] == queue
        await rescuer.stop()
        job = await client.get_job(blocked.id)
        assert job is not None and job.status is JobStatus.COMPLETED and job.run_attempts == 2
        assert await client.size(JobStatus.COMPLETED) == 3
        assert await client.size(None) == 3
    assert doomed.runs() == [(blocked.id, 1)]
    assert sorted(rescuer.runs()) == sorted([(blocked.id, 2), *((job.id, 1) for job in quick)])


async def test_client_in_another_process_sees_every_event(
    children: list[Child], tmp_path: Path, database: Path, queue: str
) -> None:
    (server,) = await start_servers(children, 1, tmp_path, database, queue, "--workers", "3")
    watcher = Watcher(tmp_path, database, queue)
    children.append(watcher)
    await watcher.start()
    async with connected_client(database, queue) as client:
        events = Recorder(client)
        progress: list[tuple[Any, ...]] = []

        handle = await client.submit({"action": "progress", "steps": [25, 50, 75]})
        handle.on_progress(lambda *args: progress.append(args))
        assert await asyncio.wait_for(handle.wait_for(), 20) == "done"
        await events.wait("job_start", handle.id)
        assert progress == [(step, f"at {step}", {"step": step}) for step in (25, 50, 75)]

        failing = await client.submit({"action": "fail", "message": "broken on purpose"})
        with pytest.raises(PermanentJobError, match="broken on purpose"):
            await asyncio.wait_for(failing.wait_for(), 20)
        assert (await events.wait("job_error", failing.id))[2] == "broken on purpose"

        retrying = await client.submit({"action": "retry_once"})
        assert await asyncio.wait_for(retrying.wait_for(), 20) == {"attempt": 2}
        assert isinstance((await events.wait("job_retry", retrying.id))[2], datetime)

        aborted = await client.submit({"action": "wait_abort"})
        await events.wait("job_start", aborted.id)
        await client.abort(aborted.id)
        await events.wait("job_aborting", aborted.id)
        with pytest.raises(AbortSignalJobError):
            await asyncio.wait_for(aborted.wait_for(), 20)

        later = datetime.now(UTC) + timedelta(hours=1)
        disabled = await client.submit({"action": "echo"}, run_after=later)
        assert await client.disable(disabled.id)
        with pytest.raises(JobDisabledError):
            await asyncio.wait_for(disabled.wait_for(), 20)
        await events.wait("job_disabled", disabled.id)

    # The third process saw it all: the server's events and this client's.
    assert (await watcher.wait_for_event("job_start", handle.id))[0] == queue
    assert (await watcher.wait_for_event("job_progress", handle.id))[2:] == [
        25,
        "at 25",
        {"step": 25},
    ]
    assert (await watcher.wait_for_event("job_complete", handle.id))[2] == "done"
    assert (await watcher.wait_for_event("job_error", failing.id))[2] == "broken on purpose"
    await watcher.wait_for_event("job_retry", retrying.id)
    await watcher.wait_for_event("job_aborting", aborted.id)
    await watcher.wait_for_event("job_error", aborted.id)
    await watcher.wait_for_event("job_disabled", disabled.id)
    await watcher.stop()
    await server.stop()


async def test_rate_limiter_limits_every_process_on_the_file(
    children: list[Child], tmp_path: Path, database: Path, queue: str
) -> None:
    servers = await start_servers(
        children, 2, tmp_path, database, queue, "--workers", "3", "--rate", "3/3600"
    )
    async with connected_client(database, queue) as client:
        await client.submit_batch([{"action": "echo", "value": i} for i in range(10)])

        async def three_completed() -> bool:
            return await client.size(JobStatus.COMPLETED) == 3

        def holds(server: Server) -> int:
            return sum(1 for line in server.lines() if line[0] == "limited")

        await eventually(three_completed, timeout=30, interval=0.05)
        before = [holds(server) for server in servers]

        async def each_held_back_again() -> bool:
            return all(holds(server) > count for server, count in zip(servers, before, strict=True))

        # A claim round ends before the next check of the limiter: once each process
        # was held back after the third completion, none has a claim in flight.
        await eventually(each_held_back_again, timeout=30, interval=0.05)
        assert sum(len(server.runs()) for server in servers) == 3
        assert await client.size(JobStatus.PENDING) == 7
    for server in servers:
        await server.stop()


async def test_no_completion_event_is_lost_when_servers_are_killed_mid_run(
    children: list[Child], tmp_path: Path, database: Path, queue: str
) -> None:
    """SIGKILL servers again and again: every stored outcome reaches a connected client."""
    total = 600
    async with connected_client(database, queue) as client:
        recorder = Recorder(client)
        handles = await client.submit_batch([{"action": "echo", "value": i} for i in range(total)])
        servers = await start_servers(
            children, 2, tmp_path, database, queue, "--workers", "4", "--lease-ms", "500"
        )
        kills = 6
        for kill in range(kills):
            # Each kill lands while jobs are running: after another share has completed.
            share = (kill + 1) * total // (kills + 2)
            await eventually(functools.partial(_all_done, client, share), timeout=60)
            victim = servers[kill % len(servers)]
            await victim.kill()
            (replacement,) = await start_servers(
                children, 1, tmp_path, database, queue, "--workers", "4", "--lease-ms", "500"
            )
            servers[servers.index(victim)] = replacement
        await eventually(functools.partial(_all_done, client, total), timeout=60, interval=0.1)

        async def every_completion_seen() -> bool:
            return len(_completed_ids(recorder)) >= total

        await eventually(every_completion_seen, timeout=30)
        for server in servers:
            await server.stop()
    missed = {handle.id for handle in handles} - _completed_ids(recorder)
    print(f"{kills} SIGKILLs, {total} jobs: {total - len(missed)} completions seen")
    assert not missed


async def _all_done(client: Client, total: int) -> bool:
    return await client.size(JobStatus.COMPLETED) >= total


def _completed_ids(recorder: Recorder) -> set[int]:
    return {args[1] for name, args in recorder.seen if name == "job_complete"}


async def test_a_frozen_server_is_taken_over_and_its_late_result_dropped(
    children: list[Child], tmp_path: Path, database: Path, queue: str
) -> None:
    """SIGSTOP a server mid-job for longer than its lease, take over, then SIGCONT it."""
    async with connected_client(database, queue) as client:
        (blocked,) = await client.submit_batch([{"action": "block_first"}])
        options = ("--workers", "1", "--lease-ms", "800")
        (frozen,) = await start_servers(children, 1, tmp_path, database, queue, *options)

        async def frozen_started() -> bool:
            return bool(frozen.runs())

        await eventually(frozen_started, timeout=20)
        assert frozen.process is not None
        frozen.process.send_signal(signal.SIGSTOP)
        try:
            (rescuer,) = await start_servers(children, 1, tmp_path, database, queue, *options)
            assert await asyncio.wait_for(blocked.wait_for(), 30) == {"attempt": 2}
        finally:
            frozen.process.send_signal(signal.SIGCONT)
        # Awake again, the frozen server finds its lease gone: it drops its attempt and
        # goes on working.
        later = await client.submit({"action": "echo", "value": 7})
        assert (await asyncio.wait_for(later.wait_for(), 30))["echo"] == 7
        for server in (frozen, rescuer):
            await server.stop()
        job = await client.get_job(blocked.id)
    assert job is not None and job.status is JobStatus.COMPLETED
    assert (job.output, job.run_attempts) == ({"attempt": 2}, 2)
    assert (blocked.id, 1) in frozen.runs("done")  # its body ended; its result was not kept
    print(
        f"frozen past its lease: attempt 1 ran in the frozen server, attempt 2 in the "
        f"rescuer; stored: {job.output}"
    )
