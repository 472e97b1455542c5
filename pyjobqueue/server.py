"""JobQueueServer: runs workers, recovers expired leases, cleans up, keeps statistics."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Generic, Self

from . import serving
from ._options import (
    optional_ms,
    require_count,
    require_job_classes,
    require_limiter,
    require_ms,
    require_storage,
)
from ._retry import Backoff, is_permanent, one_line
from .events import (
    JOB_EVENTS,
    SERVER_EVENTS,
    EventEmitter,
    EventName,
    JobEvent,
    Observable,
    is_dependency_failure,
)
from .job import InputT, Job, JobStatus, OutputT, kind_of, utcnow
from .leader import LeaderLock
from .limiters import Limiter
from .middleware import Middleware, require_middleware
from .outcome import Outcome, OutcomeKind, decide_recovery
from .presence import ServerInfo, this_host
from .schedules import Schedule, Step, decide_step
from .storage.base import QueueStorage, Unsubscribe
from .worker import (
    FEED_EVENTS as WORKER_FEED_EVENTS,
)
from .worker import (
    STORAGE_FAILURE_RECORD,
    JobQueueWorker,
    WorkerHooks,
    outcome_event,
)

logger = logging.getLogger(__name__)

# Hears of each applied outcome: (the job as claimed, the outcome, seconds it ran).
OutcomeListener = Callable[[Job[Any, Any], Outcome, float | None], object]

# The periodic sweep leaves jobs that finished this recently alone: with a retention
# of 0 their finisher deletes them itself, after announcing the outcome, and a sweep in
# between would make a client waiting on the job find it gone.
SWEEP_MIN_AGE_MS = 1_000
_TICK = timedelta(microseconds=1)
# A failed maintenance round is tried again after its tick, doubling up to this.
MAINTENANCE_RETRY_MAX_SECONDS = 60.0
# A server records its heartbeat this often (or each third of a lease, if shorter); it
# counts as alive until HEARTBEATS_MISSED heartbeats were missed.
HEARTBEAT_SECONDS = 10.0
HEARTBEATS_MISSED = 3
# Schedules are checked at least this often (SPEC 8.6: a tick runs within about a second).
SCHEDULE_CHECK_SECONDS = 1.0
# The events of the storage's feed a server acts on (`_on_feed`: a pause, a job the
# storage failed, and what its worker takes); the job events of the queue's workers,
# most of the feed, are not even decoded for it.
FEED_EVENTS = WORKER_FEED_EVENTS | {
    EventName.QUEUE_PAUSED,
    EventName.QUEUE_RESUMED,
    EventName.JOB_ERROR,  # of a dependency that failed (`is_dependency_failure`)
}


@dataclasses.dataclass(frozen=True)
class JobQueueStats:
    """What this server's workers did since it was created."""

    total_jobs: int = 0
    completed_jobs: int = 0
    failed_jobs: int = 0
    aborted_jobs: int = 0
    retried_jobs: int = 0
    disabled_jobs: int = 0
    average_processing_time: float | None = None  # milliseconds, completed jobs
    last_update_time: datetime = dataclasses.field(default_factory=utcnow)


