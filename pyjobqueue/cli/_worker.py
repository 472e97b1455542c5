"""`pyjobqueue worker`: run a server until SIGINT/SIGTERM, logging one line per job event."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any

from .._retry import one_line
from ..events import JOB_EVENTS, EventName, event_payload
from ..job import Job, kind_of, utcnow
from ..limiters import CompositeLimiter, ConcurrencyLimiter, Limiter, RateLimiter
from ..schedules import Schedule
from ..server import JobQueueServer
from ..serving import SignalWatcher, stop_on_signals, wait_for_signal_or_stop
from ..storage.base import QueueStorage
from ..worker import STORAGE_FAILURE_RECORD
from ._render import compact_json, print_line, shorten
from ._target import (
    Target,
    load_job_classes,
    load_schedules,
    opened_queue,
    opened_rate_limiter_storage,
    target_from,
)
from ._values import CliError

# How long the second signal's stop may take before the process leaves regardless.
HURRIED_STOP_SECONDS = 5.0
DETAIL_LIMIT = 120
PAUSED_NOTE = "the queue is paused: no job starts until `pyjobqueue resume`"


class EventLog:
    """Writes one line per job and server event to stdout: text, or JSON lines with --json."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json

    def attach(self, server: JobQueueServer[Any, Any]) -> None:
        """Log every event of `server`."""
        for name in JOB_EVENTS:
            server.on(name, self._listener(name))

    def _listener(self, name: str) -> Callable[..., None]:
        def log(queue_name: str, job_id: int, *args: Any) -> None:
            self.job_event(name, job_id, args)

        return log

    def job_event(self, name: str, job_id: int, args: tuple[Any, ...]) -> None:
        """One line for a job event."""
        if self.as_json:
            self._json_line({"event": name, "job_id": job_id, **_event_fields(name, args)})
            return
        detail = _event_detail(name, args)
        self._text_line(f"{name:<15} job={job_id}" + (f"  {detail}" if detail else ""))

    def note(self, event: str, message: str, **fields: Any) -> None:
        """One line about the worker itself (started, stopping, stopped)."""
        if self.as_json:
            self._json_line({"event": event, "message": message, **fields})
        else:
            self._text_line(f"{event:<15} {message}")

    def _text_line(self, text: str) -> None:
        print_line(f"{_timestamp(utcnow())} {text}")

    def _json_line(self, fields: dict[str, Any]) -> None:
        line = {"time": _timestamp(utcnow()), **fields}
        print_line(json.dumps(line, ensure_ascii=False, default=str))


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event_fields(name: str, args: tuple[Any, ...]) -> dict[str, Any]:
    """The event's payload by field name, as JSON (datetimes as timestamps)."""
    fields = event_payload(name, args)
    return {
        field: _timestamp(value) if isinstance(value, datetime) else value
        for field, value in fields.items()
    }


def _event_detail(name: str, args: tuple[Any, ...]) -> str:
    fields = event_payload(name, args)
    if name == EventName.JOB_PROGRESS:
        text = f"{fields['progress']:.0f}% {fields['message']}"
        return shorten(text.strip(), DETAIL_LIMIT)
    if name == EventName.JOB_COMPLETE:
        return "output=" + compact_json(fields["output"], DETAIL_LIMIT)
    if name == EventName.JOB_ERROR:
        return "error=" + shorten(str(fields["error"]), DETAIL_LIMIT)
    if name == EventName.JOB_RETRY and isinstance(fields["run_after"], datetime):
        return f"run_after={_timestamp(fields['run_after'])}"
    return ""


def _limiter_parts(args: argparse.Namespace) -> list[Limiter]:
    parts: list[Limiter] = []
    if args.concurrency is not None:
        parts.append(ConcurrencyLimiter(args.concurrency))
    return parts


def _worker_count(args: argparse.Namespace) -> int:
    if args.workers is not None:
        return int(args.workers)
    # --concurrency alone: enough workers to use it (each worker runs one job at a time).
    return int(args.concurrency) if args.concurrency is not None else 1


@contextlib.asynccontextmanager
async def _limiter(args: argparse.Namespace, target: Target) -> AsyncIterator[Limiter | None]:
    parts = _limiter_parts(args)
    if args.rate is None:
        yield None if not parts else parts[0]
        return
    max_executions, window = args.rate
    async with opened_rate_limiter_storage(target) as storage:
        rate = RateLimiter(
            storage, target.queue, max_executions=max_executions, window_size_in_seconds=window
        )
        yield CompositeLimiter([*parts, rate]) if parts else rate


def _describe(args: argparse.Namespace, target: Target, kinds: list[str]) -> str:
    settings = [
        f"jobs={','.join(args.jobs)}",
        f"kinds={','.join(kinds)}",
        f"queue={target.queue}",
        f"storage={target.describe()}",
        f"workers={_worker_count(args)}",
    ]
    if args.concurrency is not None:
        settings.append(f"concurrency={args.concurrency}")
    if args.rate is not None:
        settings.append(f"rate={args.rate[0]}/{args.rate[1]:g}s")
    settings.append(f"pid={os.getpid()}")
    return " ".join(settings)


