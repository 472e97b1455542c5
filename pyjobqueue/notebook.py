"""The live job widget for Jupyter and JupyterLite: `client.widget()` and `display(client)`.

This module imports no widget library: `JobTable` (what the widget shows, kept up to
date from the client's events) is plain Python, and the widget itself
(`_notebook_widget.py`, on anywidget) is imported only when one is asked for, so a
missing `notebook` extra fails there with a clear ImportError and nowhere else.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from .events import STATUS_AFTER, EventName, event_payload
from .job import FINISHED_STATUSES, Job, JobStatus

if TYPE_CHECKING:
    from ._notebook_widget import JobsWidget
    from .client import JobQueueClient

# How many jobs a widget shows unless told otherwise: the newest ones.
DEFAULT_LIMIT = 50
INSTALL_HINT = "the job widget needs anywidget: pip install 'pyjobqueue[notebook]'"


def job_row(job: Job[Any, Any]) -> dict[str, Any]:
    """What the widget shows of a job, JSON-ready."""
    return {
        "id": job.id,
        "kind": job.kind or "",
        "status": job.status.value,
        "progress": job.progress,
        "message": job.progress_message,
        "error": job.error or "",
        "finished": job.status in FINISHED_STATUSES,
    }


class JobTable:
    """The jobs a widget shows, one row each, changed by stored jobs and by events."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        self.limit = limit
        self._rows: dict[int, dict[str, Any]] = {}

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._rows

    def put(self, job: Job[Any, Any]) -> None:
        """Show a job as it is stored; an event seen since its read is not undone."""
        if job.id is None:
            return
        row = job_row(job)
        known = self._rows.get(job.id)
        if known is not None and known["finished"] and not row["finished"]:
            return  # the read is older than the finishing event already applied
        self._rows[job.id] = row
        self._trim()

    def apply(self, event: str, job_id: int, args: tuple[Any, ...]) -> bool:
        """Apply a job event's arguments (after queue_name and job_id); False for a job
        this table does not show yet (the caller reads it)."""
        row = self._rows.get(job_id)
        if row is None:
            return False
        if row["finished"] and event != EventName.JOB_RETRY:
            return True  # an event older than the finished state read from the storage
        payload = event_payload(event, args)
        status = STATUS_AFTER.get(event)
        if event == EventName.JOB_PROGRESS:
            row["progress"] = float(payload.get("progress", row["progress"]))
            row["message"] = str(payload.get("message", ""))
            if row["status"] == JobStatus.PENDING:
                status = JobStatus.PROCESSING  # a read older than its start
        if status is not None:
            row["status"] = status.value
            row["finished"] = status in FINISHED_STATUSES
        if event == EventName.JOB_COMPLETE:
            row["progress"] = 100.0
        if event == EventName.JOB_ERROR:
            row["error"] = str(payload.get("error", ""))
        return True

    def rows(self) -> list[dict[str, Any]]:
        """The rows, newest job first, as fresh dicts (a widget trait needs a new value)."""
        return [dict(self._rows[job_id]) for job_id in sorted(self._rows, reverse=True)]

    def _trim(self) -> None:
        if len(self._rows) <= self.limit:
            return  # the common case, on every put: no sort
        for job_id in sorted(self._rows)[: len(self._rows) - self.limit]:
            del self._rows[job_id]


_widgets: weakref.WeakKeyDictionary[JobQueueClient[Any, Any], weakref.ref[JobsWidget]] = (
    weakref.WeakKeyDictionary()
)


def job_widget(client: JobQueueClient[Any, Any], *, limit: int = DEFAULT_LIMIT) -> JobsWidget:
    """The live widget of `client`'s queue: one per client (and limit), made on first use."""
    try:
        from ._notebook_widget import JobsWidget
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    cached = _widgets.get(client)
    widget = cached() if cached is not None else None
    if widget is not None and not widget.closed and widget.table.limit != limit:
        widget.close()  # another limit: a new widget, and the old one stops listening
    if widget is None or widget.closed:
        widget = JobsWidget(client, JobTable(limit))
        _widgets[client] = weakref.ref(widget)
    return widget


def mimebundle(client: JobQueueClient[Any, Any], **kwargs: Any) -> Any:
    """What `display(client)` shows: the widget, or None (the plain repr) without anywidget."""
    try:
        widget = job_widget(client)
    except ImportError:
        return None
    return widget._repr_mimebundle_(**kwargs)
