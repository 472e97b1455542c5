"""A small event emitter, and the job events that travel between processes and tabs."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ._json import JsonValue

logger = logging.getLogger("pyjobqueue")

Listener = Callable[..., Any]

JOB_EVENTS = (
    "job_start",
    "job_progress",
    "job_complete",
    "job_error",
    "job_retry",
    "job_disabled",
    "job_aborting",
)
SERVER_EVENTS = ("server_start", "server_stop")
# Internal: a job became claimable (submitted, retried, re-queued); wakes idle workers.
JOB_AVAILABLE = "job_available"


class EventEmitter:
    """on/off/once/wait_on over named events; listeners may be functions or coroutines."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self._names = frozenset(names)
        self._listeners: dict[str, list[Listener]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def _check(self, event: str) -> None:
        if event not in self._names:
            raise ValueError(f"unknown event {event!r}; expected one of {sorted(self._names)}")

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


@dataclasses.dataclass(frozen=True)
class JobEvent:
    """One job event as it travels through a storage's change feed."""

    name: str
    queue_name: str
    job_id: int
    args: tuple[Any, ...] = ()  # the event's arguments after queue_name and job_id
    origin: str = ""  # id of the client/server that produced it
    error_code: str | None = None  # job_error only: lets wait_for raise the right class

    def listener_args(self) -> tuple[Any, ...]:
        """The arguments listeners of this event receive (SPEC section 5)."""
        return (self.queue_name, self.job_id, *self.args)

    def to_json(self) -> dict[str, JsonValue]:
        """A JSON-friendly form (datetimes as ISO strings) for SQL rows, NOTIFY, postMessage."""
        args = [
            {"$datetime": arg.isoformat()} if isinstance(arg, datetime) else arg
            for arg in self.args
        ]
        return {
            "name": self.name,
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
