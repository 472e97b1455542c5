"""The page side of the console: a JobQueueClient on the IndexedDB queue that feeds the view.

The page's Pyodide runs no jobs (the Web Worker's server does): this module submits,
aborts and retries jobs, pauses and resumes the queue, and follows the queue's events
from every tab over BroadcastChannel. It keeps what it knows of the queue in memory (a
`QueueModel`: every job's status and kind, the counts, the figures) and applies each
event to it and to the jobs the view shows, reading storage only for what an event does
not carry: a job it has never seen, the traceback of a failed attempt, the jobs that a
"work available" hint announces. The JavaScript view (`pyjobqueue/console/static/view.js`,
served as `shared/view.js`, which `pyjobqueue console` shares) reads its pages through
`page()` and is told the rest as JSON text, which crosses the bridge without proxies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

from console_jobs import PRIORITY, TASKS, catalogue, make_input
from console_model import QueueModel, patch_shown

from pyjobqueue import Job, JobQueueClient, JobStatus
from pyjobqueue._listing import PAGE_SIZE, PageQuery, read_page
from pyjobqueue.events import JOB_CHANGE_EVENTS, QUEUE_EVENTS, EventName, JobEvent
from pyjobqueue.schedules import SCHEDULE_METADATA_KEY
from pyjobqueue.storage import IndexedDbQueueStorage, QueueStorage
from pyjobqueue.storage.base import Unsubscribe

logger = logging.getLogger("pyjobqueue.console")

MAX_BATCH = 500
READ_CHUNK = 1_000  # a full read, and the search for new jobs, read this many at a time
FIRST_LOOK = 4  # the search for new jobs reads this many of the newest first
PUSH_DELAY_SECONDS = 0.05  # events arriving within this window share one push (and read)
CHECK_EVERY_SECONDS = 10.0  # compare the counts with storage's, for changes no event told


class View(Protocol):
    """What the JavaScript view offers (every argument is JSON text or a number)."""

    def job(self, job_json: str) -> None:
        """Show one job as it now is (on the page it belongs to)."""

    def added(self) -> None:
        """Say that jobs were added (the first page is read again)."""

    def shown_ids(self) -> str:
        """The ids of the jobs the view has rows for (JSON)."""

    def reload(self) -> None:
        """Read the page shown again (jobs were deleted)."""

    def progress(self, job_id: int, progress: float, message: str) -> None:
        """Move one job's progress bar."""

    def counts(self, rows_json: str) -> None:
        """Show how many jobs there are of each (kind, status): [[kind, status, n]...]."""

    def stats(self, stats_json: str) -> None:
        """Show retried attempts and the average run time."""

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
        self.model = QueueModel()
        # The jobs of the page the view last read, and those handed to it since, as it
        # shows them: events change them.
        self.shown: dict[int, dict[str, Any]] = {}
        self._handed: set[int] = set()  # handed to the view since its last page read
        self._to_read: set[int] = set()  # jobs whose event did not carry what they need
        self._reading: dict[int, bool] = {}  # jobs being read: did an event come meanwhile?
        self._unknown: set[int] = set()  # jobs not known yet when an event of theirs came
        self._look_for_new = False
        self._check_waiting = False
        self._rebuild = False
        self._counts_due = False
        self._wake = asyncio.Event()  # something is due: the next round of _follow does it
        # Set while nothing is due and no read runs: every event received so far is in
        # the model and the view (`settled()`).
        self._settled = asyncio.Event()
        self._reads = 0  # reads of the queue running (a round of _follow, or a sync)
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: Unsubscribe | None = None
        # Counts queue_paused / queue_resumed events, so that a read of the flag that
        # one of them overtook does not undo what it showed.
        self._pause_events = 0
        self._events = 0  # every event of the queue received
        self._differed = False  # the last check found the counts differ

    async def start(self) -> None:
        """Connect to the queue's events, read what it holds and show it."""
        await self.storage.setup_database()
        await self.client.connect()
        # Job events, progress, "work available" hints and pausing, from every tab.
        self._unsubscribe = await self.storage.subscribe(self._on_event)
        await self.sync()
        self._tasks = [
            asyncio.ensure_future(self._follow()),
            asyncio.ensure_future(self._check_forever()),
        ]

    async def stop(self) -> None:
        """Stop following the queue (a page never does; its tests do)."""
        for task in self._tasks:
            task.cancel()
        if self._unsubscribe is not None:
            unsubscribe, self._unsubscribe = self._unsubscribe, None
            await unsubscribe()
        await self.client.disconnect()

    # -- events -> model and view ---------------------------------------------------------

    def _on_event(self, event: JobEvent) -> None:
        if event.queue_name != self.storage.queue_name:
            return
        self._events += 1
        if event.name == EventName.JOB_PROGRESS:
            self._on_progress(event)
        elif event.name in QUEUE_EVENTS:
            self._pause_events += 1
            self.view.paused(event.name == EventName.QUEUE_PAUSED)
        elif event.name == EventName.JOB_AVAILABLE:
            self._look_for_new = True
            self._due()
        elif event.name in JOB_CHANGE_EVENTS:
            self._on_change(event)

    def _on_progress(self, event: JobEvent) -> None:
        shown = self.shown.get(event.job_id)
        if shown is not None:
            shown.update(progress=float(event.progress), progress_message=str(event.message))
        self.view.progress(event.job_id, float(event.progress), str(event.message))

    def _on_change(self, event: JobEvent) -> None:
        job_id = event.job_id
        if job_id in self._reading:
            self._reading[job_id] = True
        if not self.model.apply(event.name, job_id, time.time()):
            # A job this page has not seen: found by the search for new jobs, or read.
            self._unknown.add(job_id)
            if job_id > self.model.newest_id:
                self._look_for_new = True
            else:
                self._to_read.add(job_id)
        if event.name == EventName.JOB_COMPLETE and self.model.waiting():
            # A completion may release waiting jobs, which no event announces.
            self._check_waiting = True
        shown = self.shown.get(job_id)
        if shown is not None:
            if patch_shown(shown, event, datetime.now(UTC)):
                self.view.job(json.dumps(shown))
            else:
                self._to_read.add(job_id)
        self._counts_due = True
        self._due()

    def _due(self) -> None:
        """Something is to be done (read, applied or shown): the next round does it."""
        self._settled.clear()
        self._wake.set()

    @contextlib.contextmanager
    def _reading_queue(self) -> Iterator[None]:
        """Around a read of the queue: the console is not settled until it is over."""
        self._settled.clear()
        self._reads += 1
        try:
            yield
        finally:
            self._reads -= 1
            if not self._reads and not self._wake.is_set():
                self._settled.set()

    async def settled(self) -> None:
        """Return once every event received so far is applied and no read runs: the
        model and the view are as current as the events have made them. Returns without
        yielding when that is so already, so that a caller can look at once."""
        while not self._settled.is_set():
            await self._settled.wait()

    async def _follow(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(PUSH_DELAY_SECONDS)
            self._wake.clear()
            with self._reading_queue():
                try:
                    await self._catch_up()
                except Exception:
                    logger.exception("could not follow the queue")

    async def _catch_up(self) -> None:
        """Do what the events since the last round need: one read each, at most."""
        # Events of unknown jobs that came before this round's reads: the reads see
        # their changes. Those that come while it reads are looked at after it.
        self._unknown = set()
        if self._rebuild:
            self._rebuild = False
            await self.sync()
        if self._look_for_new:
            self._look_for_new = False
            await self._read_new_jobs()
        if self._check_waiting:
            self._check_waiting = False
            await self._find_released()
        if self._to_read:
            job_ids, self._to_read = self._to_read, set()
            await self._read_jobs(sorted(job_ids))
        # Events of jobs unknown when they came, during this round's reads: a read may
        # or may not show what they did, so a job one of them learned is read again
        # (applying them to what the read saw would count a retry twice). Those of jobs
        # still unknown have their read (or search) set for the next round already.
        again = {job_id for job_id in self._unknown if job_id in self.model.jobs}
        self._unknown = set()
        if again:
            self._to_read |= again
            self._due()
        if self._counts_due:
            self._counts_due = False
            self.show_counts()

    async def _read_new_jobs(self) -> None:
        """Read the jobs above the newest known id, newest first, until a known one."""
        newest = self.model.newest_id
        found: list[Job[Any, Any]] = []
        before: int | None = None
        limit = FIRST_LOOK
        while True:
            page = await self.storage.list_jobs(before_id=before, limit=limit)
            fresh = [job for job in page if job.id is not None and job.id > newest]
            found += fresh
            if len(fresh) < len(page) or len(page) < limit:
                break
            before, limit = fresh[-1].id, min(limit * 4, READ_CHUNK)
        for job in found:
            self.model.learn(job)
        if not found:
            return
        self._counts_due = True
        if len(found) > PAGE_SIZE:
            self.view.added()  # more than a page: the view reads its first page again
        else:
            self._hand_over(reversed(found))
        if any(SCHEDULE_METADATA_KEY in job.metadata for job in found):
            await self.show_schedules()  # a schedule ticked: its next tick moved

    def _hand_over(self, jobs: Iterable[Job[Any, Any]]) -> None:
        """Give the view new jobs (it shows those that belong on its page), and forget
        those it did not keep."""
        for job in jobs:
            if job.id is not None:
                self.shown[job.id] = job_json(job)
                self._handed.add(job.id)
                self.view.job(json.dumps(self.shown[job.id]))
        kept = set(json.loads(self.view.shown_ids()))
        for job_id in self._handed - kept:
            self._handed.discard(job_id)
            self.shown.pop(job_id, None)

    async def _find_released(self) -> None:
        """Jobs that stopped waiting for others (released by a completion) are read."""
        if await self.storage.size(JobStatus.WAITING) == self.model.waiting():
            return
        still: set[int] = set()
        before: int | None = None
        while True:
            page = await self.storage.list_jobs(JobStatus.WAITING, None, before, READ_CHUNK)
            still.update(job.id for job in page if job.id is not None)
            if len(page) < READ_CHUNK:
                break
            before = page[-1].id
        self._to_read.update(self.model.with_status(JobStatus.WAITING) - still)

    async def _read_jobs(self, job_ids: list[int]) -> None:
        """Read jobs again; one an event changed meanwhile is read once more."""
        for job_id in job_ids:
            self._reading[job_id] = False
            try:
                job = await self.storage.get(job_id)
            finally:
                overtaken = self._reading.pop(job_id)
            if overtaken:
                self._to_read.add(job_id)
                self._due()
                continue
            if job is None:
                self.model.forget([job_id])
                continue
            self.model.learn(job)
            if job_id in self.shown:
                self.shown[job_id] = job_json(job)
                self.view.job(json.dumps(self.shown[job_id]))
        self._counts_due = True

    async def _check_forever(self) -> None:
        """The safety net: storage's counts against the model's, every few seconds."""
        while True:
            await asyncio.sleep(CHECK_EVERY_SECONDS)
            try:
                await self._check_once()
            except Exception:
                logger.exception("could not check the counts")

    async def _check_once(self) -> None:
        """Compare storage's counts with the model's. Two differences in a row (not a
        read that passed an event on its way) mean a change no event announced (a retry
        or a deletion in another tab, a re-queued job): read the whole queue again. Only
        a settled console compares, with no event during the read: one still catching up
        (a big batch being stored and found) differs for a reason it knows."""
        if not self._settled.is_set():
            return
        events = self._events
        stored = {pair: n for pair, n in (await self.storage.counts()).items() if n}
        if not self._settled.is_set() or self._events != events:
            return
        differs = stored != dict(self.model.counts)
        if differs and self._differed:
            self._rebuild = True
            self._due()
        self._differed = differs and not self._differed

    async def sync(self) -> None:
        """Read every job of the queue again, and show what the view shows again."""
        with self._reading_queue():
            await self._sync()

    async def _sync(self) -> None:
        self.model.begin_rebuild()
        jobs: list[Job[Any, Any]] = []
        before: int | None = None
        while True:
            page = await self.storage.list_jobs(before_id=before, limit=READ_CHUNK)
            jobs += page
            if len(page) < READ_CHUNK:
                break
            before = page[-1].id
        self.model.end_rebuild(jobs)
        del jobs
        self.show_counts()
        self.view.reload()
        await self.show_schedules()
        await self.show_paused()

    def show_counts(self) -> None:
        """Show the counts and the figures, as the model has them (no read)."""
        self.view.counts(json.dumps(self.model.count_rows()))
        self.view.stats(json.dumps(self.model.stats()))

    async def show_schedules(self) -> None:
        """Show the queue's schedules."""
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

    # -- what the view reads --------------------------------------------------------------

    async def page(self, query_json: str) -> str:
        """A page of the list, one job or one run's jobs, as view.js asks for them:
        `{"status", "kind", "before", "limit"}`, `{"run", "before", "limit"}` or `{"id"}`;
        JSON `{"jobs", "next", "total"}`. Events then change the jobs of this page."""
        query = json.loads(query_json)
        before = query.get("before")
        wanted = PageQuery(
            job_id=int(query["id"]) if query.get("id") else None,
            run_id=str(query["run"]) if query.get("run") else None,
            status=JobStatus(query["status"]) if query.get("status") else None,
            kind=query.get("kind") or None,
            before_id=None if before is None else int(before),
            limit=int(query.get("limit") or PAGE_SIZE),
        )
        page = await read_page(self.storage, wanted)
        self.shown = {job.id: job_json(job) for job in page.jobs if job.id is not None}
        self._handed = set()
        jobs = list(self.shown.values())
        return json.dumps({"jobs": jobs, "next": page.next_before_id, "total": page.total})

    async def job(self, job_id: int) -> str:
        """One job as stored (JSON; null when there is none): for its detail."""
        job = await self.storage.get(int(job_id))
        return json.dumps(None if job is None else job_json(job))

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
        self._found_new()
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
        self._found_new()
        return json.dumps(ids)

    def _found_new(self) -> None:
        """This page added jobs: find them (as a "work available" hint would)."""
        self._look_for_new = True
        self._due()

    async def abort(self, job_id: int) -> None:
        """Abort one job (a running one stops at its next check of the signal)."""
        await self.client.abort(int(job_id))

    async def abort_run(self, job_run_id: str) -> None:
        """Abort every unfinished job of a batch."""
        await self.client.abort_job_run(str(job_run_id))

    async def retry(self, job_id: int) -> None:
        """Run a failed job again."""
        await self.client.retry(int(job_id))
        # No event says so (a "work available" hint only): read it.
        self._to_read.add(int(job_id))
        self._due()

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
