"""What a command works on: the storage behind --storage/--queue, and the job class to run."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

from ..job import Job, is_job_class, kind_of
from ..schedules import Schedule
from ..storage.base import QueueStorage, RateLimiterStorage
from ..storage.url import (
    DEFAULT_SQLITE_PATH,
    default_storage,
    open_storage,
    redact_url,
    sqlite_path,
)
from ._values import CliError

STORAGE_VARIABLE = "PYJOBQUEUE_STORAGE"
QUEUE_VARIABLE = "PYJOBQUEUE_QUEUE"
DEFAULT_QUEUE = "default"
# Opening the database (connecting, creating tables) must not hang a command forever.
OPEN_TIMEOUT_SECONDS = 20.0


@dataclasses.dataclass(frozen=True)
class Target:
    """A queue in a storage: the --storage URL (None: the embedded default) and --queue."""

    url: str | None
    queue: str

    @property
    def scheme(self) -> str:
        """The URL scheme, lower case ('sqlite' for the default)."""
        if self.url is None:
            return "sqlite"
        return self.url.split("://", 1)[0].lower() if "://" in self.url else ""

    def describe(self) -> str:
        """The storage URL for messages, password hidden."""
        if self.url is None:
            return f"sqlite:///{DEFAULT_SQLITE_PATH.removeprefix('./')}"
        return redact_url(self.url)


def target_from(storage: str | None, queue: str | None) -> Target:
    """The target of a command: options first, then the environment, then the defaults."""
    url = storage or os.environ.get(STORAGE_VARIABLE) or None
    name = queue if queue is not None else os.environ.get(QUEUE_VARIABLE, DEFAULT_QUEUE)
    if not name:
        raise CliError("the queue name must not be empty")
    return Target(url, name)


def _make_storage(target: Target) -> QueueStorage:
    try:
        if target.url is None:
            return default_storage(target.queue)
        return open_storage(target.url, target.queue)
    except (ValueError, TypeError, ImportError, NotImplementedError) as error:
        raise CliError(str(error)) from None


def _error_text(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def _close_quietly(storage: QueueStorage | RateLimiterStorage) -> None:
    with contextlib.suppress(Exception):
        await storage.close()


async def _setup(storage: QueueStorage | RateLimiterStorage, target: Target) -> None:
    try:
        async with asyncio.timeout(OPEN_TIMEOUT_SECONDS):
            await storage.setup_database()
    except TimeoutError:
        await _close_quietly(storage)
        raise CliError(
            f"storage {target.describe()} did not answer within {OPEN_TIMEOUT_SECONDS:g} s"
        ) from None
    except Exception as error:
        await _close_quietly(storage)
        raise CliError(f"cannot open storage {target.describe()}: {_error_text(error)}") from None


@contextlib.asynccontextmanager
async def opened_queue(target: Target) -> AsyncIterator[QueueStorage]:
    """The set-up storage of the target's queue, closed on exit; CliError when unusable."""
    storage = _make_storage(target)
    if not storage.shared_across_processes:
        raise CliError(
            f"storage {target.describe()} lives inside one process, so the command line cannot "
            "share it; use a file or a database: sqlite:///jobs.db or postgresql://host/db"
        )
    await _setup(storage, target)
    try:
        yield storage
    finally:
        await storage.close()


@contextlib.asynccontextmanager
async def opened_rate_limiter_storage(target: Target) -> AsyncIterator[RateLimiterStorage]:
    """Rate limit records next to the target's jobs, so every worker on it shares the limit."""
    storage = _make_rate_limiter_storage(target)
    await _setup(storage, target)
    try:
        yield storage
    finally:
        await storage.close()


def _make_rate_limiter_storage(target: Target) -> RateLimiterStorage:
    scheme = target.scheme
    try:
        if scheme == "sqlite":
            from ..storage.sqlite import SqliteRateLimiterStorage

            path = DEFAULT_SQLITE_PATH if target.url is None else sqlite_path(target.url)
            return SqliteRateLimiterStorage(path)
        if scheme in ("postgres", "postgresql"):
            from ..storage.postgres import PostgresRateLimiterStorage

            return PostgresRateLimiterStorage(target.url)
    except (ValueError, TypeError, ImportError, NotImplementedError) as error:
        raise CliError(str(error)) from None
    raise CliError(f"--rate needs a sqlite or postgresql storage, not {target.describe()}")


def _load_attribute(spec: str, what: str, example: str) -> Any:
    """The object named 'module:name' (or 'package.module:Outer.Inner'); `example` is
    how such a spec looks (app:ResizeImage)."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        shape = "module:JobClass" if what == "job" else "module:name"
        raise CliError(f"{what} {spec!r} must be written {shape}, for example {example}")
    module = _import_module(module_name)
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise CliError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return value


def load_schedules(spec: str) -> list[Schedule]:
    """The list of Schedules named 'module:name'."""
    value = _load_attribute(spec, "--schedules", "app:SCHEDULES")
    if isinstance(value, Schedule):
        return [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, Schedule) for v in value):
        raise CliError(f"{spec} is not a list of pyjobqueue.Schedule, got {_kind_of(value)}")
    return list(value)


def load_job_class(spec: str) -> type[Job[Any, Any]]:
    """The Job class named 'module:Class' (or 'package.module:Outer.Inner')."""
    value = _load_attribute(spec, "job", "app:ResizeImage")
    if value is Job or not is_job_class(value):
        raise CliError(
            f"{spec} is not a Job class: expected a subclass of pyjobqueue.Job or an async "
            f"function decorated with @job, got {_kind_of(value)}"
        )
    job_class: type[Job[Any, Any]] = value
    return job_class


def load_job_classes(specs: list[str]) -> list[type[Job[Any, Any]]]:
    """The Job classes named 'module:Class', one per kind; CliError (exit status 2) when
    two of them run the same kind, since a worker could not tell which one a job is for."""
    classes = [load_job_class(spec) for spec in specs]
    seen: dict[str, str] = {}
    for spec, job_class in zip(specs, classes, strict=True):
        kind = kind_of(job_class)
        if kind in seen:
            what = (
                f"{spec} is given twice"
                if seen[kind] == spec
                else f"{seen[kind]} and {spec} have the same kind {kind!r}"
            )
            raise CliError(
                f"{what}: a worker runs each kind with one job class "
                '(give one of them another kind: kind = "..." in a class body, '
                '@job(kind="...") on a function)',
                exit_code=2,
            )
        seen[kind] = spec
    return classes


def _kind_of(value: object) -> str:
    if value is Job:
        return "pyjobqueue.Job itself"
    if isinstance(value, type):
        return f"class {value.__name__}"
    return type(value).__name__


def _import_module(module_name: str) -> Any:
    # Like `python -m`, look in the current directory first: `pyjobqueue worker app:Job`
    # run next to app.py must find it whichever way the command was installed.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise CliError(
                f"no module named {module_name!r} (looked in {os.getcwd()} and sys.path)"
            ) from None
        raise CliError(f"importing {module_name!r} failed: {_error_text(error)}") from None
    except Exception as error:
        raise CliError(f"importing {module_name!r} failed: {_error_text(error)}") from None
