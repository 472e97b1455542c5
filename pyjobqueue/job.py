"""Jobs: the record of one unit of work, its status, and the context it runs in."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeGuard, TypeVar, overload

from ._json import JsonValue
from .limits import check_name

InputT = TypeVar("InputT")
OutputT = TypeVar("OutputT")

logger = logging.getLogger(__name__)


@functools.cache
def _field_names() -> tuple[str, ...]:
    """The names of `Job`'s fields (asked for on every copy of a record: once is enough)."""
    return tuple(field.name for field in dataclasses.fields(Job))


def utcnow() -> datetime:
    """The current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


class JobStatus(enum.StrEnum):
    """Where a job is in its life; see docs/job-lifecycle.md."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    ABORTING = "ABORTING"
    DISABLED = "DISABLED"
    # Waits for the jobs it depends on (SPEC 8.7); never claimed until they complete.
    WAITING = "WAITING"


def counts_by_status(counts: dict[tuple[str | None, JobStatus], int]) -> dict[str, int]:
    """Jobs of each status (every status, 0 when none), from counts by (kind, status) as
    `client.counts()` gives them."""
    totals = {status.value: 0 for status in JobStatus}
    for (_kind, status), count in counts.items():
        totals[status.value] += count
    return totals


FINISHED_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.DISABLED})
ACTIVE_STATUSES = frozenset({JobStatus.PROCESSING, JobStatus.ABORTING})


class AbortSignal:
    """Tells a running job to stop: poll `aborted`, `await wait()`, or add a listener."""

    def __init__(self) -> None:
        self.aborted = False
        self.reason: str | None = None
        self._event = asyncio.Event()
        self._listeners: list[Callable[[str], object]] = []

    def add_listener(self, listener: Callable[[str], object]) -> Callable[[], None]:
        """Call `listener(reason)` when the signal fires (at once if it already has)."""
        if self.aborted:
            listener(self.reason or "")
            return lambda: None
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def wait(self) -> str:
        """Wait until the signal fires; return its reason."""
        await self._event.wait()
        return self.reason or ""

    def abort(self, reason: str) -> bool:
        """Fire the signal once; return False if it had already fired."""
        if self.aborted:
            return False
        self.aborted = True
        self.reason = reason
        self._event.set()
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            try:
                listener(reason)
            except Exception:
                logger.exception("abort listener failed")
        return True


ProgressCallback = Callable[[float, str, "dict[str, JsonValue] | None"], Awaitable[None]]
# Reads the outputs of completed jobs by id (those that are gone are left out).
OutputsReader = Callable[[list[int]], Awaitable[dict[int, Any]]]


async def _no_outputs(job_ids: list[int]) -> dict[int, Any]:
    return {}


class JobContext:
    """What `Job.execute` gets besides its input: the abort signal and progress reporting."""

    def __init__(
        self,
        job: Job[Any, Any],
        signal: AbortSignal,
        on_progress: ProgressCallback,
        read_outputs: OutputsReader = _no_outputs,
    ):
        self.job = job
        self.signal = signal
        self._on_progress = on_progress
        self._read_outputs = read_outputs

    async def dependency_outputs(self) -> dict[int, Any]:
        """The outputs of the jobs this one depends on (`submit(depends_on=...)`), by id;
        a dependency deleted meanwhile (`client.delete`) is left out."""
        return await self._read_outputs(list(self.job.depends_on))

    async def update_progress(
        self, progress: float, message: str = "", details: dict[str, JsonValue] | None = None
    ) -> None:
        """Record progress (clamped to 0..100) and tell every listener."""
        clamped = min(100.0, max(0.0, float(progress)))
        await self._on_progress(clamped, message, details)


