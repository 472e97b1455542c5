"""The page side of the console: a JobQueueClient on the IndexedDB queue that feeds the view.

The page's Pyodide runs no jobs (the Web Worker's server does): this module submits,
aborts and retries jobs, pauses and resumes the queue, listens to the queue's events
from every tab over BroadcastChannel, re-reads the jobs they concern and hands them to
the JavaScript view (`pyjobqueue/console/static/view.js`, served as `shared/view.js`,
which `pyjobqueue console` shares) as JSON text, which crosses the bridge without
proxies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from console_jobs import PRIORITY, TASKS, catalogue, make_input

from pyjobqueue import Job, JobQueueClient, JobStatus
from pyjobqueue.events import JOB_CHANGE_EVENTS, EventName, JobEvent
from pyjobqueue.storage import IndexedDbQueueStorage, QueueStorage
from pyjobqueue.storage.base import Unsubscribe

logger = logging.getLogger("pyjobqueue.console")

JOBS_PER_STATUS = 500  # the view lists at most this many jobs of each status
MAX_BATCH = 500
REFRESH_DELAY_SECONDS = 0.05  # events arriving within this window share one storage read
RESYNC_EVERY_SECONDS = 10.0  # a full re-read, for changes no event announces (deletions)
# Statuses read in the order jobs move through them: a job that moves on while the list
# is read is found under its new status (the moves back, retry and recovery, announce
# themselves with an event).
LIFECYCLE_ORDER = (
    JobStatus.WAITING,
    JobStatus.PENDING,
    JobStatus.PROCESSING,
    JobStatus.ABORTING,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.DISABLED,
)


class View(Protocol):
    """What the JavaScript view offers (every argument is JSON text or a number)."""

    def mark(self) -> int:
        """A point in the view's history, taken before reading the whole list."""

    def jobs(self, jobs_json: str, since: int) -> None:
        """Replace the whole list with what storage held after `mark()` returned `since`."""

    def job(self, job_json: str) -> None:
        """Insert or update one job."""

    def progress(self, job_id: int, progress: float, message: str) -> None:
        """Move one job's progress bar."""

    def counts(self, counts_json: str) -> None:
        """Show how many jobs have each status."""

    def list_limit(self, per_status: int) -> None:
        """Say that the list holds at most `per_status` jobs of each status (the counts
        then tell when some are not listed)."""

    def schedules(self, schedules_json: str) -> None:
        """Show the queue's schedules: name, last and next tick (ISO times)."""

    def paused(self, paused: bool) -> None:
        """Show whether the queue is paused."""


def job_json(job: Job[Any, Any]) -> dict[str, Any]:
    """A job as the view shows it."""
    return dict(job.as_dict())


