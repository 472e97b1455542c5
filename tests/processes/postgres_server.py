"""A JobQueueServer in its own process, on a PostgreSQL queue (for the multi-process tests).

Prints "ready" once the server runs and stops gracefully when its stdin closes. Every
execution appends "job_id attempt pid" to the --log file before the job does anything
else, so the test sees each run even of a process it kills.

Jobs do what their input says: {"n": ...} returns at once, {"steps": [...]} reports
progress, {"sleep": s} sleeps before each step and before returning, {"hang_in": name}
never ends in the server named `name`, {"fail": message} fails permanently, {"big": n}
returns n characters.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

from pyjobqueue import JobContext, JobQueueServer, PermanentJobError, job
from pyjobqueue.storage.postgres import PostgresQueueStorage


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--lease-ms", type=float, default=30_000)
    parser.add_argument("--poll-ms", type=float, default=200)
    return parser.parse_args()


async def run(args: argparse.Namespace) -> None:
    log = open(args.log, "a", buffering=1)  # noqa: SIM115 (open for the whole run)

    @job
    async def scripted(input: dict[str, Any], context: JobContext) -> Any:
        log.write(f"{context.job.id} {context.job.run_attempts} {os.getpid()}\n")
        if input.get("hang_in") == args.name:
            await asyncio.Event().wait()
        for step in input.get("steps", ()):
            await asyncio.sleep(input.get("sleep", 0))
            await context.update_progress(step, f"step {step}", {"step": step})
        await asyncio.sleep(input.get("sleep", 0))
        if "fail" in input:
            raise PermanentJobError(input["fail"])
        if "big" in input:
            return "x" * input["big"]
        return {"n": input.get("n"), "server": args.name}

    storage = PostgresQueueStorage(args.dsn, args.queue)
    async with storage:
        server = JobQueueServer(
            scripted,
            storage=storage,
            worker_count=args.workers,
            lease_ms=args.lease_ms,
            poll_interval_ms=args.poll_ms,
            cleanup_interval_ms=1_000,
        )
        async with server:
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.read)  # until the test closes our stdin
    log.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(run(parse_args()))
