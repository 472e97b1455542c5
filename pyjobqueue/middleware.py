"""Middleware: code wrapped around every attempt's `execute` (SPEC section 9).

A middleware is an async callable `async def m(job, context, call_next) -> output`:
`job` is the running job (the instance of its class, carrying the record's fields),
`context` its `JobContext`, and `await call_next()` runs the next middleware, or
`execute` itself, and returns its output. What a middleware returns is the attempt's
output; what it raises is the attempt's error. The first middleware of the list is
the outermost. Tracing (`pyjobqueue.contrib.opentelemetry`) and metrics
(`pyjobqueue.contrib.prometheus`) are middleware too.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .job import Job, JobContext

CallNext = Callable[[], Awaitable[Any]]
Middleware = Callable[[Job[Any, Any], JobContext, CallNext], Awaitable[Any]]


def require_middleware(middleware: object) -> tuple[Middleware, ...]:
    """A list of middleware as a tuple; TypeError for anything else."""
    if middleware is None:
        return ()
    if isinstance(middleware, str | bytes) or not isinstance(middleware, Sequence):
        raise TypeError(f"middleware must be a list of async callables, got {middleware!r}")
    for index, item in enumerate(middleware):
        if not callable(item):
            raise TypeError(f"middleware[{index}] is not callable: {item!r}")
    return tuple(middleware)


def chain(
    middleware: Sequence[Middleware], job: Job[Any, Any], context: JobContext, execute: CallNext
) -> CallNext:
    """`execute` wrapped in `middleware`, the first one outermost."""
    call = execute
    for layer in reversed(middleware):
        call = functools.partial(layer, job, context, call)
    return call
