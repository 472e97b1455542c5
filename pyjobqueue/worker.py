"""JobQueueWorker: claims jobs, runs them with a lease and an abort signal, records outcomes."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, Generic

from ._json import validate_json
from ._options import (
    require_count,
    require_job_classes,
    require_limiter,
    require_ms,
    require_storage,
)
from ._retry import Backoff, is_permanent, one_line
from .errors import AbortSignalJobError
from .events import JOB_EVENTS, EventEmitter, EventName, JobEvent, Observable
from .job import AbortSignal as AbortSignal
from .job import InputT, Job, JobContext, JobStatus, OutputT, kind_of, utcnow
from .limiters import Limiter
from .limiters.base import refuses_starts
from .middleware import Middleware, chain, require_middleware
from .outcome import (
    AbortReason,
    Outcome,
    OutcomeKind,
    RetryPolicy,
    decide_deadline,
    decide_outcome,
)
from .storage.base import QueueStorage, Unsubscribe

logger = logging.getLogger("pyjobqueue.worker")

RECENT_ABORTS_KEPT = 1000
FINISH_RETRY_FIRST_DELAY = 0.05  # seconds
FINISH_RETRY_MAX_DELAY = 2.0
# A claim round that failed is tried again after poll_interval_ms, doubling up to this.
CLAIM_RETRY_MAX_DELAY = 2.0  # seconds
# Claiming ahead. When jobs are short, one claim takes more jobs than there are idle
# slots: a slot that frees starts the next job at once instead of waiting for a round
# trip to the storage. The worker keeps in hand about as many jobs as its slots run in
# CLAIM_AHEAD_WINDOW (from the mean run time so far), so a job waits at most that long
# in the worker, its lease renewed meanwhile; at most CLAIM_AHEAD_MAX, and none before a
# first job has run or when the limiter may refuse a start (the job would go back).
CLAIM_AHEAD_WINDOW = 0.02  # seconds
# 100, not 50: a drain of no-op jobs ran 10-20% faster (fewer claims, each a commit),
# measured on SQLite and PostgreSQL; the window still bounds how long a job is held.
CLAIM_AHEAD_MAX = 100
# Weight of the newest run time in the mean that sizes the claim ahead.
RUN_TIME_WEIGHT = 0.2
# The events of the storage's feed a worker acts on (`handle_feed_event`); it subscribes
# to these only, so that the job events of every worker of the queue, most of the
# feed, are not even decoded for it.
FEED_EVENTS = frozenset({EventName.JOB_AVAILABLE, EventName.QUEUE_RESUMED, EventName.JOB_ABORTING})
# Set on the one log record of a worker or server stopped by a permanent storage
# failure, for a program (the CLI) that reports that failure itself.
STORAGE_FAILURE_RECORD = "pyjobqueue_storage_failure"
# Set (to the job's id) on the WARNING of a failed or retried attempt, which carries the
# traceback, for handlers that show tracebacks elsewhere (the web console, on the card).
FAILED_ATTEMPT_RECORD = "pyjobqueue_failed_attempt"
# Called after an outcome was applied and announced: (the job as claimed, outcome,
# seconds it ran).
OutcomeHook = Callable[[Job[Any, Any], Outcome, float | None], Awaitable[None]]
# Counts an outcome (+1) before it is written, and takes it back (-1) if it was refused.
CountHook = Callable[[Outcome, float | None, int], None]


class JobInterrupt(KeyboardInterrupt):
    """Raised into the running code of job `job_id` to stop it at once: its abort.

    A hard cancel (`pyjobqueue.browser.WorkerServer`) raises it from a signal handler
    into a CPU-bound job that never looks at its signal. Only the attempt of that job
    takes it as its abort; anywhere else it is a KeyboardInterrupt like any other.
    """

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} interrupted: aborted")
        self.job_id = job_id


@dataclasses.dataclass(frozen=True)
class WorkerHooks:
    """How a server runs a worker as its own (internal; a standalone worker has none).

    The worker sends its events to `emit` instead of its own listeners, writes `origin`
    into them, reports each outcome to `count_outcome` and `after_outcome`, and a
    permanent storage failure to `failed` (the server then stops, worker included).
    """

    origin: str
    emit: Callable[[JobEvent], None]
    count_outcome: CountHook
    after_outcome: OutcomeHook
    failed: Callable[[BaseException], None] | None = None


@dataclasses.dataclass(eq=False)
class _Run:
    """One attempt of one job running in this worker."""

    job: Job[Any, Any]
    signal: AbortSignal
    started: float
    announced: bool = False  # the claim published job_start
    admitted: bool = False  # its deadline and the limiter were asked (worker._admit)
    executing: bool = True  # `execute` has not ended (the run holds one of the slots)
    task: asyncio.Task[None] | None = None
    # Its task is running the job's code (`execute`): its lease must be kept.
    in_execute: bool = False
    cancels: int = 0  # how many times `_cancel_execute` cancelled that code
    # job_start on its way to the storage; what the attempt publishes next waits for it.
    announcing: asyncio.Future[None] | None = None

    @property
    def attempt(self) -> int:
        return self.job.run_attempts


def outcome_event(queue_name: str, job_id: int, outcome: Outcome, origin: str) -> JobEvent | None:
    """The job event that announces an applied outcome (none for a re-queue on stop)."""
    if outcome.kind is OutcomeKind.COMPLETE:
        return JobEvent.job_complete(queue_name, job_id, outcome.output, origin)
    if outcome.kind is OutcomeKind.FAIL:
        error = outcome.error or ""
        return JobEvent.job_error(queue_name, job_id, error, outcome.error_code, origin)
    if outcome.kind is OutcomeKind.RETRY or outcome.snoozed:
        return JobEvent.job_retry(queue_name, job_id, outcome.run_after, origin)
    return None


# What a worker takes as its job classes: one class, or a list of classes of distinct kinds.
JobClasses = type[Job[Any, Any]] | Sequence[type[Job[Any, Any]]]


class JobQueueWorker(Observable, Generic[InputT, OutputT]):
    """Processes jobs of one queue: up to `concurrency` at a time, as the limiter allows.

    It runs the jobs of its job classes' kinds, and jobs of no kind as its first class.
    """

    def __init__(
        self,
        job_class: type[Job[InputT, OutputT]] | Sequence[type[Job[Any, Any]]],
        *,
        storage: QueueStorage,
        queue_name: str | None = None,
        limiter: Limiter | None = None,
        poll_interval_ms: float = 100,
        lease_ms: float = 30_000,
        stop_timeout_ms: float = 10_000,
        concurrency: int = 1,
        abort_grace_ms: float = 1_000,
        middleware: Sequence[Middleware] | None = None,
        _hooks: WorkerHooks | None = None,
    ) -> None:
        classes = require_job_classes(job_class)
        self.middleware = require_middleware(middleware)
        if _hooks is not None and not isinstance(_hooks, WorkerHooks):
            raise TypeError(f"_hooks must be WorkerHooks, got {_hooks!r}")
        self.queue_name = require_storage(storage, queue_name)
        self.job_classes = classes
        self.job_class: type[Job[InputT, OutputT]] = classes[0]
        self._by_kind = {kind_of(cls): cls for cls in classes}
        self.kinds = frozenset(self._by_kind)
        self._policies = {cls: RetryPolicy.of(cls) for cls in classes}
        self.storage = storage
        self.limiter = require_limiter(limiter)
        self.poll_interval = require_ms("poll_interval_ms", poll_interval_ms, positive=True) / 1000
        self.lease = timedelta(milliseconds=require_ms("lease_ms", lease_ms, positive=True))
        self._stop_timeout = require_ms("stop_timeout_ms", stop_timeout_ms) / 1000
        self._concurrency = require_count("concurrency", concurrency, 1)
        self.abort_grace = require_ms("abort_grace_ms", abort_grace_ms) / 1000
        self.worker_id = f"worker-{uuid.uuid4().hex[:16]}"
        self.events = EventEmitter(JOB_EVENTS)
        self._hooks = _hooks
        self._origin = self.worker_id if _hooks is None else _hooks.origin
        self._running: dict[int, _Run] = {}
        self._executing = 0  # runs whose `execute` has not ended: the slots taken
        # Jobs claimed ahead, not started yet (with whether the claim announced them).
        self._ready: collections.deque[tuple[Job[Any, Any], bool]] = collections.deque()
        self._refuses = refuses_starts(self.limiter)
        self._mean_run: float | None = None  # seconds, see CLAIM_AHEAD_WINDOW
        self._drained = False  # the last claim found fewer due jobs than it asked for
        self._recent_aborts: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._wake: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._unsubscribe: Unsubscribe | None = None
        self._stopping = False
        self._hurry: asyncio.Event | None = None
        self._stop_task: asyncio.Future[None] | None = None
        self._stopped: asyncio.Event | None = None
        self._progress_failing = False
        # The permanent storage failure that stopped this worker (None otherwise).
        self.error: BaseException | None = None

    @property
    def concurrency(self) -> int:
        """How many jobs this worker runs at once."""
        return self._concurrency

    def set_concurrency(self, count: int) -> None:
        """Run up to `count` jobs at once from now on; running jobs are never cut short."""
        self._concurrency = require_count("concurrency", count, 1)
        self.wake()

    @property
    def stop_timeout(self) -> float:
        """Seconds a stop lets running jobs finish before it stops them."""
        return self._stop_timeout

    def shorten_stop(self, timeout_ms: float) -> None:
        """Let a stop (under way or to come) wait at most `timeout_ms` for running jobs.

        0 stops the running jobs of a stop under way now; they go back to the queue.
        """
        seconds = require_ms("timeout_ms", timeout_ms) / 1000
        self._stop_timeout = min(self._stop_timeout, seconds)
        if seconds == 0:
            self.hurry()

    # -- events -----------------------------------------------------------------

    def _emit(self, event: JobEvent) -> None:
        """Tell this worker's listeners, or its server, about an event."""
        if self._hooks is not None:
            self._hooks.emit(event)
        else:
            self.events.emit(event.name, *event.listener_args())

    async def _publish(self, event: JobEvent) -> None:
        self._emit(event)
        await self._publish_to_storage(event)

    async def _publish_to_storage(self, event: JobEvent) -> None:
        try:
            await self.storage.publish(event)
        except Exception:
            logger.exception("could not publish %s of job %s", event.name, event.job_id)

    # -- lifecycle --------------------------------------------------------------

    def is_running(self) -> bool:
        """True between start() and stop()."""
        return self._loop_task is not None and not self._stopping

    async def start(self, *, subscribe: bool = True) -> None:
        """Start claiming; `subscribe=False` when a server feeds events in instead."""
        if self._loop_task is not None:
            return
        self._stopping = False
        self.error = None
        self._wake = asyncio.Event()
        self._hurry = asyncio.Event()
        self._stopped = asyncio.Event()
        if subscribe:
            self._unsubscribe = await self.storage.subscribe(
                self.handle_feed_event, names=FEED_EVENTS
            )
        self._loop_task = asyncio.create_task(self._loop(), name=f"pyjobqueue {self.worker_id}")
        self._heartbeat_task = asyncio.create_task(
            self._heartbeats(), name=f"pyjobqueue {self.worker_id} leases"
        )

    async def stop(self) -> None:
        """Stop claiming, let running jobs finish (up to stop_timeout_ms), re-queue the rest."""
        if self._loop_task is None:
            return
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stop_task)

    async def wait_stopped(self) -> None:
        """Wait until the worker has stopped; raises the permanent storage failure (a
        `StorageError`) that stopped it, if one did."""
        if self._stopped is not None:
            await self._stopped.wait()
        if self.error is not None:
            raise self.error

    def _fail(self, error: BaseException) -> None:
        """A permanent storage failure: stop at once (running jobs are stopped too)."""
        if self.error is not None or self._loop_task is None:
            return
        self.error = error
        self.shorten_stop(0)
        if self._hooks is not None and self._hooks.failed is not None:
            self._hooks.failed(error)  # the server logs it and stops
            return
        logger.error(
            "worker %s of queue %r stops: %s",
            self.worker_id,
            self.queue_name,
            one_line(error),
            extra={STORAGE_FAILURE_RECORD: True},
        )
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop())

    async def _stop(self) -> None:
        assert self._loop_task is not None
        self._stopping = True
        self.wake()
        await self._loop_task
        await self._give_back_ready()
        await self._drain()  # the leases of the jobs still running are renewed meanwhile
        self._loop_task = None
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
            self._heartbeat_task = None
        if self._unsubscribe is not None:
            await self._unsubscribe()
            self._unsubscribe = None
        self._stop_task = None
        if self._stopped is not None:
            self._stopped.set()

    def hurry(self) -> None:
        """Cut a graceful stop short: running jobs are stopped now and go back to the queue."""
        if self._hurry is None or not self._stopping:
            return
        self._hurry.set()
        for run in list(self._running.values()):
            run.signal.abort(AbortReason.STOP.value)
            self._cancel_execute(run)

    async def _drain(self) -> None:
        tasks = {run.task for run in self._running.values() if run.task is not None}
        if tasks and self._stop_timeout > 0:
            tasks = await self._wait_unless_hurried(tasks, self._stop_timeout)
        if tasks:
            for run in list(self._running.values()):
                run.signal.abort(AbortReason.STOP.value)
            # The signal cancels a job that ignores it after abort_grace_ms.
            _done, tasks = await asyncio.wait(tasks, timeout=self.abort_grace + 1.0)
        for task in tasks:  # jobs that swallow cancellation: stop waiting for them
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _wait_unless_hurried(
        self, tasks: set[asyncio.Task[None]], timeout: float
    ) -> set[asyncio.Task[None]]:
        """Wait for `tasks` up to `timeout` or until `hurry()`; those still running."""
        assert self._hurry is not None
        hurried = asyncio.ensure_future(self._hurry.wait())
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while tasks and not hurried.done():
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                await asyncio.wait(
                    {*tasks, hurried}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                tasks = {task for task in tasks if not task.done()}
        finally:
            hurried.cancel()
        return tasks

    def wake(self) -> None:
        """Make the claim loop look for work now instead of at the next poll."""
        self._drained = False
        if self._wake is not None:
            self._wake.set()

    def _nudge(self) -> None:
        """Wake the claim loop when a claim now may take something: it has room, and the
        last claim did not find the queue drained (new work wakes it: `wake`)."""
        if self._wake is not None and not self._drained and self._wanted() > 0:
            self._wake.set()

    def running_job_ids(self) -> list[int]:
        """Ids of the jobs this worker is running now."""
        return list(self._running)

    # -- events from the storage feed ---------------------------------------------

    def handle_feed_event(self, event: JobEvent) -> None:
        """React to the queue's change feed: wake for new work, abort on request."""
        if event.queue_name != self.queue_name:
            return
        if event.name in (EventName.JOB_AVAILABLE, EventName.QUEUE_RESUMED):
            self.wake()
        elif event.name == EventName.JOB_ABORTING:
            self.request_abort(event.job_id)

    def request_abort(self, job_id: int) -> bool:
        """Fire the signal of a running job (emitting job_aborting once); False if not here."""
        run = self._running.get(job_id)
        if run is None:
            self._recent_aborts[job_id] = None
            while len(self._recent_aborts) > RECENT_ABORTS_KEPT:
                self._recent_aborts.popitem(last=False)
            return False
        self._abort_run(run)
        return True

    def _abort_run(self, run: _Run) -> None:
        if run.signal.abort(AbortReason.USER.value):
            self._emit(JobEvent.job_aborting(self.queue_name, run.job.id or 0, self._origin))

    # -- the claim loop ---------------------------------------------------------

    async def _loop(self) -> None:
        backoff = Backoff(self.poll_interval, CLAIM_RETRY_MAX_DELAY)
        while not self._stopping:
            assert self._wake is not None
            self._wake.clear()
            try:
                timeout = await self._claim_round()
            except Exception as error:
                if is_permanent(self.storage, error):
                    self._fail(error)
                    return
                delay = backoff.next_delay()
                self._log_failed_round(error, delay, first=backoff.failures == 1)
                await self._pause(delay)
                continue
            failures = backoff.succeeded()
            if failures:
                logger.warning("%s claims again, after %d failed rounds", self.worker_id, failures)
            if timeout is not None and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()

    def _log_failed_round(self, error: BaseException, delay: float, *, first: bool) -> None:
        """One line per failed round (they are `delay` apart); a traceback for the first
        failure of an unknown kind, which may be a bug rather than an outage."""
        unknown = not self.storage.is_transient(error)
        logger.warning(
            "claim round of %s failed (%s); trying again in %.2g s",
            self.worker_id,
            one_line(error),
            delay,
            exc_info=error if unknown and first else None,
        )

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds` before retrying: new work does not cut it short, a stop does."""
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self._stopping:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wake.wait()

    async def _claim_round(self) -> float | None:
        """Claim and start what the limiter allows; how long to idle (None: go on)."""
        self._start_ready()
        wanted = self._wanted()
        if wanted <= 0:
            return self.poll_interval
        if not await self.limiter.can_proceed():
            next_time = await self.limiter.get_next_available_time()
            wait = (next_time - utcnow()).total_seconds()
            return min(self.poll_interval, max(wait, 0.001))
        now = utcnow()
        # When the limiter never refuses, every claimed job starts unless its deadline has
        # passed, which the storage can tell too: it announces job_start with the claim.
        announce = None if self._refuses else self._origin
        jobs = await self.storage.claim(
            self.worker_id, now, now + self.lease, wanted, announce, self.kinds
        )
        # Fewer than asked: none are left that are due; what comes next announces itself
        # (job_available wakes the loop), or falls due by the next poll.
        self._drained = len(jobs) < wanted
        if not jobs:
            return self.poll_interval
        if self._refuses:
            # A limiter that may refuse decides each start in claim order, before the next.
            for job in jobs:
                if await self._admit(job):
                    self._begin(job, announced=False, admitted=True)
            return None
        self._ready.extend((job, announce is not None) for job in jobs)
        self._start_ready()
        return None

    def _wanted(self) -> int:
        """How many jobs to claim now: one per idle slot, and as many more as the claim
        ahead holds; with every slot taken, only to refill it once half of it is gone."""
        free = self._concurrency - self._executing
        ahead = self._claim_ahead()
        if free <= 0 and 2 * len(self._ready) >= ahead:
            return 0
        return max(free, 0) + ahead - len(self._ready)

    def _claim_ahead(self) -> int:
        """How many jobs to hold beyond the idle slots (see CLAIM_AHEAD_WINDOW)."""
        if self._refuses or self._mean_run is None or self._stopping:
            return 0
        fits = self._concurrency * CLAIM_AHEAD_WINDOW / max(self._mean_run, 1e-6)
        return min(CLAIM_AHEAD_MAX, int(fits))

    def _start_ready(self) -> None:
        """Start jobs in hand on the idle slots."""
        while self._ready and self._executing < self._concurrency and not self._stopping:
            job, announced = self._ready.popleft()
            self._begin(job, announced=announced)

    def _begin(self, job: Job[Any, Any], *, announced: bool, admitted: bool = False) -> None:
        """Start a claimed job (`announced`: the claim published its job_start;
        `admitted`: `_admit` said it runs, else its task asks first)."""
        assert job.id is not None
        run = _Run(job, AbortSignal(), time.monotonic(), announced=announced, admitted=admitted)
        self._running[job.id] = run
        self._executing += 1
        abort_requested = job.id in self._recent_aborts
        self._recent_aborts.pop(job.id, None)
        if abort_requested or job.status is JobStatus.ABORTING:
            self._abort_run(run)
        run.task = asyncio.create_task(self._run(run), name=f"pyjobqueue job {job.id}")

    def _executed(self, run: _Run) -> None:
        """`execute` of `run` has ended (or never began): its slot takes the next job."""
        if not run.executing:
            return
        run.executing = False
        self._executing -= 1
        self._start_ready()
        self._nudge()

    async def _admit(self, job: Job[Any, Any]) -> bool:
        """Whether a claimed job runs: not when its deadline has passed (it fails) or the
        limiter refuses it (it goes back to the queue)."""
        assert job.id is not None
        now = utcnow()
        expired = decide_deadline(job, now)
        if expired is not None:
            await self._apply(job, expired, None)
            return False
        if not await self.limiter.try_start():
            requeue = Outcome(OutcomeKind.REQUEUE, now, run_after=now)
            await self.storage.finish(job.id, self.worker_id, job.run_attempts, requeue)
            return False
        return True

    async def _give_back_ready(self) -> None:
        """Put the jobs in hand back in the queue (on stop): they never started."""
        while self._ready:
            job, _announced = self._ready.popleft()
            assert job.id is not None
            now = utcnow()
            requeue = Outcome(OutcomeKind.REQUEUE, now, run_after=now)
            try:
                await self.storage.finish(job.id, self.worker_id, job.run_attempts, requeue)
            except Exception as error:  # its lease expires and recovery re-queues it
                logger.warning("job %s: could not put it back (%s)", job.id, one_line(error))

    # -- running one job ----------------------------------------------------------

    async def _run(self, run: _Run) -> None:
        job = run.job
        assert job.id is not None
        try:
            admitted = run.admitted or await self._admit(job)
        except Exception as error:
            admitted = False
            if is_permanent(self.storage, error):
                self._fail(error)
            else:
                logger.warning("job %s could not start (%s)", job.id, one_line(error))
        if not admitted:
            self._executed(run)
            self._running.pop(job.id, None)
            return
        try:
            await self._attempt(run)
        finally:
            self._executed(run)
            self._running.pop(job.id, None)
            await self.limiter.record_job_completion()
            if self._refuses:  # the limiter may let a job start now
                self.wake()
            else:
                self._nudge()

    async def _attempt(self, run: _Run) -> None:
        """Run an admitted job and record its outcome."""
        job = run.job
        assert job.id is not None
        start = JobEvent.job_start(self.queue_name, job.id, self._origin)
        self._emit(start)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "job %s (%s) of queue %r starts, attempt %d",
                job.id,
                kind_of(self.class_of(job)),
                self.queue_name,
                job.run_attempts,
            )
        if not run.announced:
            # The storage round trip overlaps the job itself instead of delaying it.
            run.announcing = asyncio.ensure_future(self._publish_to_storage(start))
        try:
            output, error = await self._execute(run)
            ran = time.monotonic() - run.started
            mean = self._mean_run
            self._mean_run = ran if mean is None else mean + RUN_TIME_WEIGHT * (ran - mean)
            if run.announcing is not None:
                await run.announcing
            reason = AbortReason(run.signal.reason) if run.signal.reason else None
            if reason is AbortReason.LEASE_LOST:
                logger.warning("job %s: lease lost, its result is dropped", job.id)
                return
            job_class = self.class_of(job)
            policy = self._policies[job_class]
            next_available = None
            if reason is AbortReason.TIMEOUT or (
                error is not None
                and policy.retries(error)
                and getattr(error, "retry_date", None) is None
            ):
                next_available = await self.limiter.get_next_available_time()
            outcome = decide_outcome(
                job,
                now=utcnow(),
                output=output,
                error=error,
                abort_reason=reason,
                next_available=next_available,
                policy=policy,
            )
            # The slot takes its next job while the outcome is written; not sooner, so
            # the next claim's time comes after this outcome's (a dependant released by
            # this job never starts before it completed).
            self._executed(run)
            if outcome.traceback is not None or reason is AbortReason.TIMEOUT:
                self._log_failure(job, job_class, outcome, error)
            duration = time.monotonic() - run.started
            await self._apply(job, outcome, duration)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "job %s (%s) of queue %r: %s after %.3f s",
                    job.id,
                    kind_of(job_class),
                    self.queue_name,
                    outcome.kind.value,
                    duration,
                )
        except Exception as error:
            if is_permanent(self.storage, error):
                logger.error("job %s: could not record its outcome: %s", job.id, one_line(error))
                self._fail(error)
            else:
                logger.exception("job %s: could not record its outcome", job.id)

    def class_of(self, job: Job[Any, Any]) -> type[Job[Any, Any]]:
        """The job class that runs `job`: its kind's, or the first one for no kind."""
        return self._by_kind.get(job.kind or "", self.job_class)

    def _log_failure(
        self,
        job: Job[Any, Any],
        job_class: type[Job[Any, Any]],
        outcome: Outcome,
        error: BaseException | None,
    ) -> None:
        """The traceback of a failed or retried attempt, at WARNING."""
        then = "retrying" if outcome.kind is OutcomeKind.RETRY else "failed"
        logger.warning(
            "job %s (%s) of queue %r, attempt %d: %s: %s; %s",
            job.id,
            kind_of(job_class),
            self.queue_name,
            job.run_attempts,
            outcome.error_code,
            outcome.error,
            then,
            exc_info=error,
            extra={FAILED_ATTEMPT_RECORD: job.id},
        )

    def _timeout(self, job: Job[Any, Any]) -> float | None:
        """Seconds an attempt of `job` may run: its own timeout_ms, else its class's."""
        timeout_ms = job.timeout_ms
        if timeout_ms is None:
            timeout_ms = self.class_of(job).timeout_ms
        return None if timeout_ms is None else timeout_ms / 1000

    async def _execute(self, run: _Run) -> tuple[Any, BaseException | None]:
        """Run `execute` under the signal, a lease heartbeat and the deadline timer."""
        job = run.job
        instance = self.class_of(job).from_record(job)
        context = JobContext(
            instance, run.signal, lambda *args: self._progress(run, *args), self._outputs
        )

        def call_execute() -> Awaitable[Any]:
            return instance.execute(instance.input, context)

        run_all = chain(self.middleware, instance, context, call_execute)
        loop = asyncio.get_running_loop()
        # An aborted job gets abort_grace_ms to end by itself, then it is cancelled.
        remove_listener = run.signal.add_listener(
            lambda _reason: loop.call_later(self.abort_grace, self._cancel_execute, run)
        )
        deadline = None
        if job.deadline_at is not None:
            delay = max(0.0, (job.deadline_at - utcnow()).total_seconds())
            deadline = loop.call_later(delay, run.signal.abort, AbortReason.DEADLINE.value)
        timeout = self._timeout(job)
        timer = None
        if timeout is not None:
            timer = loop.call_later(timeout, run.signal.abort, AbortReason.TIMEOUT.value)
        # `execute` runs in the attempt's own task, not one of its own (one task per
        # job): `_cancel_execute` cancels that task only while `in_execute` holds, so
        # the CancelledError always comes out of the job's code, here.
        run.in_execute = True
        try:
            return await run_all(), None
        except JobInterrupt as interrupt:
            if interrupt.job_id != job.id:
                raise
            # A hard cancel: the interrupt that ended this job's code is its abort
            # (outcome.py decides the rest, as for any aborted attempt).
            self._abort_run(run)
            return None, AbortSignalJobError(AbortReason.USER.value)
        except asyncio.CancelledError:
            if not run.signal.aborted:
                raise
            return None, None
        except Exception as error:
            return None, error
        finally:
            run.in_execute = False
            # Our cancels are answered, whether the code ended on them or swallowed them
            # and returned: the task writes the outcome with none pending.
            while run.cancels and run.task is not None:
                run.cancels -= 1
                run.task.uncancel()
            remove_listener()
            for handle in (deadline, timer):
                if handle is not None:
                    handle.cancel()

    def _cancel_execute(self, run: _Run) -> None:
        """Cancel the job's code of an aborted attempt that has not ended by itself."""
        if run.in_execute and run.task is not None:
            run.cancels += 1
            run.task.cancel()

    async def _outputs(self, job_ids: list[int]) -> dict[int, Any]:
        """`JobContext.dependency_outputs`: the outputs of stored jobs, by id."""
        outputs = {}
        for job_id in job_ids:
            job = await self.storage.get(job_id)
            if job is not None:
                outputs[job_id] = job.output
        return outputs

    async def _progress(
        self, run: _Run, progress: float, message: str, details: dict[str, Any] | None
    ) -> None:
        validate_json(details, "details")
        job = run.job
        assert job.id is not None
        try:
            saved = await self.storage.save_progress(
                job.id, self.worker_id, run.attempt, progress, message, details
            )
        except Exception as error:
            if is_permanent(self.storage, error):
                self._fail(error)
                return
            # The storage is unreachable for now (a restart, a dropped connection):
            # progress is not worth failing the job for; the heartbeat guards the lease.
            # Logged once until progress is saved again: jobs may report many times a second.
            if not self._progress_failing:
                logger.warning("job %s: could not save progress (%s)", job.id, one_line(error))
            self._progress_failing = True
            return
        self._progress_failing = False
        if not saved:
            run.signal.abort(AbortReason.LEASE_LOST.value)
            return
        event = JobEvent.job_progress(
            self.queue_name, job.id, progress, message, details, self._origin
        )
        if run.announcing is not None:
            await run.announcing
        await self._publish(event)

    async def _heartbeats(self) -> None:
        """Renew the lease of every running job, all together, every third of a lease."""
        interval = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            running = [run for run in self._running.values() if run.in_execute]
            ready = [job for job, _announced in self._ready]
            if running or ready:
                results = await asyncio.gather(
                    *(self._renew(run) for run in running),
                    *(self._renew_ready(job) for job in ready),
                )
                errors = [error for error in results if error is not None]
                if errors:
                    self._renewals_failed(errors, len(running) + len(ready), interval)

    def _renewals_failed(self, errors: list[Exception], running: int, interval: float) -> None:
        """Stop on a permanent failure; else one line for the round, retried next round."""
        for error in errors:
            if is_permanent(self.storage, error):
                self._fail(error)
                return
        logger.warning(
            "%s could not renew the leases of %d of %d running jobs (%s); trying again in %.2g s",
            self.worker_id,
            len(errors),
            running,
            one_line(errors[0]),
            interval,
        )

    async def _renew(self, run: _Run) -> Exception | None:
        """Renew one lease; the failure, if it failed."""
        job_id = run.job.id
        assert job_id is not None
        try:
            status = await self.storage.renew_lease(
                job_id, self.worker_id, run.attempt, utcnow() + self.lease
            )
        except Exception as error:
            return error
        if not run.in_execute:
            return None  # the attempt ended meanwhile: its outcome decides, not this answer
        if status is None:
            run.signal.abort(AbortReason.LEASE_LOST.value)
        elif status is JobStatus.ABORTING:
            self._abort_run(run)
        return None

    async def _renew_ready(self, job: Job[Any, Any]) -> Exception | None:
        """Renew the lease of a job in hand; a lost one is dropped, an abort noted."""
        assert job.id is not None
        try:
            status = await self.storage.renew_lease(
                job.id, self.worker_id, job.run_attempts, utcnow() + self.lease
            )
        except Exception as error:
            return error
        if status is None:
            self._ready = collections.deque(entry for entry in self._ready if entry[0] is not job)
        elif status is JobStatus.ABORTING:
            self._recent_aborts[job.id] = None
        return None

    async def _finish(
        self, job: Job[Any, Any], outcome: Outcome, event: JobEvent | None = None
    ) -> bool:
        """Write an outcome (and publish its event), retrying through an outage for a lease.

        Giving up sooner would make the job run again once its lease expires; the write
        stays guarded, so a job recovered meanwhile by another server is not touched.
        """
        assert job.id is not None
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.lease.total_seconds()
        delay = FINISH_RETRY_FIRST_DELAY
        while True:
            try:
                return await self.storage.finish(
                    job.id, self.worker_id, job.run_attempts, outcome, event=event
                )
            except Exception as error:
                if is_permanent(self.storage, error) or loop.time() + delay > give_up_at:
                    raise
                logger.warning("job %s: could not record its outcome; retrying", job.id)
                await asyncio.sleep(delay)
                delay = min(delay * 2, FINISH_RETRY_MAX_DELAY)

    def _count(self, outcome: Outcome, duration: float | None, times: int) -> None:
        if self._hooks is not None:
            self._hooks.count_outcome(outcome, duration, times)

    async def _apply(self, job: Job[Any, Any], outcome: Outcome, duration: float | None) -> None:
        assert job.id is not None
        event = outcome_event(self.queue_name, job.id, outcome, self._origin)
        # Counted before the write: once the outcome is stored, anyone may see it (a
        # read, the event), and whoever does finds it in the server's stats.
        self._count(outcome, duration, 1)
        try:
            # The storage publishes the event with the outcome: one write, never one
            # without the other.
            applied = await self._finish(job, outcome, event)
        except BaseException:
            self._count(outcome, duration, -1)
            raise
        if not applied:
            self._count(outcome, duration, -1)
            return
        if event is not None:
            self._emit(event)
        if self._hooks is not None:
            await self._hooks.after_outcome(job, outcome, duration)