class _StatsCounter:
    """Mutable counters behind JobQueueStats."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(("completed", "failed", "aborted", "retried", "disabled"), 0)
        self.processing_ms = 0.0
        self.timed = 0
        self.updated = utcnow()

    def count(self, outcome: Outcome, duration: float | None, times: int = 1) -> None:
        """Count an outcome (`times=-1` takes back one counted before it was refused)."""
        if outcome.kind is OutcomeKind.COMPLETE:
            self.counts["completed"] += times
            if duration is not None:
                self.processing_ms += duration * 1000 * times
                self.timed += times
        elif outcome.kind is OutcomeKind.FAIL:
            self.counts["aborted" if outcome.aborted else "failed"] += times
        elif outcome.kind is OutcomeKind.RETRY:
            self.counts["retried"] += times
        self.updated = utcnow()

    def snapshot(self) -> JobQueueStats:
        counts = self.counts
        return JobQueueStats(
            total_jobs=counts["completed"] + counts["failed"] + counts["aborted"],
            completed_jobs=counts["completed"],
            failed_jobs=counts["failed"],
            aborted_jobs=counts["aborted"],
            retried_jobs=counts["retried"],
            disabled_jobs=counts["disabled"],
            average_processing_time=self.processing_ms / self.timed if self.timed else None,
            last_update_time=self.updated,
        )


class JobQueueServer(Observable, Generic[InputT, OutputT]):
    """Runs `worker_count` jobs at a time on a queue, with lease recovery and cleanup."""

    def __init__(
        self,
        job_class: type[Job[InputT, OutputT]] | Sequence[type[Job[Any, Any]]],
        *,
        storage: QueueStorage,
        queue_name: str | None = None,
        limiter: Limiter | None = None,
        worker_count: int = 1,
        poll_interval_ms: float = 100,
        delete_after_completion_ms: float | None = None,
        delete_after_failure_ms: float | None = None,
        delete_after_disabled_ms: float | None = None,
        cleanup_interval_ms: float = 10_000,
        lease_ms: float = 30_000,
        stop_timeout_ms: float = 10_000,
        leader_lock: LeaderLock | None = None,
        abort_grace_ms: float = 1_000,
        middleware: Sequence[Middleware] | None = None,
        schedules: Sequence[Schedule] | None = None,
    ) -> None:
        classes = require_job_classes(job_class)
        # Wrapped around every attempt's execute, the first outermost (middleware.py).
        self.middleware = require_middleware(middleware)
        self.schedules = _require_schedules(schedules)
        if leader_lock is not None and not isinstance(leader_lock, LeaderLock):
            raise TypeError(f"leader_lock must be a LeaderLock, got {leader_lock!r}")
        self.leader_lock = leader_lock
        self.queue_name = require_storage(storage, queue_name)
        # The kinds it runs (SPEC 8.1): jobs of no kind run as the first class.
        self.job_classes = classes
        self.job_class: type[Job[InputT, OutputT]] = classes[0]
        self.storage = storage
        self.limiter = require_limiter(limiter)
        self.worker_count = require_count("worker_count", worker_count, 1)
        self.poll_interval_ms = require_ms("poll_interval_ms", poll_interval_ms, positive=True)
        self.lease_ms = require_ms("lease_ms", lease_ms, positive=True)
        self.stop_timeout_ms = require_ms("stop_timeout_ms", stop_timeout_ms)
        self.abort_grace_ms = require_ms("abort_grace_ms", abort_grace_ms)
        self.cleanup_interval_ms = require_ms(
            "cleanup_interval_ms", cleanup_interval_ms, positive=True
        )
        self.retention: dict[JobStatus, float | None] = {
            JobStatus.COMPLETED: optional_ms(
                "delete_after_completion_ms", delete_after_completion_ms
            ),
            JobStatus.FAILED: optional_ms("delete_after_failure_ms", delete_after_failure_ms),
            JobStatus.DISABLED: optional_ms("delete_after_disabled_ms", delete_after_disabled_ms),
        }
        self.server_id = f"server-{uuid.uuid4().hex[:16]}"
        self.events = EventEmitter(JOB_EVENTS + SERVER_EVENTS)
        # Attached clients receive every event of this server as a JobEvent.
        self.taps: list[Callable[[JobEvent], None]] = []
        # The workers share one claim loop: a JobQueueWorker with a slot per worker,
        # which claims as many jobs per round trip as it has idle slots.
        self._worker: JobQueueWorker[InputT, OutputT] | None = None
        self._stats = _StatsCounter()
        self._maintenance: asyncio.Task[None] | None = None
        self._unsubscribe: Unsubscribe | None = None
        self._running = False
        self._leadership: asyncio.Task[None] | None = None
        self._stopping: asyncio.Future[None] | None = None
        self._stopped: asyncio.Event | None = None
        # The permanent storage failure that stopped this server (None otherwise).
        self.error: BaseException | None = None
        self._paused = False
        self._outcome_listeners: list[OutcomeListener] = []
        self._scheduler: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._started_at = utcnow()

    # -- events -----------------------------------------------------------------

    def emit_event(self, event: JobEvent) -> None:
        """Send a job event to this server's listeners and attached clients."""
        if event.name == EventName.JOB_DISABLED:
            self._stats.counts["disabled"] += 1
        self.events.emit(event.name, *event.listener_args())
        for tap in list(self.taps):
            try:
                tap(event)
            except Exception:
                logger.exception("attached client failed on %s", event.name)

    def relay_client_event(self, event: JobEvent) -> None:
        """An attached client did something (abort, disable): tell workers and listeners."""
        worker = self._worker
        if (
            event.name == EventName.JOB_ABORTING
            and worker is not None
            and worker.request_abort(event.job_id)
        ):
            return  # the worker emits job_aborting itself, once
        self.emit_event(event)

    def _on_feed(self, event: JobEvent) -> None:
        if event.queue_name == self.queue_name and event.name in (
            EventName.QUEUE_PAUSED,
            EventName.QUEUE_RESUMED,
        ):
            self._paused = event.name == EventName.QUEUE_PAUSED
        if is_dependency_failure(event) and event.queue_name == self.queue_name:
            # The storage failed these jobs itself (no worker ran them): its feed is
            # how this server's listeners and attached clients hear of them.
            self.emit_event(event)
        if self._worker is not None:
            self._worker.handle_feed_event(event)

    def is_paused(self) -> bool:
        """Whether the queue was paused when this server last looked (its claims take
        nothing while it is: the storage checks with every claim)."""
        return self._paused

    # -- lifecycle --------------------------------------------------------------

    def is_running(self) -> bool:
        """True between start() and stop()."""
        return self._running

    def is_leader(self) -> bool:
        """True while this server processes jobs (always, when it has no leader lock)."""
        return self._worker is not None

    async def start(self) -> Self:
        """Start processing (once leader, with a leader lock); emits server_start."""
        if self._running:
            return self
        self._running = True
        self.error = None
        self._stopped = asyncio.Event()
        if self._stopping is not None and self._stopping.done():
            self._stopping = None  # a stop after a failure that nobody awaited
        self._unsubscribe = await self.storage.subscribe(self._on_feed, names=FEED_EVENTS)
        self._paused = await self.storage.is_paused()
        self._started_at = utcnow()
        if self.leader_lock is None:
            await self._lead()
        else:
            self._leadership = asyncio.create_task(
                self._await_leadership(), name="pyjobqueue leader"
            )
        # The first heartbeat is in place when start() returns. A storage that cannot
        # take it for good (a read-only file) stops the server through its claims, which
        # report it once; the later heartbeats report it themselves.
        await self._record_heartbeat(report_permanent=False)
        self._heartbeat = asyncio.create_task(self._heartbeats(), name="pyjobqueue heartbeat")
        self.events.emit(EventName.SERVER_START, self.queue_name)
        logger.info(
            "server %s started on queue %r: kinds %s, %d workers%s%s",
            self.server_id,
            self.queue_name,
            ", ".join(kind_of(job_class) for job_class in self.job_classes),
            self.worker_count,
            "" if self.leader_lock is None else ", runs jobs once it holds the leader lock",
            " (the queue is paused)" if self._paused else "",
        )
        return self

    async def serve(self) -> None:
        """Start, run until SIGINT or SIGTERM, then stop: the first signal stops
        gracefully (running jobs get stop_timeout_ms), a second one at once (they go back
        to the queue). Raises the permanent storage failure that stopped the server, if
        one did. Call it in the main thread, with the storage set up."""
        await serving.serve(self)

    async def _await_leadership(self) -> None:
        assert self.leader_lock is not None
        await self.leader_lock.acquire()
        # The lock is exclusive: no other server of this queue runs jobs now, so jobs
        # still marked running belong to a dead leader and are recovered at once.
        try:
            await self.recover_expired_leases(orphaned=True)
        except Exception as error:
            if not is_permanent(self.storage, error):
                raise
            self._fail(error)
            return
        await self._lead()

    async def _lead(self) -> None:
        self._worker = self._make_worker()
        await self._worker.start(subscribe=False)
        self._maintenance = asyncio.create_task(self._maintain(), name="pyjobqueue maintenance")
        if self.schedules:
            self._scheduler = asyncio.create_task(self._tick_schedules(), name="pyjobqueue ticks")

    async def stop(self, *, timeout_ms: float | None = None) -> Self:
        """Stop claiming, let running jobs finish (stop_timeout_ms), re-queue what is left.

        `timeout_ms` overrides stop_timeout_ms; `stop(timeout_ms=0)` while a stop is
        under way cuts it short (running jobs go back to the queue at once).
        """
        if timeout_ms is not None:
            require_ms("timeout_ms", timeout_ms)
            if self._worker is not None:
                self._worker.shorten_stop(timeout_ms)
        if self._stopping is None:
            if not self._running:
                return self
            self._stopping = asyncio.ensure_future(self._stop())
        stopping = self._stopping
        try:
            await asyncio.shield(stopping)
        finally:
            if stopping.done():
                self._stopping = None
        return self

    async def _stop(self) -> None:
        self._running = False
        if self._leadership is not None:
            self._leadership.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._leadership
            self._leadership = None
        for task in (self._maintenance, self._scheduler, self._heartbeat):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._maintenance = self._scheduler = self._heartbeat = None
        if self._worker is not None:
            await self._worker.stop()
            self._worker = None
        if self.leader_lock is not None:
            await self.leader_lock.release()
        try:
            await self.storage.remove_server(self.server_id)
        except Exception as error:  # its heartbeat expires by itself
            logger.debug("server %s: could not remove its heartbeat: %s", self.server_id, error)
        if self._unsubscribe is not None:
            await self._unsubscribe()
            self._unsubscribe = None
        self.events.emit(EventName.SERVER_STOP, self.queue_name)
        stats = self._stats.snapshot()
        logger.info(
            "server %s of queue %r stopped: %d jobs completed, %d failed, %d aborted, %d retried",
            self.server_id,
            self.queue_name,
            stats.completed_jobs,
            stats.failed_jobs,
            stats.aborted_jobs,
            stats.retried_jobs,
        )
        if self._stopped is not None:
            self._stopped.set()

    async def wait_stopped(self) -> None:
        """Wait until this server has stopped, by `stop()` or by a permanent storage
        failure, which it then raises (a `StorageError`: see `error`)."""
        if self._stopped is not None:
            await self._stopped.wait()
        if self.error is not None:
            raise self.error

    def _fail(self, error: BaseException) -> None:
        """A permanent storage failure: log it once and stop (emitting server_stop)."""
        if self.error is not None or not self._running:
            return
        self.error = error
        logger.error(
            "server %s of queue %r stops: %s",
            self.server_id,
            self.queue_name,
            one_line(error),
            extra={STORAGE_FAILURE_RECORD: True},
        )
        if self._worker is not None:
            self._worker.shorten_stop(0)  # its jobs cannot record an outcome anyway
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- workers ----------------------------------------------------------------

    def _make_worker(self) -> JobQueueWorker[InputT, OutputT]:
        hooks = WorkerHooks(
            origin=self.server_id,
            emit=self.emit_event,
            count_outcome=self._stats.count,
            after_outcome=self._after_outcome,
            failed=self._fail,
        )
        return JobQueueWorker(
            list(self.job_classes),
            storage=self.storage,
            limiter=self.limiter,
            poll_interval_ms=self.poll_interval_ms,
            lease_ms=self.lease_ms,
            stop_timeout_ms=self.stop_timeout_ms,
            abort_grace_ms=self.abort_grace_ms,
            concurrency=self.worker_count,
            middleware=self.middleware,
            _hooks=hooks,
        )

    def on_outcome(self, listener: OutcomeListener) -> Callable[[], None]:
        """Call `listener(job, outcome, seconds)` after each outcome this server applied
        (the job as it was claimed; seconds it ran, None for a recovered lease): for
        metrics and integrations. Returns a function that removes the listener."""
        self._outcome_listeners.append(listener)
        return lambda: self._outcome_listeners.remove(listener)

    async def _after_outcome(
        self, job: Job[Any, Any], outcome: Outcome, duration: float | None
    ) -> None:
        for listener in list(self._outcome_listeners):
            try:
                listener(job, outcome, duration)
            except Exception:
                logger.exception("outcome listener %r failed", listener)
        # A retention of 0 means: delete as soon as the job is finished.
        if self.retention.get(outcome.status) == 0 and job.id is not None:
            await self.storage.delete(job.id)

    async def scale_workers(self, count: int) -> None:
        """Run up to `count` jobs at once from now on; running jobs are never cut short."""
        self.worker_count = require_count("count", count, 1)
        if self._worker is not None:
            self._worker.set_concurrency(count)

    def get_worker_count(self) -> int:
        """How many workers run (or will run, before start)."""
        return self.worker_count

    def get_stats(self) -> JobQueueStats:
        """Counts of what this server's workers did."""
        return self._stats.snapshot()

    def get_storage(self) -> QueueStorage:
        """The storage this server works on."""
        return self.storage

    # -- maintenance: lease recovery and cleanup ----------------------------------

    async def _maintain(self) -> None:
        tick = min(self.cleanup_interval_ms, self.lease_ms / 2) / 1000
        backoff = Backoff(tick, MAINTENANCE_RETRY_MAX_SECONDS)
        next_cleanup = time.monotonic()
        while True:
            try:
                await self.recover_expired_leases()
                self._paused = await self.storage.is_paused()
                if time.monotonic() >= next_cleanup:
                    next_cleanup = time.monotonic() + self.cleanup_interval_ms / 1000
                    await self.cleanup(min_age_ms=SWEEP_MIN_AGE_MS)
            except Exception as error:
                if is_permanent(self.storage, error):
                    self._fail(error)
                    return
                delay = backoff.next_delay()
                # One line per failed round; a traceback for the first one of an
                # unknown kind, which may be a bug rather than an outage.
                unknown = not self.storage.is_transient(error)
                logger.warning(
                    "maintenance of queue %r failed (%s); trying again in %.2g s",
                    self.queue_name,
                    one_line(error),
                    delay,
                    exc_info=error if unknown and backoff.failures == 1 else None,
                )
                await asyncio.sleep(delay)
                continue
            backoff.succeeded()
            await asyncio.sleep(tick)

    # -- heartbeat ----------------------------------------------------------------

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between two heartbeats: a third of a lease, at most HEARTBEAT_SECONDS."""
        return min(HEARTBEAT_SECONDS, self.lease_ms / 3000)

    def info(self) -> ServerInfo:
        """What this server's heartbeat says of it now."""
        host, pid = this_host()
        now = utcnow()
        return ServerInfo(
            server_id=self.server_id,
            host=host,
            pid=pid,
            kinds=tuple(kind_of(job_class) for job_class in self.job_classes),
            worker_count=self.worker_count,
            started_at=self._started_at,
            last_seen=now,
            expires_at=now + timedelta(seconds=HEARTBEATS_MISSED * self.heartbeat_interval),
            paused=self._paused,
        )

    async def _record_heartbeat(self, *, report_permanent: bool = True) -> None:
        try:
            await self.storage.record_server(self.info())
        except Exception as error:
            if is_permanent(self.storage, error):
                if report_permanent:
                    self._fail(error)
                return
            # An outage: the next heartbeat tries again.
            logger.warning(
                "server %s: could not record its heartbeat (%s)", self.server_id, one_line(error)
            )

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            await self._record_heartbeat()

    # -- schedules ----------------------------------------------------------------

    async def _tick_schedules(self) -> None:
        backoff = Backoff(SCHEDULE_CHECK_SECONDS, MAINTENANCE_RETRY_MAX_SECONDS)
        while True:
            try:
                wait = await self.enqueue_due_ticks()
            except Exception as error:
                if is_permanent(self.storage, error):
                    self._fail(error)
                    return
                wait = backoff.next_delay()
                logger.warning(
                    "schedules of queue %r: could not enqueue due ticks (%s); again in %.2g s",
                    self.queue_name,
                    one_line(error),
                    wait,
                )
            else:
                backoff.succeeded()
            await asyncio.sleep(wait)

    async def enqueue_due_ticks(self) -> float:
        """Enqueue each schedule's due tick (once, whatever other servers do); seconds
        until the next check (at most SCHEDULE_CHECK_SECONDS)."""
        states = {state.name: state for state in await self.storage.schedule_states()}
        now = utcnow()
        wait = SCHEDULE_CHECK_SECONDS
        for schedule in self.schedules:
            state = states.get(schedule.name)
            due = schedule.last_tick(now)
            next_tick = schedule.next_tick(now)
            if next_tick is not None:
                wait = min(wait, (next_tick - now).total_seconds())
            step = decide_step(state, schedule.spec, due)
            if step is Step.NOTHING or next_tick is None:
                continue
            job = schedule.job(due or next_tick, self.queue_name)
            job_id = await self.storage.advance_schedule(
                schedule.name, schedule.spec, due, next_tick, job
            )
            if job_id is not None:
                logger.info(
                    "schedule %r of queue %r: job %s for the tick of %s",
                    schedule.name,
                    self.queue_name,
                    job_id,
                    due.isoformat() if due else "?",
                )
        return max(wait, 0.01)

    async def recover_expired_leases(self, *, orphaned: bool = False) -> int:
        """Re-queue (or fail) jobs whose worker stopped renewing its lease; the count.

        With `orphaned=True` (a new leader) every running job counts as expired.
        """
        now = utcnow()
        recovered = 0
        expired_before = now + timedelta(days=36500) if orphaned else now
        for job in await self.storage.expired_leases(expired_before):
            if job.id is None or job.worker_id is None:
                continue
            outcome = decide_recovery(job, now)
            event = outcome_event(self.queue_name, job.id, outcome, self.server_id)
            applied = await self.storage.finish(
                job.id,
                job.worker_id,
                job.run_attempts,
                outcome,
                lease_expired_before=expired_before,
                event=event,
            )
            if not applied:
                continue
            recovered += 1
            self._stats.count(outcome, None)
            if event is not None:
                self.emit_event(event)
            await self._after_outcome(job, outcome, None)
        return recovered

    async def cleanup(self, *, min_age_ms: float = 0) -> int:
        """Delete finished jobs older than their retention (and `min_age_ms`); the count."""
        deleted = 0
        now = utcnow()
        for status, retention_ms in self.retention.items():
            if retention_ms is not None:
                cutoff = now - timedelta(milliseconds=max(retention_ms, min_age_ms))
                # A job that finished at the cutoff is as old as its retention: it goes
                # too (clocks that tick in milliseconds give equal times often).
                deleted += await self.storage.delete_finished(status, cutoff + _TICK)
        return deleted


def _require_schedules(schedules: object) -> tuple[Schedule, ...]:
    """A list of Schedules with distinct names, as a tuple."""
    if schedules is None:
        return ()
    if isinstance(schedules, str | bytes) or not isinstance(schedules, Sequence):
        raise TypeError(f"schedules must be a list of Schedule, got {schedules!r}")
    names: set[str] = set()
    for schedule in schedules:
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedules must hold Schedule objects, got {schedule!r}")
        if schedule.name in names:
            raise ValueError(f"two schedules are named {schedule.name!r}")
        names.add(schedule.name)
    return tuple(schedules)
