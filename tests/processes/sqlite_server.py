"""A job server in its own process, for the SQLite process tests.

usage: sqlite_server.py DATABASE QUEUE LOG [--lease-ms N] [--workers N] [--poll-ms N]
                        [--rate MAX/SECONDS]

Prints "ready" once the server runs, and runs until its stdin closes; then it stops
gracefully and exits 0. Every execution appends "start <job id> <attempt> <pid>" to
LOG before the job's work and "done <job id> <attempt> <pid>" after it, so a test can
count runs per job across processes, even of a process it killed. With --rate, a
shared RateLimiter on the same file limits the server, and each refusal of the
limiter appends "limited <pid>".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pyjobqueue import (
    Job,
    JobContext,
    JobQueueServer,
    Limiter,
    PermanentJobError,
    RateLimiter,
    RetryableJobError,
)
from pyjobqueue.storage import SqliteQueueStorage, SqliteRateLimiterStorage

LOG: Path


def log(line: str) -> None:
    """Append one line to the run log (one write, so lines of processes never mix)."""
    with LOG.open("a", encoding="utf-8") as file:
        file.write(f"{line}\n")


class ScriptedJob(Job[dict[str, Any], Any]):
    """Does what input["action"] says; see the test module for each action."""

    async def execute(self, input: dict[str, Any], context: JobContext) -> Any:
        job = context.job
        attempt = job.run_attempts
        log(f"start {job.id} {attempt} {os.getpid()}")
        output = await self.act(input, context, attempt)
        log(f"done {job.id} {attempt} {os.getpid()}")
        return output

    async def act(self, input: dict[str, Any], context: JobContext, attempt: int) -> Any:
        action = input["action"]
        if action == "echo":
            return {"echo": input.get("value"), "attempt": attempt}
        if action == "progress":
            for step in input["steps"]:
                await context.update_progress(step, f"at {step}", {"step": step})
            return "done"
        if action == "fail":
            raise PermanentJobError(input["message"])
        if action == "retry_once" and attempt == 1:
            raise RetryableJobError("again", datetime.now(UTC) + timedelta(milliseconds=100))
        if action in ("block_first", "retry_once") and attempt > 1:
            return {"attempt": attempt}
        # block_first on its first attempt, wait_abort: run until killed or aborted.
        await context.signal.wait()
        return None


class LoggingRateLimiter(RateLimiter):
    """A RateLimiter that logs each time it holds the server back."""

    async def can_proceed(self) -> bool:
        allowed = await super().can_proceed()
        if not allowed:
            log(f"limited {os.getpid()}")
        return allowed


async def stdin_closed() -> None:
    """Return when the parent closes our stdin (or dies)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()


async def serve(arguments: argparse.Namespace) -> None:
    async with (
        SqliteQueueStorage(
            arguments.database, arguments.queue, poll_interval_ms=arguments.poll_ms
        ) as storage,
        SqliteRateLimiterStorage(arguments.database) as limits,
    ):
        limiter: Limiter | None = None
        if arguments.rate:
            most, seconds = arguments.rate.split("/")
            limiter = LoggingRateLimiter(
                limits,
                arguments.queue,
                max_executions=int(most),
                window_size_in_seconds=float(seconds),
                initial_backoff_delay=50,
            )
        server = JobQueueServer(
            ScriptedJob,
            storage=storage,
            limiter=limiter,
            worker_count=arguments.workers,
            poll_interval_ms=arguments.poll_ms,
            lease_ms=arguments.lease_ms,
            cleanup_interval_ms=arguments.lease_ms,
        )
        async with server:
            print("ready", flush=True)
            await stdin_closed()


def main() -> None:
    global LOG
    parser = argparse.ArgumentParser()
    parser.add_argument("database")
    parser.add_argument("queue")
    parser.add_argument("log", type=Path)
    parser.add_argument("--lease-ms", type=float, default=30_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--poll-ms", type=float, default=20)
    parser.add_argument("--rate", default="")
    arguments = parser.parse_args()
    LOG = arguments.log
    asyncio.run(serve(arguments))


if __name__ == "__main__":
    main()
