"""pyjobqueue on PostgreSQL against PgQueuer 1.6.0 and procrastinate 3.10.0, as ratios.

All of them run the same no-op job in the same process, producer and workers, one
after another against the same PostgreSQL database (PgQueuer's side is
bench/pgqueuer_peer.py, procrastinate's bench/procrastinate_peer.py, pyjobqueue's
bench/pyjobqueue_runs.py):

- drain: --jobs jobs are stored in one batch, then the clock runs from starting the
  queue's workers until all of them are done. Pairs: pyjobqueue with --workers workers
  and PgQueuer's QueueManager capped at as many jobs at a time; pyjobqueue with WIDE
  times the workers and PgQueuer at its defaults (batches of 10, no cap), as a
  QueueManager and as the PgQueuer application of its README; pyjobqueue at its
  defaults (one worker) and procrastinate's worker at its defaults (one job at a
  time), and both with --workers. The drains run --repeat times, interleaved round by
  round, so that a noisy, shared machine slows all alike; each ratio is the median of
  the rounds' ratios;
- enqueue: --enqueues single enqueues one after the other (pyjobqueue's submit,
  PgQueuer's Queries.enqueue, procrastinate's defer_async), and --repeat batches of
  --batch jobs (submit_batch, Queries.enqueue of lists, batch_defer_async): each the
  first on a new connection, which also prepares the statement, and, against
  PgQueuer, also the second of two on one connection ("second batch");
- latency: --rounds back-to-back jobs, each submitted once the one before is done,
  p50 and p99. pyjobqueue's clock stops when wait_for returns (its outcome stored and
  seen by the client); the peers' when the job's function has run in their worker,
  before they record it done, which favours them.

    .venv-bench/bin/python bench/peers.py --postgres-dsn postgresql://user@host:5432/db

`python build.py bench` makes .venv-bench and runs this with the others. --postgres-dsn
defaults to PYJOBQUEUE_TEST_POSTGRES_DSN. Nothing is left in the database: pyjobqueue's
jobs are deleted, PgQueuer's schema (under a fresh name prefix) is uninstalled and
procrastinate's (in a fresh PostgreSQL schema) dropped after each run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

import pgqueuer_peer
import procrastinate_peer
from measure import (
    Rounds,
    Row,
    drain_parser,
    latency_rows,
    median,
    progress,
    report,
    rounds_with_warmup,
)
from pyjobqueue_runs import (
    DEFAULT_WORKERS,
    on_fresh_queue,
    queue_latency,
    queue_throughput,
    submit_batch_seconds,
    submit_samples,
)

from pyjobqueue import JobStatus
from pyjobqueue.storage import QueueStorage

WIDE = 5  # the wide pyjobqueue runs WIDE times --workers, as PgQueuer's defaults run uncapped


async def pyjobqueue_drain(dsn: str, jobs: int, workers: int) -> float:
    """Seconds for pyjobqueue to drain `jobs` from a fresh queue, checked all completed."""

    async def run(storage: QueueStorage) -> float:
        seconds = await queue_throughput(storage, jobs, workers)
        if (done := await storage.size(JobStatus.COMPLETED)) != jobs:
            raise RuntimeError(f"pyjobqueue: {done} of {jobs} jobs completed")
        return seconds

    return await on_fresh_queue(dsn, run)


def drain_pairs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The (pyjobqueue, peer) pairs of drains, by label."""
    pgq, proc = (
        f"PgQueuer {pgqueuer_peer.version()}",
        f"procrastinate {procrastinate_peer.version()}",
    )
    w = args.workers
    return [
        (f"{w} workers", f"{pgq}, QueueManager capped at {w} jobs at a time"),
        (f"{w * WIDE} workers", f"{pgq}, QueueManager at its defaults (no cap)"),
        (f"{w * WIDE} workers", f"{pgq}, PgQueuer application at its defaults"),
        (f"{DEFAULT_WORKERS} worker (its default)", f"{proc}, worker at its defaults (1 job)"),
        (f"{w} workers", f"{proc}, worker with concurrency={w}"),
        # Each at its defaults: pyjobqueue's one worker, one PgQueuer.
        (f"{DEFAULT_WORKERS} worker (its default)", f"{pgq}, PgQueuer application at its defaults"),
    ]


def drain_runs(args: argparse.Namespace, jobs: int) -> dict[str, Callable[[], Awaitable[float]]]:
    """One round's drains of `jobs` jobs, by the label of the queue, in the order they run."""
    dsn, w = args.postgres_dsn, args.workers
    ours = [label for label, _ in drain_pairs(args)]
    theirs = [label for _, label in drain_pairs(args)]
    return {
        ours[0]: lambda: pyjobqueue_drain(dsn, jobs, w),
        theirs[0]: lambda: pgqueuer_peer.drain(dsn, jobs, "capped", w),
        ours[1]: lambda: pyjobqueue_drain(dsn, jobs, w * WIDE),
        theirs[1]: lambda: pgqueuer_peer.drain(dsn, jobs, "defaults"),
        theirs[2]: lambda: pgqueuer_peer.drain(dsn, jobs, "application"),
        ours[3]: lambda: pyjobqueue_drain(dsn, jobs, DEFAULT_WORKERS),
        theirs[3]: lambda: procrastinate_peer.drain(dsn, jobs),
        theirs[4]: lambda: procrastinate_peer.drain(dsn, jobs, w),
    }


