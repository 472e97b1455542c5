"""server.serve() and pyjobqueue.run (SPEC section 9): an embedded server stops by the
signal rules of the CLI, in a real process sent real signals."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pyjobqueue import JobQueueClient, JobStatus
from pyjobqueue.storage import SqliteQueueStorage

from .children import child_environment

APP = textwrap.dedent(
    """
    import asyncio, logging, sys
    import pyjobqueue
    from pyjobqueue import Job, JobContext, JobQueueServer
    from pyjobqueue.storage import SqliteQueueStorage

    class Slow(Job[dict, dict]):
        async def execute(self, input: dict, context: JobContext) -> dict:
            print("started", context.job.id, flush=True)
            await asyncio.sleep(input["seconds"])
            return {"slept": input["seconds"]}

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    storage = SqliteQueueStorage(sys.argv[1], "app")
    server = JobQueueServer(Slow, storage=storage, poll_interval_ms=20, stop_timeout_ms=30_000)
    pyjobqueue.run(server)
    print("exited cleanly", flush=True)
    """
)


async def submit(path: Path, seconds: float) -> int:
    async with SqliteQueueStorage(str(path), "app") as storage:
        client: JobQueueClient[dict[str, float], dict[str, float]] = JobQueueClient(storage=storage)
        return (await client.submit({"seconds": seconds})).id


async def status_of(path: Path, job_id: int) -> tuple[JobStatus, int]:
    async with SqliteQueueStorage(str(path), "app") as storage:
        job = await storage.get(job_id)
        assert job is not None
        return job.status, job.run_attempts


def start_app(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    script = tmp_path / "app.py"
    script.write_text(APP, encoding="utf-8")
    database = tmp_path / "jobs.db"
    process = subprocess.Popen(
        [sys.executable, str(script), str(database)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_environment(),
    )
    return process, database


def end(process: subprocess.Popen[str]) -> str:
    """Make sure the app has ended; what it wrote on stderr."""
    process.kill()
    _stdout, stderr = process.communicate()
    return stderr


def wait_line(process: subprocess.Popen[str], prefix: str) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(
        f"no line {prefix!r}; stderr: {process.stderr.read() if process.stderr else ''}"
    )


@pytest.mark.slow
def test_the_first_signal_lets_the_running_job_finish(tmp_path: Path) -> None:
    process, database = start_app(tmp_path)
    try:
        job_id = asyncio.run(submit(database, 0.5))
        wait_line(process, "started")
        process.send_signal(signal.SIGTERM)
        assert wait_line(process, "exited") == "exited cleanly"
        assert process.wait(timeout=30) == 0
    finally:
        log = end(process)
    assert asyncio.run(status_of(database, job_id)) == (JobStatus.COMPLETED, 1)
    assert "SIGTERM: stopping" in log and "stopped: 1 jobs completed" in log


@pytest.mark.slow
def test_a_second_signal_puts_the_running_job_back_at_once(tmp_path: Path) -> None:
    process, database = start_app(tmp_path)
    try:
        job_id = asyncio.run(submit(database, 600))
        wait_line(process, "started")
        process.send_signal(signal.SIGINT)
        assert process.stderr is not None
        for line in process.stderr:  # the graceful stop is under way
            if "SIGINT: stopping" in line:
                break
        process.send_signal(signal.SIGINT)
        assert wait_line(process, "exited") == "exited cleanly"
        assert process.wait(timeout=30) == 0
    finally:
        end(process)
    # Back in the queue, the attempt given back: the next server runs it as new.
    assert asyncio.run(status_of(database, job_id)) == (JobStatus.PENDING, 0)
