"""Prometheus metrics of a server: jobs by kind and outcome, attempt durations, how long
jobs waited to start, and the queue's depth by kind and status.

Needs `prometheus-client` (`pip install "pyjobqueue[prometheus]"`):

    metrics = PrometheusMetrics()
    metrics.instrument(server)          # before server.start()
    prometheus_client.start_http_server(9100)

`pyjobqueue worker --metrics-port 9100` does both. The names:

- `pyjobqueue_jobs_total` (counter; queue, kind, outcome): attempts ended, by the
  outcome applied (completed, failed, aborted, retried, requeued, snoozed);
- `pyjobqueue_attempt_duration_seconds` (histogram; queue, kind);
- `pyjobqueue_start_delay_seconds` (histogram; queue, kind): from when a job could
  first run (its submit, or its run_after) to the start of its first attempt;
- `pyjobqueue_queue_jobs` (gauge; queue, kind, status): read from the storage every
  `depth_interval` seconds. Jobs without a kind have the kind label "".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from ..events import EventName
from ..job import Job, JobContext, utcnow
from ..middleware import CallNext
from ..outcome import Outcome, OutcomeKind
from ..server import JobQueueServer

logger = logging.getLogger(__name__)

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
NO_KIND = ""  # the kind label of jobs submitted without one


def outcome_label(outcome: Outcome) -> str:
    """The `outcome` label of an applied outcome."""
    if outcome.kind is OutcomeKind.COMPLETE:
        return "completed"
    if outcome.kind is OutcomeKind.FAIL:
        return "aborted" if outcome.aborted else "failed"
    if outcome.kind is OutcomeKind.RETRY:
        return "retried"
    return "snoozed" if outcome.snoozed else "requeued"


class PrometheusMetrics:
    """The metrics of the servers it instruments, in one registry."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, depth_interval: float = 15.0
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        self.depth_interval = depth_interval
        self.jobs = Counter(
            "pyjobqueue_jobs",
            "Attempts ended, by the outcome applied",
            ["queue", "kind", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "pyjobqueue_attempt_duration_seconds",
            "How long attempts ran",
            ["queue", "kind"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.start_delay = Histogram(
            "pyjobqueue_start_delay_seconds",
            "From when a job could first run to the start of its first attempt",
            ["queue", "kind"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.depth = Gauge(
            "pyjobqueue_queue_jobs",
            "Jobs in the queue by kind and status",
            ["queue", "kind", "status"],
            registry=self.registry,
        )
        self._watchers: dict[int, asyncio.Task[None]] = {}

    def instrument(self, server: JobQueueServer[Any, Any]) -> None:
        """Measure `server` (call it before the server starts)."""
        server.middleware = (*server.middleware, self.middleware)
        server.on_outcome(self._count)
        server.on(EventName.SERVER_START, lambda *_: self._watch(server))
        server.on(EventName.SERVER_STOP, lambda *_: self._unwatch(server))

    async def middleware(self, job: Job[Any, Any], context: JobContext, call_next: CallNext) -> Any:
        """Records how long the first attempt waited to start."""
        record = context.job
        if record.run_attempts == 1:
            ready = max(record.created_at, record.run_after)
            labels = (record.queue_name, record.kind or NO_KIND)
            self.start_delay.labels(*labels).observe(max(0.0, (utcnow() - ready).total_seconds()))
        return await call_next()

    def _count(self, job: Job[Any, Any], outcome: Outcome, duration: float | None) -> None:
        kind = job.kind or NO_KIND
        self.jobs.labels(job.queue_name, kind, outcome_label(outcome)).inc()
        if duration is not None:
            self.duration.labels(job.queue_name, kind).observe(duration)

    def _watch(self, server: JobQueueServer[Any, Any]) -> None:
        self._unwatch(server)
        self._watchers[id(server)] = asyncio.ensure_future(self._read_depth(server))

    def _unwatch(self, server: JobQueueServer[Any, Any]) -> None:
        task = self._watchers.pop(id(server), None)
        if task is not None:
            task.cancel()

    async def refresh_depth(self, server: JobQueueServer[Any, Any]) -> None:
        """Read the queue's depth by kind and status from the storage now."""
        counts = await server.get_storage().counts()
        seen = set()
        for (kind, status), count in counts.items():
            labels = (server.queue_name, kind or NO_KIND, status.value)
            seen.add(labels)
            self.depth.labels(*labels).set(count)
        for labels in self._depth_labels(server.queue_name) - seen:
            self.depth.labels(*labels).set(0)  # none left of it

    def _depth_labels(self, queue_name: str) -> set[tuple[str, str, str]]:
        labels = set()
        for metric in self.depth.collect():
            for sample in metric.samples:
                if sample.labels.get("queue") == queue_name:
                    values = sample.labels
                    labels.add((values["queue"], values["kind"], values["status"]))
        return labels

    async def _read_depth(self, server: JobQueueServer[Any, Any]) -> None:
        while True:
            try:
                await self.refresh_depth(server)
            except Exception as error:  # an outage: the next round tries again
                logger.warning("could not read the depth of %r: %s", server.queue_name, error)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(self.depth_interval)
                continue
            return
