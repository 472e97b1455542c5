"""Values in and out of IndexedDB records: JSON as text, times as fixed-width UTC text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ... import transitions
from ..._json import dumps
from ...browser._ffi import JsObject, js_array, js_global
from ...job import Job, JobStatus
from ...limits import check_aware
from ..records import job_from_columns
from .migrations import NO_KIND

# Times as fixed-width UTC ISO 8601 text, exact to the microsecond ------------
# (Numbers cannot do that: microseconds since 1970 pass 2**53 in the year 2255.) Text of
# one width sorts like the times it holds, so it works as an index key.


def encode_time(value: datetime) -> str:
    """A timezone-aware datetime as `YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC."""
    utc = check_aware("datetime", value).astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"  # four-digit years, six digits


def decode_time(value: str | None) -> datetime | None:
    """The UTC datetime that `encode_time` wrote; None stays None."""
    return None if value is None else datetime.fromisoformat(value)


def encode_optional_time(value: datetime | None) -> str | None:
    """`encode_time`, None kept."""
    return None if value is None else encode_time(value)


# Range bounds: an array sorts after every number and string, so [q, s, []] closes
# "everything under [q, s]" and [q, s] opens it.
AFTER_ALL: list[Any] = []


def key_range(lower: list[Any], upper: list[Any], upper_open: bool = False) -> JsObject:
    """An IDBKeyRange from `lower` to `upper` (both included unless upper_open)."""
    return js_global().IDBKeyRange.bound(js_array(lower), js_array(upper), False, upper_open)


def kind_key(kind: str | None) -> str | int:
    """The `kind_key` of jobs of `kind` (see migrations.py)."""
    return NO_KIND if kind is None else kind


def job_to_record(job: Job[Any, Any], queue_name: str) -> dict[str, Any]:
    """The IndexedDB record of a job (JSON values and times stored as text)."""
    record: dict[str, Any] = {
        "queue": queue_name,
        "status": JobStatus(job.status).value,
        "input": dumps(job.input),
        "output": None if job.output is None else dumps(job.output),
        "progress": float(job.progress),
        "progress_message": job.progress_message,
        "progress_details": None if job.progress_details is None else dumps(job.progress_details),
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
        "worker_id": job.worker_id,
        "lease_expires_at": encode_optional_time(job.lease_expires_at),
        "kind": job.kind,
        "priority": int(job.priority),
        "unique_key": job.unique_key,
        "metadata": dumps(job.metadata),
        "timeout_ms": None if job.timeout_ms is None else float(job.timeout_ms),
        "error_traceback": job.error_traceback,
        "depends_on": [int(job_id) for job_id in job.depends_on],
        "dependencies_left": int(job.dependencies_left),
        # Index keys only (see migrations.py), derived from the fields above.
        "rank": -int(job.priority),
        "kind_key": kind_key(job.kind),
        "held_key": job.unique_key if transitions.holds_unique_key(job) else None,
    }
    if job.id is not None:
        record["id"] = job.id
    return record


def record_to_job(record: dict[str, Any]) -> Job[Any, Any]:
    """The job a record stores."""
    # Records of releases before dependencies (SPEC 8.7) have no depends_on.
    columns = {"depends_on": None, "dependencies_left": 0, **record, "queue_name": record["queue"]}
    return job_from_columns(columns, decode_time)
