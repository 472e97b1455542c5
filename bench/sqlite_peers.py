"""pyjobqueue on SQLite against huey 3.5.4's SqliteHuey, as ratios.

Both run the same no-op job (it returns its number, which both store as the result)
in the same process, producer and workers, each on a fresh SQLite file. huey runs
as its guide sets it up: `SqliteHuey(filename=...)`, a `@huey.task()`, and its
consumer at its defaults (one worker thread, polling an empty queue after 0.1 s,
backing off by 1.15 up to 10 s). Its guide starts the consumer as a process of its
own (`huey_consumer.py`); here the same Consumer object is started in this process
(`create_consumer().start()`, which is what that script runs), so that the clock
sees both ends. The end of each job is huey's SIGNAL_COMPLETE, sent from its worker
after the task ran and its result was stored.

- drain: --jobs jobs are enqueued, then the clock runs from starting the workers
  until all are done; pyjobqueue and huey at their defaults (one worker each), and
  both with --workers (huey's worker threads);
- single enqueue: --enqueues enqueues one after the other (pyjobqueue's submit,
  calling huey's task), median;
- latency: --rounds back-to-back jobs, each submitted once the one before is done,
  p50 and p99; pyjobqueue's clock stops when wait_for returns.

    .venv-bench/bin/python bench/sqlite_peers.py --jobs 2000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from measure import (
    Rounds,
    Row,
    blocking_samples,
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
    submit_samples,
)

try:
    import huey
    from huey import SqliteHuey
    from huey.signals import SIGNAL_COMPLETE
except ImportError:
    raise SystemExit(
        "bench/sqlite_peers.py needs huey 3.5.4: `python build.py bench` installs it in .venv-bench"
    ) from None

HUEY_VERSION = "3.5.4"


@dataclass
class HueyQueue:
    """A SqliteHuey on a fresh file, its no-op task, and a hook for each completed job."""

    huey: Any
    task: Callable[[int], Any]
    on_complete: Callable[[int], None] = lambda n: None


def huey_queue(workdir: Path) -> HueyQueue:
    """A SqliteHuey at its defaults on a fresh file in `workdir`."""
    app = SqliteHuey(filename=str(workdir / f"huey-{uuid.uuid4().hex[:8]}.db"))

    def noop(n: int) -> int:
        return n

    queue = HueyQueue(app, app.task()(noop))

    def completed(signal_name: str, task: Any, *args: Any) -> None:
        queue.on_complete(int(task.args[0]))

    app.signal(SIGNAL_COMPLETE)(completed)
    return queue


@contextlib.contextmanager
def consumer_running(queue: HueyQueue, workers: int) -> Iterator[None]:
    """huey's consumer (threads) started in this process for the block, stopped after."""
    # start() installs the consumer's signal handlers; this process keeps its own.
    handlers = {
        sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    consumer = queue.huey.create_consumer(workers=workers)
    consumer.start()
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    try:
        yield
    finally:
        consumer.stop(graceful=True)


def huey_drain(workdir: Path, jobs: int, workers: int) -> float:
    """Seconds from starting huey's consumer until it has completed `jobs` enqueued jobs."""
    queue = huey_queue(workdir)
    for n in range(jobs):
        queue.task(n)
    done, lock, completed = threading.Event(), threading.Lock(), [0]

    def count(n: int) -> None:
        with lock:
            completed[0] += 1
            if completed[0] == jobs:
                done.set()

    queue.on_complete = count
    start = time.perf_counter()
    with consumer_running(queue, workers):
        if not done.wait(timeout=max(120.0, jobs / 10)):
            raise RuntimeError(f"huey: only {completed[0]} of {jobs} jobs completed")
        elapsed = time.perf_counter() - start
    return elapsed


def huey_latency(workdir: Path, rounds: int) -> list[float]:
    """Milliseconds from calling the task until SIGNAL_COMPLETE, one job after the other."""
    queue = huey_queue(workdir)
    events: dict[int, threading.Event] = {}
    queue.on_complete = lambda n: events[n].set()

    def submit_and_wait(n: int) -> None:
        event = events[n] = threading.Event()
        queue.task(n)
        if not event.wait(timeout=30):
            raise RuntimeError(f"huey: job {n} did not complete in 30 s")

    with consumer_running(queue, DEFAULT_WORKERS):
        return blocking_samples(submit_and_wait, rounds)


def huey_enqueue_samples(workdir: Path, count: int) -> list[float]:
    """Milliseconds of each of `count` calls of the task (an enqueue), one after the other."""
    return blocking_samples(huey_queue(workdir).task, count)


def sqlite_url(workdir: Path) -> str:
    """A fresh SQLite file for pyjobqueue."""
    return f"sqlite:///{workdir / f'pyjobqueue-{uuid.uuid4().hex[:8]}.db'}"


async def pyjobqueue_drain(workdir: Path, jobs: int, workers: int) -> float:
    """Seconds for pyjobqueue with `workers` workers to drain `jobs` from a fresh file."""
    return await on_fresh_queue(sqlite_url(workdir), lambda s: queue_throughput(s, jobs, workers))


def drain_rows(workdir: Path, args: argparse.Namespace) -> list[Row]:
    """pyjobqueue and huey at their defaults and with --workers, median of the rounds."""
    label = f"huey {huey.__version__}"
    pairs = [
        (
            f"{DEFAULT_WORKERS} worker (its default)",
            f"{label}, consumer at its defaults (1 thread)",
        ),
        (f"{args.workers} workers", f"{label}, consumer with {args.workers} worker threads"),
    ]
    rounds = Rounds("jobs/s")
    for round_number, jobs in rounds_with_warmup(args.jobs, args.repeat):
        figures = rounds if round_number else Rounds("jobs/s")
        for (ours, theirs), workers in zip(pairs, (DEFAULT_WORKERS, args.workers), strict=True):
            figures.add(ours, jobs / asyncio.run(pyjobqueue_drain(workdir, jobs, workers)))
            figures.add(theirs, jobs / huey_drain(workdir, jobs, workers))
        progress(f"sqlite peers: drain round {round_number}/{args.repeat} done")
    measure = f"drain, SQLite, {args.jobs:,} jobs"
    return [rounds.row(measure, ours, theirs) for ours, theirs in pairs]


def other_rows(workdir: Path, args: argparse.Namespace) -> list[Row]:
    """Single enqueue and latency against huey at its defaults."""
    label = f"huey {huey.__version__}"
    singles = Rounds("ms")
    samples = asyncio.run(
        on_fresh_queue(sqlite_url(workdir), lambda s: submit_samples(s, args.enqueues))
    )
    singles.add("submit", median(samples))
    singles.add(f"{label}, calling the task", median(huey_enqueue_samples(workdir, args.enqueues)))
    url = sqlite_url(workdir)
    ours = asyncio.run(on_fresh_queue(url, lambda s: queue_latency(s, args.rounds)))
    theirs = huey_latency(workdir, args.rounds)
    return [
        singles.row("single enqueue, SQLite (median)", "submit", f"{label}, calling the task"),
        *latency_rows(
            "latency, SQLite", ("1 worker, submit then wait_for", ours),
            (f"{label}, consumer at its defaults", theirs),
        ),
    ]  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = drain_parser(__doc__)
    parser.add_argument("--enqueues", type=int, default=200, help="single enqueues timed")
    args = parser.parse_args()
    if min(args.jobs, args.repeat, args.rounds, args.enqueues, args.workers) < 1:
        parser.error("--jobs, --repeat, --rounds, --enqueues and --workers must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    if huey.__version__ != HUEY_VERSION:
        progress(f"warning: huey {huey.__version__} is installed, not {HUEY_VERSION}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = drain_rows(Path(tmp), args)
        progress("sqlite peers: enqueue and latency")
        rows += other_rows(Path(tmp), args)
    report(rows, args.json)


if __name__ == "__main__":
    main()
