"""JobQueueClient and JobHandle: submit jobs, query them, wait for them, abort them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from . import limits
from ._json import fingerprint, validate_json
from ._options import require_count, require_ms, require_storage
from ._retry import Backoff, one_line
from ._tracing import submit_span
from .errors import (
    AbortSignalJobError,
    JobDisabledError,
    JobNotFoundError,
    StoredValueError,
    error_from_code,
)
from .events import (
    FINISHING_EVENTS,
    JOB_EVENTS,
    EventEmitter,
    EventName,
    JobEvent,
    Observable,
    call_listener,
)
from .job import FINISHED_STATUSES, InputT, Job, JobStatus, OutputT, is_job_class, kind_of, utcnow
from .outcome import AbortReason
from .presence import ServerInfo
from .schedules import ScheduleState
from .storage.base import QueueStorage, Unsubscribe

if TYPE_CHECKING:
    from .server import JobQueueServer

KindInputT = TypeVar("KindInputT")
KindOutputT = TypeVar("KindOutputT")
# A job's kind as `submit`, `peek` and `size` take it: a job class or its kind's name.
KindArgument = type[Job[Any, Any]] | str | None
ProgressListener = Callable[[float, str, "dict[str, Any] | None"], Any]
# What `depends_on` takes: handles or ids of jobs of the same queue.
Dependencies = Iterable["JobHandle[Any] | int"] | None
# While events flow (attached or connected) wait_for still re-reads the job this
# many poll intervals apart, as a safety net for a server it is not attached to.
EVENT_BACKED_POLL_FACTOR = 20
# wait_for retries a read that failed transiently after poll_interval_ms, doubling up to this.
WAIT_RETRY_MAX_SECONDS = 1.0

logger = logging.getLogger(__name__)


def _check_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds or None, got {timeout!r}")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout must be 0 or greater (seconds), got {timeout!r}")
    return float(timeout)


class JobHandle(Generic[OutputT]):
    """A submitted job: wait for its output, abort it, follow its progress."""

    def __init__(self, client: JobQueueClient[Any, Any], job_id: int, created: bool = True) -> None:
        self.client = client
        self.id = job_id
        # False when `submit` found an unfinished job with the same unique key and
        # stored nothing: this handle is then on that job.
        self.created = created

    async def wait_for(self, *, timeout: float | None = None) -> OutputT:
        """Wait until the job finishes; its output, or its error raised (see
        JobQueueClient.wait_for; TimeoutError after `timeout` seconds)."""
        output: OutputT = await self.client.wait_for(self.id, timeout=timeout)
        return output

    async def abort(self) -> None:
        """Abort the job (see JobQueueClient.abort)."""
        await self.client.abort(self.id)

    def on_progress(self, listener: ProgressListener) -> Callable[[], None]:
        """Call `listener(progress, message, details)` on each progress update."""
        return self.client.on_job_progress(self.id, listener)

    def __repr__(self) -> str:
        created = "" if self.created else ", created=False"
        return f"JobHandle(id={self.id!r}, queue={self.client.queue_name!r}{created})"


def kind_name(kind: object) -> str | None:
    """The kind named by a job class or a str (None stays None); TypeError/ValueError
    for anything else."""
    if kind is None:
        return None
    if is_job_class(kind):
        assert isinstance(kind, type)
        return kind_of(kind)
    if not isinstance(kind, str):
        raise TypeError(f"kind must be a job class or a str, got {kind!r}")
    return limits.check_name("kind", kind)


def _check_unique_key(name: str, key: object) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str):
        raise TypeError(f"{name} must be a str, got {type(key).__name__}")
    if not key:
        raise ValueError(f"{name} must not be empty")
    return limits.check_text(name, key, max_length=limits.MAX_NAME_LENGTH)


def _check_metadata(metadata: object) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a JSON object (a dict), got {type(metadata).__name__}")
    validate_json(metadata, "metadata")
    return metadata


def _check_when(name: str, value: object) -> datetime | None:
    if value is None:
        return None
    return limits.check_date(name, limits.check_aware(name, value))


def _result_of(job: Job[Any, Any]) -> Any:
    if job.status is JobStatus.COMPLETED:
        if job.unreadable is not None and job.output is None:
            raise StoredValueError(f"job {job.id} completed, but its {job.unreadable}")
        return job.output
    if job.status is JobStatus.DISABLED:
        raise JobDisabledError(f"job {job.id} was disabled")
    raise error_from_code(job.error_code, job.error or "")


class JobQueueClient(Observable, Generic[InputT, OutputT]):
    """Submits jobs to a queue and follows them, in this process or from another one."""

    def __init__(
        self,
        *,
        storage: QueueStorage,
        queue_name: str | None = None,
        poll_interval_ms: float = 100,
    ) -> None:
        self.queue_name = require_storage(storage, queue_name)
        self.storage = storage
        self.poll_interval = require_ms("poll_interval_ms", poll_interval_ms, positive=True) / 1000
        self.client_id = f"client-{uuid.uuid4().hex[:16]}"
        self.events = EventEmitter(JOB_EVENTS)
        self._server: JobQueueServer[Any, Any] | None = None
        self._unsubscribe: Unsubscribe | None = None
        self._connecting = asyncio.Lock()
        self._waiters: dict[int, list[asyncio.Future[JobEvent]]] = {}
        self._progress: dict[int, list[ProgressListener]] = {}
        self._listener_tasks: set[asyncio.Task[Any]] = set()
        # Called with the ids of the jobs each submit stored (the notebook widget).
        self.submit_taps: list[Callable[[list[int]], None]] = []

    def widget(self, *, limit: int = 50) -> Any:
        """A live view of the queue's newest jobs for Jupyter (the `notebook` extra)."""
        from .notebook import job_widget

        return job_widget(self, limit=limit)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """`display(client)` in a notebook shows `client.widget()`."""
        from .notebook import mimebundle

        return mimebundle(self, **kwargs)

    # -- attach / connect -------------------------------------------------------------

    def attach(self, server: JobQueueServer[Any, Any]) -> None:
        """Receive events straight from a server in this process."""
        if server.queue_name != self.queue_name:
            raise ValueError("the server works on another queue than this client")
        self.detach()
        self._server = server
        server.taps.append(self._dispatch)

    def detach(self) -> None:
        """Stop receiving events from the attached server."""
        if self._server is not None:
            with contextlib.suppress(ValueError):
                self._server.taps.remove(self._dispatch)
            self._server = None

    async def connect(self) -> None:
        """Receive every event of the queue through the storage (other processes / tabs)."""
        async with self._connecting:  # connect() twice at once subscribes once
            if self._unsubscribe is None:
                self._unsubscribe = await self.storage.subscribe(self._on_feed)

    async def disconnect(self) -> None:
        """Stop receiving events through the storage."""
        if self._unsubscribe is not None:
            unsubscribe, self._unsubscribe = self._unsubscribe, None
            await unsubscribe()

    def _on_feed(self, event: JobEvent) -> None:
        if event.name in JOB_EVENTS and event.queue_name == self.queue_name:
            self._dispatch(event)

    def _dispatch(self, event: JobEvent) -> None:
        self.events.emit(event.name, *event.listener_args())
        if event.name == EventName.JOB_PROGRESS:
            progress = (event.progress, event.message, event.details)
            for listener in list(self._progress.get(event.job_id, ())):
                call_listener(listener, progress, self._listener_tasks)
        if event.name in FINISHING_EVENTS:
            for future in self._waiters.get(event.job_id, ()):
                if not future.done():
                    future.set_result(event)

    async def _announce(self, event: JobEvent) -> None:
        """Tell everyone about something this client did (abort, disable)."""
        await self.storage.publish(event)
        if self._unsubscribe is not None:
            return  # the storage feed brings it back to this client
        if self._server is not None:
            self._server.relay_client_event(event)
        else:
            self._dispatch(event)

    # -- submitting -------------------------------------------------------------------

    def _new_job(
        self, input: Any, path: str, options: _Options, unique_key: str | None
    ) -> Job[Any, Any]:
        validate_json(input, path)
        now = utcnow()
        return Job(
            input=input,
            queue_name=self.queue_name,
            max_retries=options.max_retries,
            job_run_id=options.job_run_id,
            run_after=options.run_after or now,
            deadline_at=options.deadline_at,
            created_at=now,
            fingerprint=fingerprint(input),
            kind=options.kind,
            priority=options.priority,
            unique_key=unique_key,
            metadata=options.metadata,
            timeout_ms=options.timeout_ms,
            depends_on=list(options.depends_on),
        )

    @overload
    async def submit(
        self,
        input: KindInputT,
        *,
        kind: type[Job[KindInputT, KindOutputT]],
        max_retries: int = 10,
        job_run_id: str | None = None,
        run_after: datetime | None = None,
        deadline_at: datetime | None = None,
        priority: int = 0,
        unique_key: str | None = None,
        metadata: dict[str, Any] | None = None,
        timeout_ms: float | None = None,
        depends_on: Dependencies = None,
        connection: object | None = None,
    ) -> JobHandle[KindOutputT]: ...

    @overload
    async def submit(
        self,
        input: InputT,
        *,
        kind: str | None = None,
        max_retries: int = 10,
        job_run_id: str | None = None,
        run_after: datetime | None = None,
        deadline_at: datetime | None = None,
        priority: int = 0,
        unique_key: str | None = None,
        metadata: dict[str, Any] | None = None,
        timeout_ms: float | None = None,
        depends_on: Dependencies = None,
        connection: object | None = None,
    ) -> JobHandle[OutputT]: ...

    async def submit(
        self,
        input: Any,
        *,
        kind: KindArgument = None,
        max_retries: int = 10,
        job_run_id: str | None = None,
        run_after: datetime | None = None,
        deadline_at: datetime | None = None,
        priority: int = 0,
        unique_key: str | None = None,
        metadata: dict[str, Any] | None = None,
        timeout_ms: float | None = None,
        depends_on: Dependencies = None,
        connection: object | None = None,
    ) -> JobHandle[Any]:
        """Store a new job; raises TypeError/ValueError (nothing stored) for a bad input.

        `kind` (a job class or its kind) picks the job class that runs it; `priority`
        (higher first), `unique_key` (while a job with that key is unfinished, nothing is
        stored and the handle is on that job: `handle.created` is False), `metadata` (a
        JSON object kept with the job) and `timeout_ms` (of each attempt): SPEC 8.
        `depends_on` (handles or ids of jobs of this queue) makes it wait, WAITING,
        until they all completed, and fail with DependencyFailedError if one fails
        (SPEC 8.7; JobNotFoundError, nothing stored, for an id the queue does not have).
        `connection` (an asyncpg connection on PostgreSQL, an aiosqlite one on SQLite)
        writes the job inside your own transaction on it: it exists iff that commits.
        """
        options = _Options.check(
            kind,
            max_retries,
            job_run_id,
            run_after,
            deadline_at,
            priority,
            metadata,
            timeout_ms,
            depends_on,
        )
        key = _check_unique_key("unique_key", unique_key)
        (handle,) = await self._store([(input, "input", key)], options, connection)
        return handle

    async def submit_batch(
        self,
        inputs: Sequence[Any],
        *,
        kind: KindArgument = None,
        max_retries: int = 10,
        job_run_id: str | None = None,
        run_after: datetime | None = None,
        deadline_at: datetime | None = None,
        priority: int = 0,
        unique_keys: Sequence[str | None] | None = None,
        metadata: dict[str, Any] | None = None,
        timeout_ms: float | None = None,
        depends_on: Dependencies = None,
        connection: object | None = None,
    ) -> list[JobHandle[Any]]:
        """Store several jobs in one round trip; all or none (a bad input stores nothing).

        `unique_keys` gives one key (or None) per input; inputs whose key is taken, by an
        unfinished job or an earlier input of the batch, get a handle on that job.
        `depends_on` applies to every job of the batch (see `submit`).
        """
        if isinstance(inputs, str | bytes) or not isinstance(inputs, Sequence):
            raise TypeError(f"inputs must be a list of inputs, got {type(inputs).__name__}")
        options = _Options.check(
            kind,
            max_retries,
            job_run_id,
            run_after,
            deadline_at,
            priority,
            metadata,
            timeout_ms,
            depends_on,
        )
        keys: list[str | None] = [None] * len(inputs)
        if unique_keys is not None:
            if isinstance(unique_keys, str | bytes) or not isinstance(unique_keys, Sequence):
                raise TypeError("unique_keys must be a list with one key (or None) per input")
            if len(unique_keys) != len(inputs):
                raise ValueError(
                    f"unique_keys has {len(unique_keys)} keys for {len(inputs)} inputs"
                )
            keys = [
                _check_unique_key(f"unique_keys[{index}]", key)
                for index, key in enumerate(unique_keys)
            ]
        items = [(item, f"inputs[{index}]", keys[index]) for index, item in enumerate(inputs)]
        return await self._store(items, options, connection)

    async def _store(
        self,
        items: list[tuple[Any, str, str | None]],
        options: _Options,
        connection: object | None,
    ) -> list[JobHandle[Any]]:
        """The jobs of a submit, in one storage call: each (input, its name in errors,
        its unique key), with the submit's checked options."""
        with submit_span(self.queue_name, options.kind, options.metadata, len(items)) as metadata:
            options = dataclasses.replace(options, metadata=metadata)
            jobs = [self._new_job(item, path, options, key) for item, path, key in items]
            added = await self.storage.add_jobs(jobs, connection)
        self._tell_submitted([job_id for job_id, _ in added])
        return [JobHandle(self, job_id, created) for job_id, created in added]

    def _tell_submitted(self, job_ids: list[int]) -> None:
        for tap in list(self.submit_taps):
            try:
                tap(job_ids)
            except Exception:  # the jobs are stored: a failing tap must not say otherwise
                logger.exception("submit tap %r failed", tap)

    # -- queries ----------------------------------------------------------------------

    async def get_job(self, job_id: int) -> Job[InputT, OutputT] | None:
        """The job, or None when no job has this id."""
        return await self.storage.get(job_id)

    async def get_jobs_by_run_id(self, job_run_id: str) -> list[Job[InputT, OutputT]]:
        """Every job submitted with this job_run_id."""
        return await self.storage.get_by_run_id(job_run_id)

    async def peek(
        self, status: JobStatus = JobStatus.PENDING, num: int = 100, *, kind: KindArgument = None
    ) -> list[Job[InputT, OutputT]]:
        """Up to `num` jobs with `status` (and `kind`: a job class or a str), next to
        run first."""
        count = require_count("num", num, 0)
        return await self.storage.peek(JobStatus(status), count, kind_name(kind))

    async def size(
        self, status: JobStatus | None = JobStatus.PENDING, *, kind: KindArgument = None
    ) -> int:
        """How many jobs have `status` (all jobs with None) and `kind`."""
        return await self.storage.size(
            None if status is None else JobStatus(status), kind_name(kind)
        )

    async def counts(self) -> dict[tuple[str | None, JobStatus], int]:
        """How many jobs there are of each (kind, status) present."""
        return await self.storage.counts()

    async def servers(self) -> list[ServerInfo]:
        """The servers of the queue that are alive (their heartbeat has not expired), in
        any process, machine or tab: host, pid, kinds, workers, since when, last seen."""
        return await self.storage.servers(utcnow())

    async def schedules(self) -> list[ScheduleState]:
        """The schedules of the queue that servers run (or ran): name, last_tick (None
        before the first) and next_tick."""
        return await self.storage.schedule_states()

    # -- pause and resume -------------------------------------------------------------

    async def pause(self) -> bool:
        """Stop every server of the queue, in every process and tab, from claiming jobs;
        running jobs go on and `submit` still stores jobs. Kept in the storage. Whether
        it changed anything (False: the queue was paused already)."""
        return await self.storage.set_paused(True)

    async def resume(self) -> bool:
        """Let the servers of the queue claim jobs again; whether it changed anything."""
        return await self.storage.set_paused(False)

    async def is_paused(self) -> bool:
        """Whether the queue is paused."""
        return await self.storage.is_paused()

    async def output_for_input(self, input: InputT) -> OutputT | None:
        """The output of a completed job that had exactly this input, or None."""
        validate_json(input, "input")
        job = await self.storage.find_completed_by_fingerprint(fingerprint(input))
        return None if job is None else job.output

    # -- waiting ----------------------------------------------------------------------

    async def wait_for(self, job_id: int, *, timeout: float | None = None) -> OutputT:
        """Wait until the job finishes: its output, or its error as the library class.

        Rides through transient storage failures (a database restart, a dropped
        connection), retrying with backoff; raises a permanent one (a `StorageError`).
        `TimeoutError` when the job has not finished within `timeout` seconds.
        """
        seconds = _check_timeout(timeout)
        future: asyncio.Future[JobEvent] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, []).append(future)
        deadline = asyncio.timeout(seconds)
        try:
            # Registered before the first read: a completion landing in between is seen.
            async with deadline:
                output: OutputT = await self._wait_registered(job_id, future)
            return output
        except TimeoutError:
            if not deadline.expired():
                raise
            raise TimeoutError(f"job {job_id} did not finish within {seconds:g} s") from None
        finally:
            waiters = self._waiters.get(job_id, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._waiters.pop(job_id, None)

    async def _wait_registered(self, job_id: int, future: asyncio.Future[JobEvent]) -> Any:
        events_flow = self._server is not None or self._unsubscribe is not None
        interval = self.poll_interval * (EVENT_BACKED_POLL_FACTOR if events_flow else 1)
        backoff = Backoff(self.poll_interval, WAIT_RETRY_MAX_SECONDS)
        while True:
            if future.done():
                return self._result_of_event(future.result())
            try:
                job = await self.storage.get(job_id)
            except Exception as error:
                if not self.storage.is_transient(error):
                    raise
                delay = backoff.next_delay()
                logger.debug(
                    "wait_for(%s): reading the job failed (%s); trying again in %.2g s",
                    job_id,
                    one_line(error),
                    delay,
                )
                await self._wait_event(future, delay)  # an event may still bring the end
                continue
            backoff.succeeded()
            if future.done():
                return self._result_of_event(future.result())
            if job is None:
                raise JobNotFoundError(f"no job {job_id} in queue {self.queue_name!r}")
            if job.status in FINISHED_STATUSES:
                return _result_of(job)
            await self._wait_event(future, interval)

    @staticmethod
    async def _wait_event(future: asyncio.Future[JobEvent], seconds: float) -> None:
        """Wait up to `seconds` for the job's finishing event."""
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
        # of this task that arrives just as the future completes.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await asyncio.shield(future)

    @staticmethod
    def _result_of_event(event: JobEvent) -> Any:
        if event.name == EventName.JOB_COMPLETE:
            return event.output
        if event.name == EventName.JOB_DISABLED:
            raise JobDisabledError(f"job {event.job_id} was disabled")
        raise error_from_code(event.error_code, event.error)

    # -- control ----------------------------------------------------------------------

    async def abort(self, job_id: int) -> None:
        """PENDING: fail at once; PROCESSING: signal the job; finished: nothing."""
        status = await self.storage.abort(job_id, utcnow())
        if status is None:
            if await self.storage.get(job_id) is None:
                raise JobNotFoundError(f"no job {job_id} in queue {self.queue_name!r}")
            return
        await self._announce(self._abort_event(job_id, status))

    def _abort_event(self, job_id: int, status: JobStatus) -> JobEvent:
        if status is JobStatus.ABORTING:
            return JobEvent.job_aborting(self.queue_name, job_id, self.client_id)
        return JobEvent.job_error(
            self.queue_name,
            job_id,
            AbortReason.USER.value,
            AbortSignalJobError.__name__,
            self.client_id,
        )

    async def abort_job_run(self, job_run_id: str) -> None:
        """Abort every unfinished job of a job run."""
        for job_id, status in await self.storage.abort_job_run(job_run_id, utcnow()):
            await self._announce(self._abort_event(job_id, status))

    async def disable(self, job_id: int) -> bool:
        """PENDING -> DISABLED (it will not run); False when the job was not PENDING."""
        if not await self.storage.disable(job_id, utcnow()):
            if await self.storage.get(job_id) is None:
                raise JobNotFoundError(f"no job {job_id} in queue {self.queue_name!r}")
            return False
        await self._announce(JobEvent.job_disabled(self.queue_name, job_id, self.client_id))
        return True

    async def retry(self, job_id: int) -> bool:
        """Run a FAILED or DISABLED job again, as new; False when it is in another status."""
        if not await self.storage.retry(job_id, utcnow()):
            if await self.storage.get(job_id) is None:
                raise JobNotFoundError(f"no job {job_id} in queue {self.queue_name!r}")
            return False
        return True

    # -- listeners --------------------------------------------------------------------

    def on_job_progress(self, job_id: int, listener: ProgressListener) -> Callable[[], None]:
        """Call `listener(progress, message, details)` on progress of one job."""
        self._progress.setdefault(job_id, []).append(listener)

        def remove() -> None:
            listeners = self._progress.get(job_id, [])
            if listener in listeners:
                listeners.remove(listener)
            if not listeners:
                self._progress.pop(job_id, None)

        return remove


@dataclasses.dataclass(frozen=True, slots=True)
class _Options:
    """The checked options of a submit, shared by every job it stores."""

    kind: str | None
    max_retries: int
    job_run_id: str | None
    run_after: datetime | None
    deadline_at: datetime | None
    priority: int
    metadata: dict[str, Any]
    timeout_ms: float | None
    depends_on: tuple[int, ...] = ()

    @classmethod
    def check(
        cls,
        kind: object,
        max_retries: int,
        job_run_id: str | None,
        run_after: object,
        deadline_at: object,
        priority: object,
        metadata: object,
        timeout_ms: object,
        depends_on: object = None,
    ) -> _Options:
        require_count("max_retries", max_retries, 0)
        if max_retries > limits.MAX_RETRIES:
            raise ValueError(
                f"max_retries must be at most {limits.MAX_RETRIES}, got {max_retries!r}"
            )
        if job_run_id is not None:
            if not isinstance(job_run_id, str):
                raise TypeError(f"job_run_id must be a str, got {type(job_run_id).__name__}")
            limits.check_text("job_run_id", job_run_id, max_length=limits.MAX_NAME_LENGTH)
        timeout = None
        if timeout_ms is not None:
            timeout = require_ms("timeout_ms", timeout_ms, positive=True)
            if not math.isfinite(timeout):
                raise ValueError(f"timeout_ms must be finite, got {timeout_ms!r}")
        return cls(
            kind=kind_name(kind),
            max_retries=max_retries,
            job_run_id=job_run_id,
            run_after=_check_when("run_after", run_after),
            deadline_at=_check_when("deadline_at", deadline_at),
            priority=limits.check_priority(priority),
            metadata=_check_metadata(metadata),
            timeout_ms=timeout,
            depends_on=_check_dependencies(depends_on),
        )


def _check_dependencies(depends_on: object) -> tuple[int, ...]:
    """The job ids of `submit(depends_on=...)`: handles or ids, each once, in order."""
    if depends_on is None:
        return ()
    if isinstance(depends_on, str | bytes | JobHandle | int) or not isinstance(
        depends_on, Iterable
    ):
        raise TypeError(
            f"depends_on must be a list of job handles or ids, got {type(depends_on).__name__}"
        )
    ids: dict[int, None] = {}
    for index, item in enumerate(depends_on):
        job_id = item.id if isinstance(item, JobHandle) else item
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            raise TypeError(
                f"depends_on[{index}] must be a job handle or an id, got {type(item).__name__}"
            )
        if job_id <= 0:
            raise ValueError(f"depends_on[{index}] must be a job id (1 or more), got {job_id}")
        ids[job_id] = None
    if len(ids) > limits.MAX_DEPENDENCIES:
        raise ValueError(
            f"depends_on names {len(ids)} jobs; at most {limits.MAX_DEPENDENCIES} are allowed"
        )
    return tuple(ids)
