"""The jobs of the in-browser console: real work with progress, a failing job, a retrying one.

Plain pyjobqueue, no browser API: the console's Web Worker runs `JOB_CLASSES` in one
`JobQueueServer`, and the same module runs on CPython (its tests do). Each task is a job
class of its own kind (`count_primes`, `hash_chain`...); `ConsoleJob`, first in the
list, runs the jobs stored without a kind (by older versions of the console, or by
`client.submit(input)` from the browser console) by the task their input names.
A job's input is `{"task": name, ...parameters}`; `TASKS` says which tasks exist, their
kinds, parameters and limits, and `make_input` checks a request from the page against
them.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pyjobqueue import AbortSignalJobError, Job, JobContext, RetryableJobError, Schedule, job
from pyjobqueue.limits import MAX_PRIORITY, MIN_PRIORITY

QUEUE_NAME = "console"  # the default; `?queue=name` in the URL picks another
DATABASE_NAME = "pyjobqueue"  # IndexedDbQueueStorage's default database
WORKER_COUNT = 2  # jobs run at once by the leader tab's server
PROGRESS_EVERY_SECONDS = 0.1  # at most ten progress writes a second per job
YIELD_EVERY_SECONDS = 0.01  # CPU-bound tasks let the event loop run this often

JsonDict = dict[str, Any]
TaskFunction = Callable[[JsonDict, JobContext], Awaitable[JsonDict]]


@dataclass(frozen=True)
class Param:
    """One integer parameter of a task, with its default and its bounds."""

    name: str
    label: str
    default: int
    low: int
    high: int

    def check(self, value: object) -> int:
        """The value as an int within bounds, or a ValueError naming the parameter."""
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"{self.name} must be a whole number")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{self.name} must be a whole number, got {value!r}") from None
        if not number.is_integer():
            raise ValueError(f"{self.name} must be a whole number, got {value!r}")
        if not self.low <= number <= self.high:
            raise ValueError(f"{self.name} must be between {self.low:,} and {self.high:,}")
        return int(number)


# The priority field of the form (higher runs first), with the range of every backend.
PRIORITY = Param("priority", "priority", 0, MIN_PRIORITY, MAX_PRIORITY)


@dataclass(frozen=True)
class Task:
    """A task the console offers, and the job class (of kind `kind`) that runs it."""

    name: str
    kind: str
    title: str
    description: str
    params: tuple[Param, ...]
    max_retries: int
    run: TaskFunction
    job_class: type[Job[JsonDict, JsonDict]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # One class per task, made once: a server refuses two classes of one kind.
        object.__setattr__(self, "job_class", job(kind=self.kind)(self.run))


class Progress:
    """Reports a job's progress at most every PROGRESS_EVERY_SECONDS, and lets others run.

    CPU-bound work calls `step` between small chunks: every YIELD_EVERY_SECONDS it
    yields to the event loop, so abort requests, lease renewals, progress writes and
    other jobs get their turn, and it raises when the job was aborted.
    """

    def __init__(self, context: JobContext, total: float) -> None:
        self.context = context
        self.total = total
        self.last_report = 0.0
        self.last_yield = time.monotonic()

    async def step(self, done: float, message: str) -> None:
        """Record that `done` of `total` is done; raise AbortSignalJobError if aborted."""
        now = time.monotonic()
        if now - self.last_yield < YIELD_EVERY_SECONDS:
            return
        signal = self.context.signal
        if signal.aborted:
            raise AbortSignalJobError(signal.reason or "aborted")
        if now - self.last_report >= PROGRESS_EVERY_SECONDS:
            self.last_report = now
            await self.context.update_progress(100 * min(done, self.total) / self.total, message)
        await asyncio.sleep(0)
        self.last_yield = time.monotonic()

    async def finish(self, message: str) -> None:
        """Report 100%."""
        await self.context.update_progress(100, message)


# -- the tasks ------------------------------------------------------------------------------

PRIME_SEGMENT = 65_536


async def count_primes(input: JsonDict, context: JobContext) -> JsonDict:
    """Count the primes below `limit` with a segmented sieve of Eratosthenes."""
    limit = int(input["limit"])
    root = math.isqrt(limit) + 1
    base = bytearray([1]) * (root + 1)
    base[0:2] = b"\0\0"
    for n in range(2, math.isqrt(root) + 1):
        if base[n]:
            base[n * n :: n] = bytes(len(range(n * n, root + 1, n)))
    base_primes = [n for n in range(2, root + 1) if base[n]]
    progress = Progress(context, limit)
    count, largest = 0, None
    for low in range(2, limit, PRIME_SEGMENT):
        high = min(low + PRIME_SEGMENT, limit)
        segment = bytearray([1]) * (high - low)
        for p in base_primes:
            if p * p >= high:
                break
            start = max(p * p, (low + p - 1) // p * p)
            segment[start - low :: p] = bytes(len(range(start, high, p)))
        count += segment.count(1)
        last = segment.rfind(1)
        if last >= 0:
            largest = low + last
        await progress.step(high, f"{count:,} primes below {high:,}")
    await progress.finish(f"{count:,} primes below {limit:,}")
    return {"primes": count, "largest": largest}


HASH_CHUNK = 1_000


async def hash_chain(input: JsonDict, context: JobContext) -> JsonDict:
    """Apply SHA-256 `rounds` times to a seed (a chain nobody can shortcut)."""
    rounds = int(input["rounds"])
    digest = hashlib.sha256(str(input.get("seed", "pyjobqueue")).encode()).digest()
    progress = Progress(context, rounds)
    for done in range(0, rounds, HASH_CHUNK):
        for _ in range(min(HASH_CHUNK, rounds - done)):
            digest = hashlib.sha256(digest).digest()
        await progress.step(done + HASH_CHUNK, f"{min(done + HASH_CHUNK, rounds):,} rounds")
    await progress.finish(f"{rounds:,} rounds")
    return {"sha256": digest.hex(), "rounds": rounds}


async def flaky(input: JsonDict, context: JobContext) -> JsonDict:
    """Fail the first `failures` attempts with a retryable error, then succeed."""
    failures, delay_ms = int(input["failures"]), int(input["delay_ms"])
    attempt = context.job.run_attempts
    await context.update_progress(50, f"attempt {attempt}")
    if attempt <= failures:
        retry_at = datetime.now(UTC) + timedelta(milliseconds=delay_ms)
        raise RetryableJobError(f"attempt {attempt} of {failures + 1} failed on purpose", retry_at)
    await context.update_progress(100, f"succeeded on attempt {attempt}")
    return {"succeeded_on_attempt": attempt}


class ConsoleFailure(Exception):
    """What the failing task raises (its class name becomes the job's error_code)."""


async def fail(input: JsonDict, context: JobContext) -> JsonDict:
    """Do a little work, then raise a permanent error."""
    steps = int(input["steps"])
    progress = Progress(context, steps)
    for step in range(steps):
        hashlib.sha256(str(step).encode() * 20_000).digest()
        await progress.step(step + 1, f"step {step + 1} of {steps}")
    raise ConsoleFailure(f"gave up after {steps} steps, as this task always does")


async def wait(input: JsonDict, context: JobContext) -> JsonDict:
    """Wait `seconds` without using the CPU (an I/O-bound job), reporting progress."""
    seconds = int(input["seconds"])
    ticks = seconds * 10
    for tick in range(1, ticks + 1):
        try:
            await asyncio.wait_for(context.signal.wait(), 0.1)
        except TimeoutError:
            await context.update_progress(100 * tick / ticks, f"{tick / 10:.1f} s of {seconds} s")
            continue
        raise AbortSignalJobError(context.signal.reason or "aborted")
    return {"waited_seconds": seconds}


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            "primes",
            "count_primes",
            "Count primes",
            "Segmented sieve of Eratosthenes, CPU-bound, in chunks.",
            (Param("limit", "below", 50_000_000, 10, 2_000_000_000),),
            2,
            count_primes,
        ),
        Task(
            "hash",
            "hash_chain",
            "Hash chain",
            "SHA-256 applied again and again to a seed.",
            (Param("rounds", "rounds", 1_000_000, 1, 100_000_000),),
            2,
            hash_chain,
        ),
        Task(
            "flaky",
            "flaky",
            "Flaky (retries)",
            "Fails its first attempts with RetryableJobError, then succeeds.",
            (
                Param("failures", "failures", 2, 0, 10),
                Param("delay_ms", "retry after ms", 500, 0, 60_000),
            ),
            3,
            flaky,
        ),
        Task(
            "fail",
            "always_fails",
            "Always fails",
            "Works a little, then raises a permanent error.",
            (Param("steps", "steps", 20, 1, 1_000),),
            2,
            fail,
        ),
        Task(
            "wait",
            "wait",
            "Wait (I/O)",
            "Sleeps without using the CPU; abortable at any moment.",
            (Param("seconds", "seconds", 5, 1, 3_600),),
            2,
            wait,
        ),
    )
}


