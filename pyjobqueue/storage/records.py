"""A stored job's columns and back to a `Job`: the one decoding every backend shares.

Each backend's codec turns its own row or record into a mapping of these columns and
says how it stores times; `job_from_columns` does the rest, the same way everywhere:
JSON values that cannot be read back become None with `Job.unreadable` saying why
(`pyjobqueue._json.read_stored`), so one bad row never stops a listing or a claim.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from .._json import read_stored
from ..job import Job, JobStatus
from ..presence import ServerInfo
from ..schedules import ScheduleState


def storable_text(value: str | None) -> str | None:
    """A message (an error, a traceback, progress) as SQL stores it whole: NULs shown
    as U+FFFD, and lone surrogates (an undecodable file name in an error) as their
    backslash escapes, instead of failing the write."""
    if value is None:
        return None
    text = value.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


JSON_COLUMNS = ("input", "output", "progress_details", "metadata")
TIME_COLUMNS = (
    "created_at",
    "completed_at",
    "run_after",
    "deadline_at",
    "last_ran_at",
    "lease_expires_at",
)
# The columns a job's record has, in the order every backend's SQL lists them.
JOB_COLUMNS = (
    "id",
    "queue_name",
    "input",
    "output",
    "status",
    "progress",
    "progress_message",
    "progress_details",
    "max_retries",
    "run_attempts",
    "error",
    "error_code",
    "created_at",
    "completed_at",
    "run_after",
    "deadline_at",
    "last_ran_at",
    "job_run_id",
    "fingerprint",
    "worker_id",
    "lease_expires_at",
    "kind",
    "priority",
    "unique_key",
    "metadata",
    "timeout_ms",
    "error_traceback",
    "depends_on",
    "dependencies_left",
)
TimeDecoder = Callable[[Any], datetime | None]


class Columns(Protocol):
    """A row or record: its values by column name."""

    def __getitem__(self, column: str) -> Any:
        """The value of `column`."""


_NEVER = datetime.min.replace(tzinfo=UTC)  # stands in for a required time that is missing


_STATUSES = {status.value: status for status in JobStatus}


def job_from_columns(columns: Columns, decode_time: TimeDecoder | None) -> Job[Any, Any]:
    """The job whose stored columns (by their pyjobqueue_jobs names) are `columns`;
    `decode_time` turns a stored time into a datetime (None: they are datetimes)."""
    texts = [columns[column] for column in JSON_COLUMNS]
    unreadable = None
    try:
        input, output, details, metadata = [
            None if text is None else json.loads(text) for text in texts
        ]
    except (ValueError, TypeError, RecursionError):
        values, unreadable = read_stored(dict(zip(JSON_COLUMNS, texts, strict=True)))
        input, output, details, metadata = (values[column] for column in JSON_COLUMNS)
    times = [columns[column] for column in TIME_COLUMNS]
    if decode_time is not None:
        times = [decode_time(value) for value in times]
    created_at, completed_at, run_after, deadline_at, last_ran_at, lease_expires_at = times
    timeout_ms = columns["timeout_ms"]
    # Every field of Job, so the record is what Job(**fields) would make, without its
    # keyword handling: a claim decodes one row per job, and this is most of its cost.
    job: Job[Any, Any] = object.__new__(Job)
    job.__dict__ = {
        "id": int(columns["id"]),
        "queue_name": columns["queue_name"],
        "input": input,
        "output": output,
        "status": _STATUSES[columns["status"]],
        "progress": float(columns["progress"]),
        "progress_message": columns["progress_message"],
        "progress_details": details,
        "max_retries": int(columns["max_retries"]),
        "run_attempts": int(columns["run_attempts"]),
        "error": columns["error"],
        "error_code": columns["error_code"],
        "created_at": created_at or _NEVER,
        "completed_at": completed_at,
        "run_after": run_after or _NEVER,
        "deadline_at": deadline_at,
        "last_ran_at": last_ran_at,
        "job_run_id": columns["job_run_id"],
        "fingerprint": columns["fingerprint"],
        "worker_id": columns["worker_id"],
        "lease_expires_at": lease_expires_at,
        "kind": columns["kind"],
        "priority": int(columns["priority"]),
        "unique_key": columns["unique_key"],
        "metadata": _metadata(metadata),
        "timeout_ms": None if timeout_ms is None else float(timeout_ms),
        "error_traceback": columns["error_traceback"],
        "depends_on": _ids(columns["depends_on"]),
        "dependencies_left": int(columns["dependencies_left"] or 0),
        "unreadable": unreadable,
    }
    return job


def _ids(value: Any) -> list[int]:
    """Job ids stored as a JSON array (text or decoded), an SQL array, or NULL."""
    if not value:
        return []
    if isinstance(value, str):
        value = json.loads(value)
    return [int(job_id) for job_id in value or ()]


def _metadata(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def schedule_from_columns(columns: Columns, decode_time: TimeDecoder) -> ScheduleState:
    """The stored state of a schedule (its pyjobqueue_schedules columns)."""
    next_tick = decode_time(columns["next_tick"])
    assert next_tick is not None, "a schedule's next_tick is never NULL"
    return ScheduleState(
        columns["name"], decode_time(columns["last_tick"]), next_tick, columns["spec"]
    )


def server_from_columns(columns: Columns, decode_time: TimeDecoder) -> ServerInfo:
    """A server's heartbeat (its pyjobqueue_servers columns); `kinds` is a JSON array,
    as text or already decoded."""
    kinds = columns["kinds"]
    if isinstance(kinds, str):
        kinds = json.loads(kinds)
    started_at, last_seen, expires_at = (
        decode_time(columns[column]) or _NEVER
        for column in ("started_at", "last_seen", "expires_at")
    )
    return ServerInfo(
        server_id=columns["server_id"],
        host=columns["host"],
        pid=columns["pid"],
        kinds=tuple(kinds),
        worker_count=int(columns["worker_count"]),
        started_at=started_at,
        last_seen=last_seen,
        expires_at=expires_at,
        paused=bool(columns["paused"]),
    )