@dataclasses.dataclass(kw_only=True, eq=False)
class Job(Generic[InputT, OutputT]):
    """One unit of work and its state; subclass it and implement `execute`."""

    input: InputT
    id: int | None = None
    queue_name: str = ""
    output: OutputT | None = None
    status: JobStatus = JobStatus.PENDING
    progress: float = 0.0
    progress_message: str = ""
    progress_details: dict[str, JsonValue] | None = None
    max_retries: int = 10
    run_attempts: int = 0
    error: str | None = None
    error_code: str | None = None
    created_at: datetime = dataclasses.field(default_factory=utcnow)
    completed_at: datetime | None = None
    run_after: datetime = dataclasses.field(default_factory=utcnow)
    deadline_at: datetime | None = None
    last_ran_at: datetime | None = None
    job_run_id: str | None = None
    fingerprint: str | None = None
    worker_id: str | None = None
    lease_expires_at: datetime | None = None
    # SPEC section 8. On the class, `kind` names the job class (see __init_subclass__)
    # and `timeout_ms` is its default timeout; on a record, they are the job's own.
    kind: str | None = None
    priority: int = 0
    unique_key: str | None = None
    metadata: dict[str, JsonValue] = dataclasses.field(default_factory=dict)
    timeout_ms: float | None = None
    error_traceback: str | None = None
    # SPEC 8.7: the ids of the jobs this one waits for, and how many of them have not
    # completed yet (while it is WAITING; the storage keeps the count).
    depends_on: list[int] = dataclasses.field(default_factory=list)
    dependencies_left: int = 0
    # Why a stored value of this job (its input, output or progress details) could not
    # be read back; that value is None. Such a job fails when it is claimed.
    unreadable: str | None = None

    # Retry policy of the class, for a RetryableJobError without retry_date, an error
    # of a class in `retry_on`, and a timeout (SPEC 8.5; see outcome.RetryPolicy).
    retry_delay_ms: ClassVar[float] = 0
    retry_backoff: ClassVar[float] = 2.0
    max_retry_delay_ms: ClassVar[float] = 3_600_000
    retry_jitter: ClassVar[float] = 0.1
    retry_on: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give each job class its own kind: its name, unless its body sets `kind`."""
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            check_name(f"{cls.__qualname__}.kind", cls.__dict__["kind"])
        else:
            cls.kind = cls.__name__
        timeout = cls.__dict__.get("timeout_ms")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise ValueError(f"{cls.__qualname__}.timeout_ms must be a number greater than 0")

    async def execute(self, input: InputT, context: JobContext) -> OutputT:
        """Do the work; raise RetryableJobError / PermanentJobError to steer the outcome."""
        raise NotImplementedError(f"{type(self).__name__} does not implement execute()")

    def record(self) -> Job[InputT, OutputT]:
        """A plain `Job` carrying this job's fields (what storages keep and return)."""
        return Job.from_record(self)

    def fields(self) -> dict[str, Any]:
        """The stored fields of this job as a dict."""
        values = self.__dict__  # every field is there: __init__ sets each one
        try:
            return {name: values[name] for name in _field_names()}
        except KeyError:  # one deleted from the instance: the class's value shows through
            return {name: getattr(self, name) for name in _field_names()}

    def as_dict(self) -> dict[str, JsonValue]:
        """The job as JSON-friendly values (datetimes as ISO 8601 strings)."""
        result: dict[str, JsonValue] = {}
        for name, value in self.fields().items():
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, JobStatus):
                value = value.value
            result[name] = value
        return result

    @classmethod
    def from_record(cls, record: Job[Any, Any]) -> Job[InputT, OutputT]:
        """An instance of this job class carrying the fields of a stored record."""
        if cls.__init__ is not Job.__init__ or hasattr(cls, "__post_init__"):
            return cls(**record.fields())
        # What Job's own __init__ would do with every field given, without its keyword
        # handling (a worker makes one instance per attempt).
        instance = object.__new__(cls)
        # A storage's record is a plain Job holding exactly its fields: copied as it is.
        instance.__dict__.update(record.__dict__ if type(record) is Job else record.fields())
        return instance


def is_job_class(value: object) -> TypeGuard[type[Job[Any, Any]]]:
    """True when `value` is a subclass of Job (the class itself included)."""
    return isinstance(value, type) and issubclass(value, Job)


def kind_of(job_class: type[Job[Any, Any]]) -> str:
    """The kind a job class runs (SPEC 8.1)."""
    return job_class.kind or job_class.__name__


JobFunction = Callable[[InputT, JobContext], Awaitable[OutputT]]


@overload
def job(function: JobFunction[InputT, OutputT], /) -> type[Job[InputT, OutputT]]: ...


@overload
def job(
    *, kind: str | None = None, timeout_ms: float | None = None
) -> Callable[[JobFunction[InputT, OutputT]], type[Job[InputT, OutputT]]]: ...


def job(
    function: JobFunction[InputT, OutputT] | None = None,
    /,
    *,
    kind: str | None = None,
    timeout_ms: float | None = None,
) -> Any:
    """Turn `async def f(input, context)` into a Job subclass named like the function.

    `@job` or `@job(kind="resize", timeout_ms=5000)`: the kind is the function's name
    unless given.
    """
    if kind is not None:
        check_name("kind", kind)

    def make(function: JobFunction[InputT, OutputT]) -> type[Job[InputT, OutputT]]:
        if not inspect.iscoroutinefunction(function):
            raise TypeError(f"@job needs an async function, got {function!r}")
        body = {"kind": kind or function.__name__}
        if timeout_ms is not None:
            body["timeout_ms"] = timeout_ms  # type: ignore[assignment]

        async def execute(
            self: Job[InputT, OutputT], input: InputT, context: JobContext
        ) -> OutputT:
            return await function(input, context)

        function_job: type[Job[InputT, OutputT]] = type(
            function.__name__, (Job,), {**body, "execute": execute}
        )
        functools.update_wrapper(function_job, function, updated=())
        function_job.__qualname__ = getattr(function, "__qualname__", function.__name__)
        return function_job

    if function is not None:
        return make(function)
    return make
