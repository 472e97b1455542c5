"""The console's live feed: one subscription to the storage's change feed, fanned out to
every open page as small messages (a job as it now is, a progress step, the counts).

Pages never re-read the whole table: a job event makes the feed read that one job
(events for one job that arrive together share the read) and send it; progress goes
out as it came; the counts, the schedules and the servers are read at most every
`SUMMARY_EVERY_SECONDS`. New jobs (which announce themselves only as "work
available", or not at all across processes) are found by reading the newest page of
the queue, which `list_jobs` answers from the primary key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..client import JobQueueClient
from ..events import JOB_CHANGE_EVENTS, EventName, JobEvent
from ..job import Job, counts_by_status
from ..schedules import ScheduleState
from ..storage.base import QueueStorage, Unsubscribe

logger = logging.getLogger("pyjobqueue.console")

READ_DELAY_SECONDS = 0.05  # events arriving within this window share one read
SUMMARY_EVERY_SECONDS = 1.0  # counts, schedules, servers and the chart, at most this often
SUMMARY_AT_LEAST_EVERY_SECONDS = 5.0  # and this often while pages are open (heartbeats)
# A summary that took T seconds to read waits at least this many times T before the next,
# so that a big queue (counts are one grouped scan) never spends more than a twentieth of
# the database's time on the console.
SUMMARY_COST_FACTOR = 20
NEWEST_EVERY_SECONDS = 2.0  # look for jobs no event announced (another process's submit)
NEWEST_PAGE = 50  # how many of the newest jobs that look reads
SUBSCRIBER_BACKLOG = 2_000  # messages a slow page may fall behind before it is dropped
BUCKET_SECONDS = 10  # the chart's resolution
CHART_BUCKETS = 60  # ten minutes of history
RATE_WINDOW_BUCKETS = 30  # throughput and failure rate over the last five minutes


def job_json(job: Job[Any, Any]) -> dict[str, Any]:
    """A job as the page shows it (times as ISO 8601 text)."""
    return dict(job.as_dict())


def schedule_json(state: ScheduleState) -> dict[str, Any]:
    """A schedule as the page shows it: name, last and next tick."""
    return {
        "name": state.name,
        "last_tick": None if state.last_tick is None else state.last_tick.isoformat(),
        "next_tick": state.next_tick.isoformat(),
    }


@dataclass
class Throughput:
    """Jobs completed and failed per `BUCKET_SECONDS`, as this console saw them finish."""

    started: float = field(default_factory=time.time)
    buckets: deque[list[int]] = field(
        default_factory=lambda: deque(([0, 0, 0] for _ in range(CHART_BUCKETS)), CHART_BUCKETS)
    )
    current: int = -1  # the bucket number (time // BUCKET_SECONDS) of buckets[-1]

    def _bucket(self, now: float) -> list[int]:
        number = int(now // BUCKET_SECONDS)
        if self.current < 0:
            self.current = number
        while self.current < number:
            self.buckets.append([0, 0, 0])
            self.current += 1
        return self.buckets[-1]

    def record(self, name: str, now: float | None = None) -> None:
        """Count a finishing event (completed, failed, or a failed attempt that retries)."""
        bucket = self._bucket(time.time() if now is None else now)
        if name == EventName.JOB_COMPLETE:
            bucket[0] += 1
        elif name == EventName.JOB_ERROR:
            bucket[1] += 1
        elif name == EventName.JOB_RETRY:
            bucket[2] += 1

    def as_json(self, now: float | None = None) -> dict[str, Any]:
        """The chart: one {completed, failed, retried} per bucket, oldest first (the
        buckets before the console started are empty), and the rates over the last
        `RATE_WINDOW_BUCKETS` (or since the console started, when that is shorter)."""
        moment = time.time() if now is None else now
        self._bucket(moment)
        buckets = list(self.buckets)
        window = buckets[-RATE_WINDOW_BUCKETS:]
        completed = sum(bucket[0] for bucket in window)
        failed = sum(bucket[1] for bucket in window)
        seconds = min(RATE_WINDOW_BUCKETS * BUCKET_SECONDS, max(moment - self.started, 1.0))
        return {
            "bucket_seconds": BUCKET_SECONDS,
            "last_bucket_at": self.current * BUCKET_SECONDS,
            "buckets": [{"completed": c, "failed": f, "retried": r} for c, f, r in buckets],
            "window_seconds": round(seconds),
            "per_minute": round((completed + failed) * 60 / seconds, 1),
            "failure_rate": None if completed + failed == 0 else failed / (completed + failed),
        }


class LiveFeed:
    """Follows one queue for every open console page."""

    def __init__(self, client: JobQueueClient[Any, Any]) -> None:
        self.client = client
        self.storage: QueueStorage = client.storage
        self.throughput = Throughput()
        self._subscribers: set[asyncio.Queue[str | None]] = set()
        self._unsubscribe: Unsubscribe | None = None
        self._dirty: set[int] = set()
        self._look_for_new = False
        self._summary_due = True
        self._wake = asyncio.Event()
        self._newest_id = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Subscribe to the queue's change feed and start the readers."""
        newest = await self.storage.list_jobs(limit=1)
        self._newest_id = (newest[0].id or 0) if newest else 0
        self._unsubscribe = await self.storage.subscribe(self._on_event)
        self._tasks = [
            asyncio.ensure_future(self._read_forever()),
            asyncio.ensure_future(self._tick_forever()),
        ]

    async def stop(self) -> None:
        """Unsubscribe, stop the readers and end every page's stream."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._unsubscribe is not None:
            unsubscribe, self._unsubscribe = self._unsubscribe, None
            await unsubscribe()
        for queue in list(self._subscribers):
            self._close(queue)

    async def __aenter__(self) -> LiveFeed:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- what pages receive -----------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscription(self) -> AsyncIterator[asyncio.Queue[str | None]]:
        """A queue of server-sent-event messages for one page (None: the stream ends)."""
        queue: asyncio.Queue[str | None] = asyncio.Queue(SUBSCRIBER_BACKLOG)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def _send(self, kind: str, data: Any) -> None:
        message = f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                # A page that cannot keep up is dropped; its EventSource reconnects and
                # reads the page again, which is cheaper than queueing without end.
                self._close(queue)

    def _close(self, queue: asyncio.Queue[str | None]) -> None:
        self._subscribers.discard(queue)
        while True:
            try:
                queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                queue.get_nowait()

    # -- events from the storage ------------------------------------------------------

    def _on_event(self, event: JobEvent) -> None:
        if event.queue_name != self.storage.queue_name:
            return
        if event.name == EventName.JOB_PROGRESS:
            data = {"id": event.job_id, "progress": event.progress, "message": event.message}
            self._send("progress", data)
            return
        if event.name in (EventName.QUEUE_PAUSED, EventName.QUEUE_RESUMED):
            self._send("paused", {"paused": event.name == EventName.QUEUE_PAUSED})
            return
        if event.name == EventName.JOB_AVAILABLE:
            self._look_for_new = True
        elif event.name in JOB_CHANGE_EVENTS:
            self.throughput.record(event.name)
            self._dirty.add(event.job_id)
        else:
            return
        self._summary_due = True
        self._wake.set()

    def changed(self, job_id: int | None = None) -> None:
        """Something this console did changed a job (or, with None, the queue): show it."""
        if job_id is not None:
            self._dirty.add(job_id)
        self._look_for_new = True
        self._summary_due = True
        self._wake.set()

    def deleted(self, job_ids: list[int] | None) -> None:
        """Jobs this console deleted (None: some, by age); no event tells the pages."""
        self._send("deleted", {"ids": job_ids})
        self._summary_due = True
        self._wake.set()

    async def _read_forever(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(READ_DELAY_SECONDS)
            self._wake.clear()
            try:
                await self._read_changes()
            except Exception:
                logger.exception("the console could not read the queue's changes")

    async def _read_changes(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for job_id in sorted(dirty):
            job = await self.storage.get(job_id)
            if job is not None:
                self._send("job", job_json(job))
        if self._look_for_new:
            self._look_for_new = False
            await self._send_new_jobs()

    async def _send_new_jobs(self) -> None:
        if not self._subscribers:
            return  # nobody to tell: no read (a page reads its first page itself)
        newest = await self.storage.list_jobs(limit=NEWEST_PAGE)
        for job in reversed(newest):
            if job.id is not None and job.id > self._newest_id:
                self._send("job", job_json(job))
        if newest and newest[0].id is not None:
            self._newest_id = max(self._newest_id, newest[0].id)

    async def _tick_forever(self) -> None:
        last_newest = last_summary = 0.0
        pause = SUMMARY_EVERY_SECONDS
        while True:
            try:
                stale = time.monotonic() - last_summary >= SUMMARY_AT_LEAST_EVERY_SECONDS
                rested = time.monotonic() - last_summary >= pause
                if rested and (self._summary_due or (stale and self._subscribers)):
                    self._summary_due = False
                    last_summary = time.monotonic()
                    self._send("summary", await self.summary())
                    cost = time.monotonic() - last_summary
                    pause = max(SUMMARY_EVERY_SECONDS, SUMMARY_COST_FACTOR * cost)
                if time.monotonic() - last_newest >= NEWEST_EVERY_SECONDS:
                    last_newest = time.monotonic()
                    await self._send_new_jobs()
            except Exception:
                logger.exception("the console could not read the queue's summary")
            await asyncio.sleep(SUMMARY_EVERY_SECONDS)

    # -- reads ------------------------------------------------------------------------

    async def summary(self) -> dict[str, Any]:
        """Counts by status and by (kind, status), the kinds, whether paused, schedules,
        live servers, the chart."""
        by_kind = await self.client.counts()
        return {
            "counts": counts_by_status(by_kind),
            "by_kind": [[kind, status.value, count] for (kind, status), count in by_kind.items()],
            "kinds": sorted({kind for kind, _status in by_kind if kind is not None}),
            "paused": await self.client.is_paused(),
            "schedules": [schedule_json(state) for state in await self.client.schedules()],
            "servers": [server.as_dict() for server in await self.client.servers()],
            "chart": self.throughput.as_json(),
            "at": datetime.now().astimezone().isoformat(),
        }
