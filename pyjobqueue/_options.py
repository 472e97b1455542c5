"""Validation of constructor options: clear errors at construction, never later."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .job import Job, is_job_class, kind_of
from .limiters import Limiter, NullLimiter
from .storage.base import QueueStorage


def require_job_class(job_class: object) -> None:
    """TypeError unless `job_class` is a Job subclass."""
    if not is_job_class(job_class):
        raise TypeError(
            f"job_class must be a subclass of Job (or made with @job), got {job_class!r}"
        )


def require_job_classes(job_classes: object) -> tuple[type[Job[Any, Any]], ...]:
    """One job class or a non-empty list of them with distinct kinds, as a tuple."""
    if is_job_class(job_classes):
        assert isinstance(job_classes, type)
        return (job_classes,)
    if isinstance(job_classes, str | bytes) or not isinstance(job_classes, Sequence):
        raise TypeError(
            "job_class must be a subclass of Job (or made with @job), or a list of them, "
            f"got {job_classes!r}"
        )
    if not job_classes:
        raise ValueError("the list of job classes is empty: give at least one")
    by_kind: dict[str, type[Job[Any, Any]]] = {}
    for job_class in job_classes:
        require_job_class(job_class)
        kind = kind_of(job_class)
        if kind in by_kind:
            raise ValueError(
                f"{by_kind[kind].__qualname__} and {job_class.__qualname__} have the same "
                f"kind {kind!r}; give one of them another kind"
            )
        by_kind[kind] = job_class
    return tuple(by_kind.values())


def require_storage(storage: object, queue_name: object) -> str:
    """TypeError unless `storage` is a QueueStorage; the queue name both agree on."""
    if not isinstance(storage, QueueStorage):
        raise TypeError(f"storage must be a QueueStorage, got {storage!r}")
    if queue_name is None:
        return storage.queue_name
    if not isinstance(queue_name, str):
        raise TypeError(f"queue_name must be a str, got {type(queue_name).__name__}")
    if queue_name != storage.queue_name:
        raise ValueError(
            f"queue_name {queue_name!r} differs from the storage's queue {storage.queue_name!r}"
        )
    return queue_name


def require_limiter(limiter: object) -> Limiter:
    """TypeError unless `limiter` is a Limiter; NullLimiter when None."""
    if limiter is None:
        return NullLimiter()
    if not isinstance(limiter, Limiter):
        raise TypeError(f"limiter must be a Limiter, got {limiter!r}")
    return limiter


def optional_ms(name: str, value: Any) -> float | None:
    """A duration in milliseconds, or None."""
    return None if value is None else require_ms(name, value)


def require_ms(name: str, value: Any, *, positive: bool = False) -> float:
    """A duration in milliseconds: a non-negative number (positive when asked)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of milliseconds, got {type(value).__name__}")
    if value < 0 or (positive and value == 0):
        bound = "greater than 0" if positive else "0 or more"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return float(value)


def require_count(name: str, value: Any, minimum: int) -> int:
    """An int of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}")
    return value
