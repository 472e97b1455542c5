"""A small event emitter, and the job events that travel between processes and tabs."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import inspect
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from ._json import JsonValue
from .errors import DependencyFailedError
from .job import JobStatus

logger = logging.getLogger(__name__)

Listener = Callable[..., Any]


class EventName(enum.StrEnum):
    """The names of the events; each compares equal to its string ("job_complete")."""

    JOB_START = "job_start"
    JOB_PROGRESS = "job_progress"
    JOB_COMPLETE = "job_complete"
    JOB_ERROR = "job_error"
    JOB_RETRY = "job_retry"
    JOB_DISABLED = "job_disabled"
    JOB_ABORTING = "job_aborting"
    SERVER_START = "server_start"
    SERVER_STOP = "server_stop"
    # Internal: a job became claimable (submitted, retried, re-queued); wakes idle workers.
    JOB_AVAILABLE = "job_available"
    # Internal: the queue was paused or resumed (job_id 0); servers take note.
    QUEUE_PAUSED = "queue_paused"
    QUEUE_RESUMED = "queue_resumed"


# SPEC section 5: what each job event carries after queue_name and job_id, in the order
# listeners receive it. Events are built (JobEvent.build) and read (JobEvent.payload and
# the accessors) through this table only.
PAYLOAD_FIELDS: Mapping[str, tuple[str, ...]] = {
    EventName.JOB_START: (),
    EventName.JOB_PROGRESS: ("progress", "message", "details"),
    EventName.JOB_COMPLETE: ("output",),
    EventName.JOB_ERROR: ("error",),
    EventName.JOB_RETRY: ("run_after",),
    EventName.JOB_DISABLED: (),
    EventName.JOB_ABORTING: (),
    EventName.JOB_AVAILABLE: (),
    EventName.QUEUE_PAUSED: (),
    EventName.QUEUE_RESUMED: (),
}

JOB_EVENTS = (
    EventName.JOB_START,
    EventName.JOB_PROGRESS,
    EventName.JOB_COMPLETE,
    EventName.JOB_ERROR,
    EventName.JOB_RETRY,
    EventName.JOB_DISABLED,
    EventName.JOB_ABORTING,
)
SERVER_EVENTS = (EventName.SERVER_START, EventName.SERVER_STOP)
# The events after which a job is finished (what wait_for waits for).
FINISHING_EVENTS = frozenset({EventName.JOB_COMPLETE, EventName.JOB_ERROR, EventName.JOB_DISABLED})
JOB_AVAILABLE = EventName.JOB_AVAILABLE
QUEUE_EVENTS = (EventName.QUEUE_PAUSED, EventName.QUEUE_RESUMED)


def payload_fields(name: str) -> tuple[str, ...]:
    """The payload fields of job event `name` (ValueError for another name)."""
    try:
        return PAYLOAD_FIELDS[name]
    except KeyError:
        raise ValueError(f"{name!r} is not a job event") from None


def event_payload(name: str, args: tuple[Any, ...]) -> dict[str, Any]:
    """The arguments of job event `name` after queue_name and job_id, by field name."""
    return dict(zip(payload_fields(name), args, strict=False))


class EventEmitter:
    """on/off/once/wait_on over named events; listeners may be functions or coroutines."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self._names = frozenset(str(name) for name in names)
        self._listeners: dict[str, list[Listener]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def _check(self, event: str) -> None:
        if event not in self._names:
            shown = str(event) if isinstance(event, str) else event  # EventName as its text
            raise ValueError(f"unknown event {shown!r}; expected one of {sorted(self._names)}")

    def on(self, event: str, listener: Listener) -> Callable[[], None]:
        """Call `listener(*args)` on every `event`; returns a function that removes it."""
        self._check(event)
        self._listeners.setdefault(event, []).append(listener)
        return lambda: self.off(event, listener)

    def off(self, event: str, listener: Listener) -> None:
        """Remove a listener added with `on` or `once` (no error if absent)."""
        listeners = self._listeners.get(event, [])
        for index, candidate in enumerate(listeners):
            if candidate is listener or getattr(candidate, "__wrapped__", None) is listener:
                del listeners[index]
                return

    def once(self, event: str, listener: Listener) -> Callable[[], None]:
        """Call `listener` on the next `event` only."""

        def wrapper(*args: Any) -> Any:
            self.off(event, wrapper)
            return listener(*args)

        wrapper.__wrapped__ = listener  # type: ignore[attr-defined]
        return self.on(event, wrapper)

    async def wait_on(self, event: str) -> tuple[Any, ...]:
        """Wait for the next `event` and return its arguments."""
        future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()

        def resolve(*args: Any) -> None:
            if not future.done():
                future.set_result(args)

        self.once(event, resolve)
        try:
            return await future
        finally:
            self.off(event, resolve)

    def has_listeners(self, event: str) -> bool:
        """True when something listens to `event`."""
        return bool(self._listeners.get(event))

    def emit(self, event: str, *args: Any) -> None:
        """Call every listener of `event`; a failing listener is logged, never raised."""
        for listener in list(self._listeners.get(event, ())):
            call_listener(listener, args, self._tasks)


class Observable:
    """on/off/once/wait_on for classes that keep their listeners in `self.events`."""

    events: EventEmitter

    def on(self, event: str, listener: Listener) -> Callable[[], None]:
        """Call `listener(*args)` on every `event`; returns a function that removes it."""
        return self.events.on(event, listener)

    def off(self, event: str, listener: Listener) -> None:
        """Stop listening."""
        self.events.off(event, listener)

    def once(self, event: str, listener: Listener) -> Callable[[], None]:
        """Listen to the next occurrence only."""
        return self.events.once(event, listener)

    async def wait_on(self, event: str) -> tuple[Any, ...]:
        """Wait for the next occurrence of `event`; its arguments."""
        return await self.events.wait_on(event)


def call_listener(listener: Listener, args: tuple[Any, ...], tasks: set[asyncio.Task[Any]]) -> None:
    """Call a function or coroutine function listener; log its failure, never raise it."""
    try:
        result = listener(*args)
    except Exception:
        logger.exception("listener %r failed", listener)
        return
    if inspect.isawaitable(result):
        task = asyncio.ensure_future(result)
        tasks.add(task)  # keep a reference until it ends
        task.add_done_callback(lambda done: _listener_task_done(done, tasks))


def _listener_task_done(task: asyncio.Task[Any], tasks: set[asyncio.Task[Any]]) -> None:
    tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("async listener failed", exc_info=task.exception())


def _missing(name: str, field: str) -> AttributeError:
    return AttributeError(f"a {name} event carries no {field}")


@dataclasses.dataclass(frozen=True)
class JobEvent:
    """One job event as it travels through a storage's change feed.

    Build one with the constructor of its event (`JobEvent.job_complete(queue, id,
    output, origin)`) and read its payload by name (`event.output`, `event.error`).
    """

    name: str
    queue_name: str
    job_id: int
    args: tuple[Any, ...] = ()  # the event's arguments after queue_name and job_id
    origin: str = ""  # id of the client/server that produced it
    error_code: str | None = None  # job_error only: lets wait_for raise the right class

    # -- building ---------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        name: str,
        queue_name: str,
        job_id: int,
        *,
        origin: str = "",
        error_code: str | None = None,
        **payload: Any,
    ) -> JobEvent:
        """An event whose payload is given by field name; exactly the fields of its event."""
        fields = payload_fields(name)
        if tuple(payload) != fields and set(payload) != set(fields):
            raise TypeError(f"a {name} event carries {fields}, got {tuple(payload)}")
        args = tuple(payload[field] for field in fields)
        return cls(EventName(name), queue_name, job_id, args, origin, error_code)

    @classmethod
    def job_start(cls, queue_name: str, job_id: int, origin: str = "") -> JobEvent:
        """A job started running."""
        # (start and complete skip `build`'s check: two per job, the fields are fixed)
        return cls(EventName.JOB_START, queue_name, job_id, (), origin)

    @classmethod
    def job_progress(
        cls,
        queue_name: str,
        job_id: int,
        progress: float,
        message: str,
        details: dict[str, Any] | None,
        origin: str = "",
    ) -> JobEvent:
        """A running job reported progress."""
        return cls.build(
            EventName.JOB_PROGRESS,
            queue_name,
            job_id,
            origin=origin,
            progress=progress,
            message=message,
            details=details,
        )

    @classmethod
    def job_complete(cls, queue_name: str, job_id: int, output: Any, origin: str = "") -> JobEvent:
        """A job completed with `output`."""
        return cls(EventName.JOB_COMPLETE, queue_name, job_id, (output,), origin)

    @classmethod
    def job_error(
        cls, queue_name: str, job_id: int, error: str, error_code: str | None, origin: str = ""
    ) -> JobEvent:
        """A job failed for good with `error` (`error_code` names the error class)."""
        return cls.build(
            EventName.JOB_ERROR,
            queue_name,
            job_id,
            origin=origin,
            error_code=error_code,
            error=error,
        )

    @classmethod
    def job_retry(
        cls, queue_name: str, job_id: int, run_after: datetime | None, origin: str = ""
    ) -> JobEvent:
        """A job went back to the queue, to run again at `run_after`."""
        return cls.build(
            EventName.JOB_RETRY, queue_name, job_id, origin=origin, run_after=run_after
        )

    @classmethod
    def job_disabled(cls, queue_name: str, job_id: int, origin: str = "") -> JobEvent:
        """A pending job was disabled."""
        return cls.build(EventName.JOB_DISABLED, queue_name, job_id, origin=origin)

    @classmethod
    def job_aborting(cls, queue_name: str, job_id: int, origin: str = "") -> JobEvent:
        """A running job was asked to abort."""
        return cls.build(EventName.JOB_ABORTING, queue_name, job_id, origin=origin)

    @classmethod
    def queue_paused(cls, queue_name: str, paused: bool, origin: str = "") -> JobEvent:
        """Internal: the queue was paused (`paused`) or resumed."""
        name = EventName.QUEUE_PAUSED if paused else EventName.QUEUE_RESUMED
        return cls.build(name, queue_name, 0, origin=origin)

    @classmethod
    def job_available(cls, queue_name: str) -> JobEvent:
        """Internal: the queue has a job to claim (wakes idle workers)."""
        return cls.build(EventName.JOB_AVAILABLE, queue_name, 0)

    # -- reading ----------------------------------------------------------------------

    def payload(self) -> dict[str, Any]:
        """The arguments after queue_name and job_id, by field name (SPEC section 5)."""
        return event_payload(self.name, self.args)

    def _field(self, field: str) -> Any:
        fields = PAYLOAD_FIELDS.get(self.name, ())
        if field not in fields:
            raise _missing(self.name, field)
        index = fields.index(field)
        return self.args[index] if index < len(self.args) else None

    @property
    def progress(self) -> float:
        """job_progress: the progress, 0 to 100."""
        progress: float = self._field("progress")
        return progress

    @property
    def message(self) -> str:
        """job_progress: the progress message."""
        message: str = self._field("message")
        return message

    @property
    def details(self) -> dict[str, Any] | None:
        """job_progress: the progress details."""
        details: dict[str, Any] | None = self._field("details")
        return details

    @property
    def output(self) -> Any:
        """job_complete: the job's output."""
        return self._field("output")

    @property
    def error(self) -> str:
        """job_error: the error message ("" when the event came without one)."""
        error = self._field("error")
        return "" if error is None else str(error)

    @property
    def run_after(self) -> datetime | None:
        """job_retry: when the job runs again."""
        run_after: datetime | None = self._field("run_after")
        return run_after

    def listener_args(self) -> tuple[Any, ...]:
        """The arguments listeners of this event receive (SPEC section 5)."""
        return (self.queue_name, self.job_id, *self.args)

    # -- JSON -------------------------------------------------------------------------

    def to_json(self) -> dict[str, JsonValue]:
        """A JSON-friendly form (datetimes as ISO strings) for SQL rows, NOTIFY, postMessage."""
        args = [
            {"$datetime": arg.isoformat()} if isinstance(arg, datetime) else arg
            for arg in self.args
        ]
        return {
            "name": str(self.name),
            "queue_name": self.queue_name,
            "job_id": self.job_id,
            "args": args,
            "origin": self.origin,
            "error_code": self.error_code,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobEvent:
        """Rebuild an event written by `to_json`."""
        args = tuple(
            datetime.fromisoformat(arg["$datetime"])
            if isinstance(arg, dict) and set(arg) == {"$datetime"}
            else arg
            for arg in data.get("args", ())
        )
        return cls(
            name=str(data["name"]),
            queue_name=str(data["queue_name"]),
            job_id=int(data["job_id"]),
            args=args,
            origin=str(data.get("origin", "")),
            error_code=data.get("error_code"),
        )


def is_dependency_failure(event: JobEvent) -> bool:
    """Whether `event` is the job_error of a job failed by the storage because a job it
    depends on did not complete (SPEC 8.7)."""
    return (
        event.name == EventName.JOB_ERROR
        and event.error_code == DependencyFailedError.__name__
        and not event.origin  # the storage's own: a worker or a client names itself
    )


# The status a job is in after each job event that changes it (job_retry: back to
# PENDING, to run again; job_progress changes no status): what views that follow
# events (the notebook widget, the browser console) apply.
STATUS_AFTER: Mapping[str, JobStatus] = {
    EventName.JOB_START: JobStatus.PROCESSING,
    EventName.JOB_COMPLETE: JobStatus.COMPLETED,
    EventName.JOB_ERROR: JobStatus.FAILED,
    EventName.JOB_RETRY: JobStatus.PENDING,
    EventName.JOB_DISABLED: JobStatus.DISABLED,
    EventName.JOB_ABORTING: JobStatus.ABORTING,
}

# The job events after which a job's stored record has changed (a view that shows jobs
# reads the job again): every one of SPEC 5 but progress, which carries its change.
JOB_CHANGE_EVENTS = frozenset(
    {
        EventName.JOB_START,
        EventName.JOB_COMPLETE,
        EventName.JOB_ERROR,
        EventName.JOB_RETRY,
        EventName.JOB_DISABLED,
        EventName.JOB_ABORTING,
    }
)