class Console:
    """Submits and controls jobs, and keeps the view in step with the queue."""

    def __init__(self, storage: QueueStorage, view: View) -> None:
        self.storage = storage
        self.client: JobQueueClient[dict[str, Any], dict[str, Any]] = JobQueueClient(
            storage=storage
        )
        self.view = view
        self._dirty: set[int] = set()
        self._resync = False
        self._flush: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._unsubscribe: Unsubscribe | None = None
        # Counts queue_paused / queue_resumed events, so that a read of the flag that
        # one of them overtook does not undo what it showed.
        self._pause_events = 0

    async def start(self) -> None:
        """Connect to the queue's events and show the jobs."""
        self.view.list_limit(JOBS_PER_STATUS)
        await self.storage.setup_database()
        await self.client.connect()
        for name in JOB_CHANGE_EVENTS:
            self.client.on(name, self._on_change)
        self.client.on(EventName.JOB_PROGRESS, self._on_progress)
        # New jobs from other tabs announce themselves only as "work available"; pausing
        # and resuming (in any tab) only on the storage's feed.
        self._unsubscribe = await self.storage.subscribe(self._on_feed)
        await self.sync()
        self._timer = asyncio.ensure_future(self._resync_forever())

    async def stop(self) -> None:
        """Stop following the queue (a page never does; its tests do)."""
        for task in (self._timer, self._flush):
            if task is not None:
                task.cancel()
        if self._unsubscribe is not None:
            unsubscribe, self._unsubscribe = self._unsubscribe, None
            await unsubscribe()
        await self.client.disconnect()

    # -- events -> view -----------------------------------------------------------------

    def _on_change(self, queue_name: str, job_id: int, *args: Any) -> None:
        self._schedule(job_id=job_id)

    def _on_progress(
        self, queue_name: str, job_id: int, progress: float, message: str, *_: Any
    ) -> None:
        self.view.progress(job_id, float(progress), str(message))

    def _on_feed(self, event: JobEvent) -> None:
        if event.name == EventName.JOB_AVAILABLE:
            self._schedule(resync=True)
        elif event.name in (EventName.QUEUE_PAUSED, EventName.QUEUE_RESUMED):
            self._pause_events += 1
            self.view.paused(event.name == EventName.QUEUE_PAUSED)

    def _schedule(self, *, job_id: int | None = None, resync: bool = False) -> None:
        if job_id is not None:
            self._dirty.add(job_id)
        self._resync = self._resync or resync
        if self._flush is None or self._flush.done():
            self._flush = asyncio.ensure_future(self._flush_soon())

    async def _flush_soon(self) -> None:
        # Events that arrive while this runs are handled by its next round, not lost.
        while self._dirty or self._resync:
            await asyncio.sleep(REFRESH_DELAY_SECONDS)
            dirty, self._dirty = self._dirty, set()
            resync, self._resync = self._resync, False
            try:
                await self._refresh(dirty, resync)
            except Exception:
                logger.exception("could not refresh the job list")

    async def _refresh(self, job_ids: set[int], resync: bool) -> None:
        if resync:
            await self.sync()
            return
        for job_id in sorted(job_ids):
            job = await self.storage.get(job_id)
            if job is not None:
                self.view.job(json.dumps(job_json(job)))
        await self.show_counts()

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_EVERY_SECONDS)
            try:
                await self.sync()
            except Exception:
                logger.exception("could not refresh the job list")

    async def sync(self) -> None:
        """Re-read every job of the queue and show them."""
        since = self.view.mark()
        jobs = []
        for status in LIFECYCLE_ORDER:
            jobs += await self.storage.peek(status, JOBS_PER_STATUS)
        self.view.jobs(json.dumps([job_json(job) for job in jobs]), since)
        await self.show_counts()
        await self.show_paused()

    async def show_counts(self) -> None:
        """Show how many jobs have each status, and the queue's schedules."""
        counts = {status.value: await self.storage.size(status) for status in JobStatus}
        self.view.counts(json.dumps(counts))
        schedules = [
            {
                "name": state.name,
                "last_tick": None if state.last_tick is None else state.last_tick.isoformat(),
                "next_tick": state.next_tick.isoformat(),
            }
            for state in await self.client.schedules()
        ]
        self.view.schedules(json.dumps(schedules))

    async def show_paused(self) -> None:
        """Show whether the queue is paused, as storage says (unless an event has told
        the view something newer meanwhile)."""
        events_before = self._pause_events
        paused = await self.client.is_paused()
        if self._pause_events == events_before:
            self.view.paused(paused)

    # -- actions from the page ------------------------------------------------------------

    async def submit(self, request_json: str) -> str:
        """Submit `count` jobs of one task, of its kind:
        `{"task", "params", "count", "max_retries", "priority"}`."""
        request = json.loads(request_json)
        count = _whole(request.get("count", 1), "count", 1, MAX_BATCH)
        task = make_input(request.get("task"), request.get("params", {}))
        kind = TASKS[task["task"]].kind
        default_retries = TASKS[task["task"]].max_retries
        max_retries = _whole(request.get("max_retries", default_retries), "max_retries", 0, 20)
        priority = PRIORITY.check(request.get("priority", PRIORITY.default))
        if count == 1:
            handles = [
                await self.client.submit(
                    task, kind=kind, max_retries=max_retries, priority=priority
                )
            ]
        else:
            # Distinct inputs (their fingerprints differ) and one run id to abort them by.
            batch = [{**task, "index": index} for index in range(count)]
            run_id = f"batch-{uuid.uuid4().hex[:6]}"
            handles = await self.client.submit_batch(
                batch, kind=kind, max_retries=max_retries, job_run_id=run_id, priority=priority
            )
        await self._show_new([handle.id for handle in handles])
        return json.dumps([handle.id for handle in handles])

    async def submit_mix(self) -> str:
        """Submit one job of every task with its default parameters, as one batch."""
        run_id = f"mix-{uuid.uuid4().hex[:6]}"
        ids = []
        for name, task in TASKS.items():
            handle = await self.client.submit(
                make_input(name, {}),
                kind=task.kind,
                max_retries=task.max_retries,
                job_run_id=run_id,
            )
            ids.append(handle.id)
        await self._show_new(ids)
        return json.dumps(ids)

    async def _show_new(self, job_ids: list[int]) -> None:
        for job_id in job_ids:
            job = await self.storage.get(job_id)
            if job is not None:
                self.view.job(json.dumps(job_json(job)))
        await self.show_counts()

    async def abort(self, job_id: int) -> None:
        """Abort one job (a running one stops at its next check of the signal)."""
        await self.client.abort(int(job_id))
        self._schedule(job_id=int(job_id))

    async def abort_run(self, job_run_id: str) -> None:
        """Abort every unfinished job of a batch."""
        await self.client.abort_job_run(str(job_run_id))
        self._schedule(resync=True)

    async def retry(self, job_id: int) -> None:
        """Run a failed job again."""
        await self.client.retry(int(job_id))
        self._schedule(job_id=int(job_id))

    async def set_paused(self, paused: bool) -> None:
        """Pause (True) or resume (False) the queue for every tab's server."""
        if paused:
            await self.client.pause()
        else:
            await self.client.resume()
        # The queue_paused / queue_resumed event updates every tab, this one too; this
        # read covers a click that changed nothing (the flag was already so).
        await self.show_paused()

    async def clear_finished(self) -> int:
        """Delete every completed, failed and disabled job; how many."""
        now = datetime.now(UTC)
        deleted = 0
        for status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.DISABLED):
            deleted += await self.storage.delete_finished(status, now)
        await self.sync()
        return deleted


def _whole(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}")
    return value


async def start(view: View, queue_name: str) -> Console:
    """Open the console's queue and connect it to the view."""
    console = Console(IndexedDbQueueStorage(queue_name), view)
    await console.start()
    return console


def tasks_json() -> str:
    """The task catalogue for the page's form."""
    return json.dumps(catalogue())
