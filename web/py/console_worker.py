"""The Web Worker side of the console: the JobQueueServer that runs the jobs.

Every tab starts this server, which runs every kind of the console's jobs, in its own
module worker, so CPU-bound jobs never block a page. They all share one IndexedDB
queue, and a Web Locks leader lock lets one of them process it at a time: when the
leader's tab closes, the browser hands the lock to another tab, whose server re-queues
the jobs the closed tab left running and goes on.
The worker reports to its page with `postMessage` (JSON text).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import js  # the worker's globalThis
from console_jobs import JOB_CLASSES, WORKER_COUNT, hash_schedule

from pyjobqueue import JobQueueServer
from pyjobqueue.browser import WebLocksLeaderLock
from pyjobqueue.leader import LeaderLock
from pyjobqueue.storage import IndexedDbQueueStorage
from pyjobqueue.worker import FAILED_ATTEMPT_RECORD


class AttemptTracebackOnItsCard(logging.Filter):
    """Drops the traceback from the worker's WARNING about a failed or retried attempt.

    The console shows that traceback on the job's card (it is stored in the job's
    `error_traceback`); in the browser's console, where Python's stderr goes, the
    attempt stays one line, and tracebacks mean a problem of the console itself.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record; strip the traceback of the per-attempt one."""
        # The worker marks its record of a failed attempt with the job's id.
        if getattr(record, FAILED_ATTEMPT_RECORD, None) is not None:
            record.exc_info = None
            record.exc_text = None
        return True


def post(message: dict[str, Any]) -> None:
    """Send a message to this worker's page."""
    js.postMessage(json.dumps(message, default=str))


class ReportingLeaderLock:
    """A leader lock that tells the page when this tab gains or loses the lead."""

    def __init__(self, lock: LeaderLock, report: Callable[[bool], None]) -> None:
        self.name = lock.name
        self._lock = lock
        self._report = report

    async def acquire(self) -> None:
        """Wait for the lock, then report the lead."""
        await self._lock.acquire()
        self._report(True)

    async def release(self) -> None:
        """Give the lock up, then report it."""
        await self._lock.release()
        self._report(False)


class ConsoleServer:
    """The server of one tab, and what it tells its page."""

    def __init__(self, queue_name: str, schedule_seconds: int | None = None) -> None:
        storage = IndexedDbQueueStorage(queue_name)
        lock_name = "pyjobqueue-console " + json.dumps(queue_name)
        lock = ReportingLeaderLock(WebLocksLeaderLock(lock_name), self._report_lead)
        # Every task's kind, and ConsoleJob first for the jobs stored without a kind.
        self.server: JobQueueServer[Any, Any] = JobQueueServer(
            JOB_CLASSES,
            storage=storage,
            worker_count=WORKER_COUNT,
            leader_lock=lock,
            poll_interval_ms=250,
            schedules=None if schedule_seconds is None else [hash_schedule(schedule_seconds)],
        )

    async def start(self) -> None:
        """Open the queue and start the server (it runs jobs once it leads)."""
        await self.server.get_storage().setup_database()
        await self.server.start()
        post({"type": "started", "workers": WORKER_COUNT})

    def _report_lead(self, leading: bool) -> None:
        post({"type": "leader", "leader": leading})


async def start(queue_name: str, schedule: str | None = None) -> ConsoleServer:
    """Start this tab's server on the queue (`schedule`: the seconds of the demo schedule,
    from the page's `?schedule=` parameter)."""
    logging.getLogger("pyjobqueue.worker").addFilter(AttemptTracebackOnItsCard())
    console = ConsoleServer(queue_name, None if not schedule else int(schedule))
    await console.start()
    return console
