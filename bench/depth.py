"""pyjobqueue on a deep queue: drain rate and claim latency with --depth jobs pending,
as ratios to the same on a queue that holds only the jobs measured.

For each backend (memory, SQLite, PostgreSQL), on fresh queues:
- drain: --jobs jobs run by a server with --workers workers, from a queue that holds
  only them, then from one that holds --depth jobs (the server starts on the oldest);
- claim: the median of --claims calls of the storage's `claim` of one job (what a
  worker's claim loop runs), once the drain is over and --claims more jobs are stored:
  on the first queue only those are pending, on the deep one about --depth.
Both queues are filled afresh in each of --repeat rounds, one after the other in the
same process; the ratios are the medians of the rounds'. Above 1, the deep queue is
the faster.

    python bench/depth.py --depth 200000 --jobs 2000 --backends memory,sqlite,postgres

PostgreSQL needs --postgres-dsn (or PYJOBQUEUE_TEST_POSTGRES_DSN).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from measure import (
    WARMUP_SAMPLES,
    Rounds,
    Row,
    add_json_argument,
    latency_samples,
    median,
    progress,
    report,
    rounds_with_warmup,
)
from pyjobqueue_runs import drain_seconds, on_fresh_queue, submit_batches

from pyjobqueue.storage import QueueStorage

BACKEND_NAMES = {"memory": "memory", "sqlite": "SQLite", "postgres": "PostgreSQL"}


async def claim_median(storage: QueueStorage, claims: int) -> float:
    """Median milliseconds of `claims` claims of one job each, on what the queue holds."""

    async def claim_one(n: int) -> None:
        now = datetime.now(UTC)
        if not await storage.claim("bench-depth", now, now + timedelta(minutes=5), limit=1):
            raise RuntimeError("depth: nothing to claim")

    return median(await latency_samples(claim_one, claims))


async def measure_queue(
    storage: QueueStorage, pending: int, jobs: int, args: argparse.Namespace
) -> tuple[float, float]:
    """(jobs/s draining `jobs`, claim ms) on a queue filled with `pending` jobs."""
    await submit_batches(storage, pending)
    rate = jobs / await drain_seconds(storage, jobs, args.workers)
    # The server may have run a few more than `jobs` before it stopped: claims get theirs.
    await submit_batches(storage, WARMUP_SAMPLES + args.claims)
    return rate, await claim_median(storage, args.claims)


async def backend_rows(backend: str, url: str, args: argparse.Namespace) -> list[Row]:
    """The drain and claim rows of one backend: the deep queue against the shallow one,
    each filled afresh in every round (round 0, a warm-up, runs the shallow one only)."""
    name, deep = BACKEND_NAMES[backend], f"{args.depth:,} jobs pending"
    shallow = "queue of only the jobs measured"
    drains, claims = Rounds("jobs/s"), Rounds("ms")
    for round_number, jobs in rounds_with_warmup(args.jobs, args.repeat):
        counted = (drains, claims) if round_number else (Rounds("jobs/s"), Rounds("ms"))
        queues = ((shallow, jobs), (deep, args.depth)) if round_number else ((shallow, jobs),)
        for label, pending in queues:
            run = functools.partial(measure_queue, pending=pending, jobs=jobs, args=args)
            rate, claim = await on_fresh_queue(url, run)
            counted[0].add(label, rate)
            counted[1].add(label, claim)
        progress(f"depth: {backend}, round {round_number}/{args.repeat} done")
    note = f"{args.workers} workers each"
    return [
        drains.row(f"drain of {args.jobs:,} jobs, {name}, deep queue", deep, shallow, note),
        claims.row(f"claim of one job, {name}, deep queue (median)", deep, shallow),
    ]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--depth", type=int, default=200_000, help="jobs pending in the deep queue")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs drained")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--claims", type=int, default=200, help="claims timed")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--backends", default="memory,sqlite,postgres")
    parser.add_argument("--postgres-dsn", default=os.environ.get("PYJOBQUEUE_TEST_POSTGRES_DSN"))
    add_json_argument(parser)
    args = parser.parse_args()
    if args.depth < args.jobs:
        parser.error("--depth must be at least --jobs")
    return args


async def main() -> None:
    args = parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            urls = {"memory": "memory://", "sqlite": f"sqlite:///{Path(tmp) / 'depth.db'}"}
            url = urls.get(backend, args.postgres_dsn)
            if not url:
                progress(f"depth: {backend} skipped (no --postgres-dsn)")
                continue
            rows += await backend_rows(backend, url, args)
    report(rows, args.json)


if __name__ == "__main__":
    asyncio.run(main())
