"""OpenTelemetry tracing: a span for each submit and each attempt, linked across processes.

Needs the `opentelemetry-api` package (`pip install "pyjobqueue[otel]"`), and an SDK
configured by the application for the spans to go anywhere. While OpenTelemetry is
imported, `client.submit` opens a PRODUCER span `pyjobqueue submit <queue>` and writes
its context into the job's `metadata["traceparent"]` (W3C Trace Context, through the
configured propagator). `TracingMiddleware` opens a CONSUMER span
`pyjobqueue run <kind>` around each attempt, in whatever process runs it, linked to
the submit's span and, by default, its child, so one trace shows the submit and every
attempt:

    from pyjobqueue.contrib.opentelemetry import TracingMiddleware
    server = JobQueueServer(Resize, storage=storage, middleware=[TracingMiddleware()])
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from ..job import Job, JobContext
from ..middleware import CallNext

TRACER_NAME = "pyjobqueue"
SYSTEM = "pyjobqueue"


def _tracer(provider: trace.TracerProvider | None) -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME, tracer_provider=provider)


@contextlib.contextmanager
def submit_span(
    queue_name: str, kind: str | None, metadata: dict[str, Any], count: int = 1
) -> Iterator[dict[str, Any]]:
    """A PRODUCER span around a submit; the metadata to store, with its trace context
    (the metadata given, unchanged, when no span is being recorded)."""
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.destination.name": queue_name,
        "messaging.batch.message_count": count,
    }
    if kind is not None:
        attributes["pyjobqueue.kind"] = kind
    tracer = _tracer(None)
    with tracer.start_as_current_span(
        f"pyjobqueue submit {queue_name}", kind=trace.SpanKind.PRODUCER, attributes=attributes
    ) as span:
        if not span.get_span_context().is_valid:
            yield metadata
            return
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield {**metadata, **carrier}


class TracingMiddleware:
    """Middleware: a CONSUMER span per attempt, linked to its submit's span.

    `parent=True` (the default) makes the attempt's span a child of the submit's span
    too, so they share one trace; with False the attempt starts a trace of its own and
    only the link joins them (for jobs that run long after they were submitted).
    """

    def __init__(
        self, *, tracer_provider: trace.TracerProvider | None = None, parent: bool = True
    ) -> None:
        self._tracer = _tracer(tracer_provider)
        self._parent = parent

    async def __call__(self, job: Job[Any, Any], context: JobContext, call_next: CallNext) -> Any:
        carrier = {key: value for key, value in job.metadata.items() if isinstance(value, str)}
        submitted = propagate.extract(carrier)
        submit_context = trace.get_current_span(submitted).get_span_context()
        links = [trace.Link(submit_context)] if submit_context.is_valid else []
        record = context.job
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.destination.name": record.queue_name,
            "messaging.message.id": str(record.id),
            "pyjobqueue.kind": type(job).kind or type(job).__name__,
            "pyjobqueue.attempt": record.run_attempts,
            "pyjobqueue.priority": record.priority,
        }
        parent = submitted if self._parent and submit_context.is_valid else otel_context.Context()
        with self._tracer.start_as_current_span(
            f"pyjobqueue run {attributes['pyjobqueue.kind']}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        ):
            return await call_next()
