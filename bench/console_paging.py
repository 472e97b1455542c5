"""How fast the console's pages are on a big queue: `list_jobs` (keyset paging) on SQLite
and PostgreSQL, as ratios to a primary-key lookup (`get`) of the same run.

The queue holds --jobs jobs of two kinds; one in --rare-every is aborted (FAILED), so a
page of FAILED jobs has to skip over many others. Each figure is the median of --repeat
reads: the first page, a page near the end of the list (where OFFSET paging would read
and discard nearly every row), the first page of the rare status, of one kind, and the
console's summary (counts by kind and status), which it reads at most once a second.

    python bench/console_paging.py --jobs 200000 --backends sqlite,postgres

PostgreSQL needs --postgres-dsn (or PYJOBQUEUE_TEST_POSTGRES_DSN).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyjobqueue import Job, JobStatus
from pyjobqueue._json import fingerprint
from pyjobqueue.storage import QueueStorage, open_storage

BATCH = 2_000
PAGE = 50


async def fill(storage: QueueStorage, jobs: int, rare_every: int) -> list[int]:
    """Store `jobs` jobs of kinds "a" and "b"; abort one in `rare_every`; their ids."""
    ids: list[int] = []
    for start in range(0, jobs, BATCH):
        batch: list[Job[Any, Any]] = [
            Job(input={"n": n}, fingerprint=fingerprint({"n": n}), kind="ab"[n % 2])
            for n in range(start, min(start + BATCH, jobs))
        ]
        ids += await storage.add_batch(batch)
    now = datetime.now(UTC)
    for job_id in ids[::rare_every]:
        await storage.abort(job_id, now)
    return ids


async def median_seconds(read: Callable[[], Awaitable[Any]], repeat: int) -> float:
    await read()  # warm caches and prepared statements
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await read()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def measure(storage: QueueStorage, ids: list[int], repeat: int) -> dict[str, float]:
    deep = ids[len(ids) // 100]  # 99% of the way down the list
    reads: dict[str, Callable[[], Awaitable[Any]]] = {
        "get (baseline)": lambda: storage.get(ids[len(ids) // 2]),
        "first page": lambda: storage.list_jobs(limit=PAGE),
        "page at 99%": lambda: storage.list_jobs(before_id=deep, limit=PAGE),
        "first FAILED page": lambda: storage.list_jobs(JobStatus.FAILED, limit=PAGE),
        "first page of kind a": lambda: storage.list_jobs(kind="a", limit=PAGE),
        "counts (summary)": storage.counts,
    }
    return {name: await median_seconds(read, repeat) for name, read in reads.items()}


async def run_backend(name: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    async with open_storage(url, f"bench-{uuid.uuid4().hex[:8]}") as storage:
        started = time.perf_counter()
        ids = await fill(storage, args.jobs, args.rare_every)
        filled = time.perf_counter() - started
        seconds = await measure(storage, ids, args.repeat)
        await storage.delete_all()
    baseline = seconds["get (baseline)"]
    return {
        "backend": name,
        "jobs": args.jobs,
        "fill_seconds": round(filled, 1),
        "milliseconds": {key: round(value * 1000, 2) for key, value in seconds.items()},
        "ratio_to_get": {key: round(value / baseline, 1) for key, value in seconds.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--rare-every", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--postgres-dsn", default=os.environ.get("PYJOBQUEUE_TEST_POSTGRES_DSN"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        urls = {
            "sqlite": f"sqlite:///{Path(directory) / 'bench.db'}",
            "postgres": args.postgres_dsn,
        }
        for name in args.backends.split(","):
            url = urls.get(name)
            if not url:
                print(json.dumps({"backend": name, "skipped": "no URL (--postgres-dsn)"}))
                continue
            print(json.dumps(asyncio.run(run_backend(name, url, args)), indent=2))


if __name__ == "__main__":
    main()