class ConsoleJob(Job[JsonDict, JsonDict]):
    """Runs a job stored without a kind: the task that its input names."""

    async def execute(self, input: JsonDict, context: JobContext) -> JsonDict:
        """Dispatch to the task function."""
        task = TASKS.get(str(input.get("task")))
        if task is None:
            raise ValueError(f"unknown task {input.get('task')!r}")
        return await task.run(input, context)


# What the tab's server runs. ConsoleJob comes first: a job without a kind runs as the
# first class of the server that claims it (SPEC 8.1).
JOB_CLASSES: list[type[Job[JsonDict, JsonDict]]] = [
    ConsoleJob,
    *(task.job_class for task in TASKS.values()),
]


def make_input(task_name: object, params: object) -> JsonDict:
    """A job input for `task_name` with checked parameters (defaults for missing ones)."""
    task = TASKS.get(task_name) if isinstance(task_name, str) else None
    if task is None:
        raise ValueError(f"unknown task {task_name!r}; expected one of {', '.join(TASKS)}")
    if not isinstance(params, dict):
        raise ValueError("params must be an object of task parameters")
    known = {param.name for param in task.params}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"{task.name} has no parameter {unknown[0]!r}")
    values = {
        param.name: param.check(params.get(param.name, param.default)) for param in task.params
    }
    return {"task": task.name, **values}


def catalogue() -> list[JsonDict]:
    """The tasks as the page's form shows them."""
    return [
        {
            "name": task.name,
            "kind": task.kind,
            "title": task.title,
            "description": task.description,
            "max_retries": task.max_retries,
            "params": [
                {
                    "name": p.name,
                    "label": p.label,
                    "default": p.default,
                    "min": p.low,
                    "max": p.high,
                }
                for p in task.params
            ],
        }
        for task in TASKS.values()
    ]


def hash_schedule(seconds: int) -> Schedule:
    """The console's demo schedule (`?schedule=N`): a short hash chain every N seconds,
    enqueued once per tick by whichever tab's server gets there first."""
    if not 1 <= seconds <= 86_400:
        raise ValueError("schedule must be a number of seconds from 1 to 86400")
    return Schedule(
        f"hash every {seconds} s",
        kind=TASKS["hash"].kind,
        every=timedelta(seconds=seconds),
        input=make_input("hash", {"rounds": 20_000}),
        max_retries=TASKS["hash"].max_retries,
    )
