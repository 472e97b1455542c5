"""Hard cancel: the page interrupts the Python of its job worker to stop an aborted job.

A job worker (`WorkerServer`) shares one `Int32Array` over a `SharedArrayBuffer` with
its page (only a cross-origin isolated page has those):

- index 0 is Pyodide's interrupt buffer (`pyodide.setInterruptBuffer`): writing SIGINT
  there makes the worker's Python call its SIGINT handler at the next bytecode check,
  however busy it is;
- indexes 1 to `TARGET_SLOTS` hold the ids of the jobs whose abort the page has asked
  for (0: a free slot).

The page adds a job when it hears `job_aborting` for it and writes SIGINT, again every
`REARM_SECONDS` while the job is listed. In the worker, `JobInterrupter.on_signal`
raises `JobInterrupt` only when the code running at that moment is the `execute` of a
listed job (its middleware, `track`, knows each running job's task); anything else
(an idle worker, another job's code, the claim loop) is left alone. The worker's
execute path turns that interrupt into the job's abort (`pyjobqueue/worker.py`). A job
leaves the list when its attempt ends in this worker, or when the page hears it finish.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from ..job import Job, JobContext
from ..middleware import CallNext
from ..worker import JobInterrupt

SIGINT = 2  # what the page writes at index 0 (Pyodide reads a signal number there)
SIGNAL_INDEX = 0
TARGET_SLOTS = 16
BUFFER_LENGTH = 1 + TARGET_SLOTS
# A job id must fit an Int32Array slot; a larger one is stopped the cooperative way.
MAX_TARGET_ID = 2**31 - 1
# While a listed job runs, the page writes SIGINT again this often: an interrupt that
# came while the job's code was not the one running (a race with a claim) is not lost.
REARM_SECONDS = 0.025


class SharedTargets:
    """The shared `Int32Array`: the signal slot and the list of jobs to stop."""

    def __init__(self, array: Any) -> None:
        self.array = array  # a JsProxy of the Int32Array
        self._atomics: Any = None

    @property
    def atomics(self) -> Any:
        """JavaScript's `Atomics` (every access to the shared slots goes through it)."""
        if self._atomics is None:
            from ._ffi import js_global

            self._atomics = js_global().Atomics
        return self._atomics

    def ids(self) -> list[int]:
        """The jobs listed now."""
        load = self.atomics.load
        slots = (int(load(self.array, index)) for index in range(1, BUFFER_LENGTH))
        return [job_id for job_id in slots if job_id]

    def add(self, job_id: int) -> bool:
        """List a job (once); False when it cannot be listed (id too large, list full)."""
        if not 0 < job_id <= MAX_TARGET_ID:
            return False
        if job_id in self.ids():
            return True
        exchange = self.atomics.compareExchange
        return any(
            int(exchange(self.array, index, 0, job_id)) == 0 for index in range(1, BUFFER_LENGTH)
        )

    def remove(self, job_id: int) -> None:
        """Take a job off the list (from either side)."""
        if 0 < job_id <= MAX_TARGET_ID:
            exchange = self.atomics.compareExchange
            for index in range(1, BUFFER_LENGTH):
                exchange(self.array, index, job_id, 0)

    def interrupt(self) -> None:
        """Make the worker's Python look at the list now (the page's side)."""
        self.atomics.store(self.array, SIGNAL_INDEX, SIGINT)


class JobInterrupter:
    """The worker's side: a middleware that knows each running job's task, and the
    SIGINT handler that interrupts a listed job while its code runs."""

    def __init__(self, targets: Callable[[], Iterable[int]], forget: Callable[[int], None]) -> None:
        self._targets = targets
        self._forget = forget
        self._tasks: dict[int, asyncio.Task[Any]] = {}  # job id -> its execute task

    def install(self) -> None:
        """Handle SIGINT with `on_signal` (Pyodide's interrupt buffer raises SIGINT)."""
        signal.signal(signal.SIGINT, self.on_signal)

    async def track(self, job: Job[Any, Any], context: JobContext, call_next: CallNext) -> Any:
        """Middleware (the outermost): record the attempt's task while `execute` runs."""
        task = asyncio.current_task()
        if job.id is None or task is None:
            return await call_next()
        self._tasks[job.id] = task
        try:
            return await call_next()
        finally:
            del self._tasks[job.id]
            self._forget(job.id)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Raise `JobInterrupt` if the code running now is a listed job's `execute`."""
        job_id = self.interrupted_job()
        if job_id is not None:
            raise JobInterrupt(job_id)

    def interrupted_job(self) -> int | None:
        """The listed job whose task is running right now, if any."""
        try:
            current = asyncio.current_task()
        except RuntimeError:  # no event loop running: plain code, not a job
            return None
        if current is None:
            return None
        for job_id in self._targets():
            if self._tasks.get(job_id) is current:
                return job_id
        return None