async def run_worker(args: argparse.Namespace) -> int:
    """Run a server for the job classes until a stop signal; the exit status."""
    job_classes = load_job_classes(args.jobs)
    schedules = load_schedules(args.schedules) if args.schedules else []
    kinds = [kind_of(job_class) for job_class in job_classes]
    target = target_from(args.storage, args.queue)
    log = EventLog(as_json=args.json)
    async with opened_queue(target) as storage, _limiter(args, target) as limiter:
        server = _make_server(args, job_classes, storage, limiter, schedules)
        log.attach(server)
        metrics = _serve_metrics(args, server)
        watcher = SignalWatcher()
        with watcher.installed(), _failure_reported_here():
            await server.start()
            log.note("worker_start", _describe(args, target, kinds), pid=os.getpid(), kinds=kinds)
            async with _pause_watched(server, log, args.poll_interval):
                first = await _signal_or_failure(server, watcher)
            status = await _stop(server, watcher, log, first, args.stop_timeout)
    if metrics is not None:
        metrics.shutdown()
        metrics.server_close()
    return status


@contextlib.asynccontextmanager
async def _pause_watched(
    server: JobQueueServer[Any, Any], log: EventLog, interval: float
) -> AsyncIterator[None]:
    """Log when the queue is (or becomes) paused or resumed, so that a worker running
    nothing says why."""

    async def watch() -> None:
        paused = False
        while True:
            if server.is_paused() != paused:
                paused = server.is_paused()
                if paused:
                    log.note("queue_paused", PAUSED_NOTE, paused=True)
                else:
                    log.note(
                        "queue_resumed", "the queue was resumed: jobs start again", paused=False
                    )
            await asyncio.sleep(interval)

    task = asyncio.create_task(watch(), name="pyjobqueue cli pause watch")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.contextmanager
def _failure_reported_here() -> Iterator[None]:
    """Leave out the library's log line of a permanent storage failure: the command
    reports it itself, as its one error line."""

    def keep(record: logging.LogRecord) -> bool:
        return not getattr(record, STORAGE_FAILURE_RECORD, False)

    # On the handlers, not on a logger: a logger's filter misses the records of its
    # children (pyjobqueue.worker), which reach the handlers all the same.
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(keep)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(keep)


async def _signal_or_failure(server: JobQueueServer[Any, Any], watcher: SignalWatcher) -> int:
    """The first stop signal; CliError when the server stops by itself first (a permanent
    storage failure: a read-only or corrupt file, a dropped table, a login refused)."""
    first = await wait_for_signal_or_stop(server, watcher)
    if first:
        return first
    error = server.error
    raise CliError(f"worker stopped: {one_line(error) if error else 'the server stopped'}")


def _serve_metrics(args: argparse.Namespace, server: JobQueueServer[Any, Any]) -> Any:
    """With --metrics-port: instrument the server and serve its metrics over HTTP (the
    HTTP server, to shut down at the end); else None."""
    if args.metrics_port is None:
        return None
    try:
        import prometheus_client

        from ..contrib.prometheus import PrometheusMetrics
    except ImportError:
        raise CliError(
            '--metrics-port needs prometheus-client: pip install "pyjobqueue[prometheus]"'
        ) from None
    PrometheusMetrics().instrument(server)
    try:
        http, _thread = prometheus_client.start_http_server(args.metrics_port, args.metrics_host)
    except OSError as error:
        raise CliError(
            f"cannot serve metrics on {args.metrics_host}:{args.metrics_port}: {error.strerror}"
        ) from None
    return http


def _make_server(
    args: argparse.Namespace,
    job_classes: list[type[Job[Any, Any]]],
    storage: QueueStorage,
    limiter: Limiter | None,
    schedules: list[Schedule],
) -> JobQueueServer[Any, Any]:
    try:
        return JobQueueServer(
            job_classes,
            storage=storage,
            limiter=limiter,
            schedules=schedules,
            worker_count=_worker_count(args),
            poll_interval_ms=args.poll_interval * 1000,
            lease_ms=args.lease * 1000,
            stop_timeout_ms=args.stop_timeout * 1000,
        )
    except (TypeError, ValueError) as error:
        raise CliError(str(error)) from None


async def _stop(
    server: JobQueueServer[Any, Any],
    watcher: SignalWatcher,
    log: EventLog,
    first: int,
    stop_timeout: float,
) -> int:
    """Graceful stop; a second signal exits at once."""
    log.note(
        "worker_stopping",
        f"{signal.Signals(first).name}: no new jobs; running jobs get up to {stop_timeout:g} s "
        "to finish, then go back to the queue (send the signal again to exit at once)",
        signal=signal.Signals(first).name,
    )

    def exit_now(number: int) -> None:
        log.note(
            "worker_exit",
            f"{signal.Signals(number).name} again: stopping running jobs now; they go back "
            "to the queue",
            signal=signal.Signals(number).name,
        )
        hurried.append(number)

    hurried: list[int] = []
    # A hurried stop cancels the jobs, which go back to the queue uncharged. If that
    # hangs (a job swallowing cancellation, a dead database), leave regardless.
    if await stop_on_signals(
        server, watcher, hurried_after=HURRIED_STOP_SECONDS, on_second=exit_now
    ):
        log.note("worker_stop", "stopped")
        return 0
    sys.stderr.flush()
    # At once means at once: no awaiting connections that may be what hangs.
    os._exit(128 + hurried[0])
