"""Values in and out of SQLite: times as integer microseconds, JSON as text."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

from ... import _json
from ...job import Job, JobStatus
from ...limits import check_aware
from ..records import job_from_columns

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def encode_time(when: datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the epoch."""
    return (check_aware("datetime", when) - _EPOCH) // _MICROSECOND


def encode_optional_time(when: datetime | None) -> int | None:
    """`encode_time`, None kept."""
    return None if when is None else encode_time(when)


def decode_time(value: int | None) -> datetime | None:
    """What `encode_time` stored, back as a UTC datetime; None kept."""
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def encode_json(value: Any) -> str | None:
    """A JSON value as text; None stays NULL."""
    return None if value is None else _json.dumps(value)


def job_to_row(queue_name: str, job: Job[Any, Any]) -> dict[str, Any]:
    """The named parameters of `queries.INSERT_JOB` for a new job."""
    return {
        "queue_name": queue_name,
        "input": _json.dumps(job.input),
        "output": encode_json(job.output),
        "status": JobStatus(job.status).value,
        "progress": float(job.progress),
        "progress_message": job.progress_message,
        "progress_details": encode_json(job.progress_details),
        "max_retries": job.max_retries,
        "run_attempts": job.run_attempts,
        "error": job.error,
        "error_code": job.error_code,
        "created_at": encode_time(job.created_at),
        "completed_at": encode_optional_time(job.completed_at),
        "run_after": encode_time(job.run_after),
        "deadline_at": encode_optional_time(job.deadline_at),
        "last_ran_at": encode_optional_time(job.last_ran_at),
        "job_run_id": job.job_run_id,
        "fingerprint": job.fingerprint,
        "kind": job.kind,
        "priority": job.priority,
        "unique_key": job.unique_key,
        # No metadata is NULL, as in the rows of older releases (both read back as {}).
        "metadata": encode_json(job.metadata) if job.metadata else None,
        "timeout_ms": job.timeout_ms,
        "error_traceback": job.error_traceback,
        "depends_on": encode_json(job.depends_on) if job.depends_on else None,
        "dependencies_left": job.dependencies_left,
    }


def job_from_row(row: sqlite3.Row) -> Job[Any, Any]:
    """The job a row of pyjobqueue_jobs holds."""
    return job_from_columns(row, decode_time)