async def drain_rows(args: argparse.Namespace) -> list[Row]:
    """The drain rows: every pair, median of the rounds."""
    rounds = Rounds("jobs/s")
    for round_number, jobs in rounds_with_warmup(args.jobs, args.repeat):
        figures = rounds if round_number else Rounds("jobs/s")
        for label, run in drain_runs(args, jobs).items():
            figures.add(label, jobs / await run())
        progress(f"peers: drain round {round_number}/{args.repeat} done")
    measure = f"drain, PostgreSQL, {args.jobs:,} jobs"
    return [rounds.row(measure, ours, theirs) for ours, theirs in drain_pairs(args)]


async def enqueue_rows(args: argparse.Namespace) -> list[Row]:
    """Single enqueues (median ms) and batches (jobs/s) against both peers."""
    dsn, batch = args.postgres_dsn, args.batch
    pgq = f"PgQueuer {pgqueuer_peer.version()}, Queries.enqueue"
    proc = f"procrastinate {procrastinate_peer.version()}"
    batches = Rounds("jobs/s")
    for _ in range(args.repeat):
        seconds = await on_fresh_queue(dsn, lambda s: submit_batch_seconds(s, batch))
        batches.add("submit_batch", batch / seconds)
        batches.add(pgq, batch / await pgqueuer_peer.enqueue_batch_seconds(dsn, batch))
        seconds = await on_fresh_queue(dsn, lambda s: submit_batch_seconds(s, batch, warm=True))
        batches.add("submit_batch, warm", batch / seconds)
        seconds = await pgqueuer_peer.enqueue_batch_seconds(dsn, batch, warm=True)
        batches.add(f"{pgq}, warm", batch / seconds)
        seconds = await procrastinate_peer.defer_batch_seconds(dsn, batch)
        batches.add(f"{proc}, batch_defer_async", batch / seconds)
    singles = Rounds("ms")  # one round: the median of --enqueues each
    samples = await on_fresh_queue(dsn, lambda s: submit_samples(s, args.enqueues))
    singles.add("submit", median(samples))
    singles.add(pgq, median(await pgqueuer_peer.enqueue_samples(dsn, args.enqueues)))
    samples = await procrastinate_peer.defer_samples(dsn, args.enqueues)
    singles.add(f"{proc}, defer_async", median(samples))
    single, several = (
        "single enqueue, PostgreSQL (median)",
        f"batch enqueue of {batch:,}, PostgreSQL",
    )
    return [
        singles.row(single, "submit", pgq),
        singles.row(single, "submit", f"{proc}, defer_async"),
        batches.row(several, "submit_batch", pgq),
        batches.row(f"{several}, second batch", "submit_batch, warm", f"{pgq}, warm"),
        batches.row(several, "submit_batch", f"{proc}, batch_defer_async"),
    ]


async def latency_rows_of_peers(args: argparse.Namespace) -> list[Row]:
    """p50 and p99 of back-to-back jobs: pyjobqueue at its defaults against each peer."""
    dsn = args.postgres_dsn
    ours = (
        "1 worker, submit then wait_for",
        await on_fresh_queue(dsn, lambda s: queue_latency(s, args.rounds)),
    )
    pgq = f"PgQueuer {pgqueuer_peer.version()}, QueueManager at its defaults"
    proc = f"procrastinate {procrastinate_peer.version()}, worker at its defaults"
    return [
        *latency_rows(
            "latency, PostgreSQL", ours, (pgq, await pgqueuer_peer.latency(dsn, args.rounds))
        ),
        *latency_rows(
            "latency, PostgreSQL", ours, (proc, await procrastinate_peer.latency(dsn, args.rounds))
        ),
    ]


def parse_args() -> argparse.Namespace:
    parser = drain_parser(__doc__)
    parser.add_argument("--enqueues", type=int, default=200, help="single enqueues timed")
    parser.add_argument("--batch", type=int, default=1000, help="jobs per batch enqueue")
    parser.add_argument("--postgres-dsn", default=os.environ.get("PYJOBQUEUE_TEST_POSTGRES_DSN"))
    args = parser.parse_args()
    if not args.postgres_dsn:
        parser.error("needs --postgres-dsn or PYJOBQUEUE_TEST_POSTGRES_DSN")
    if min(args.jobs, args.repeat, args.rounds, args.enqueues, args.batch) < 1:
        parser.error("--jobs, --repeat, --rounds, --enqueues and --batch must be at least 1")
    if args.workers < 2:
        parser.error("--workers must be at least 2: PgQueuer needs max_concurrent_tasks >= 2")
    return args


def warn_versions() -> None:
    """Say so when a peer's installed version is not the one this was written for."""
    for name, installed, expected in (
        ("pgqueuer", pgqueuer_peer.version(), pgqueuer_peer.PGQUEUER_VERSION),
        ("procrastinate", procrastinate_peer.version(), procrastinate_peer.PROCRASTINATE_VERSION),
    ):
        if installed != expected:
            print(f"warning: {name} {installed} is installed, not {expected}", file=sys.stderr)


async def main() -> None:
    args = parse_args()
    warn_versions()
    rows = await drain_rows(args)
    progress("peers: enqueue")
    rows += await enqueue_rows(args)
    progress("peers: latency")
    rows += await latency_rows_of_peers(args)
    report(rows, args.json)


if __name__ == "__main__":
    asyncio.run(main())
