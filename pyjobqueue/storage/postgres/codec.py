"""Values in and out of PostgreSQL (asyncpg converts times; JSON travels as text)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ... import _json
from ...job import Job
from ...outcome import Outcome, OutcomeKind
from ..records import job_from_columns, storable_text

# One attempt's values, in the order of the arrays of `queries.FINISH_ATTEMPTS`.
FinishRow = tuple[Any, ...]


def no_nul(name: str, value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL characters: refuse them before anything is stored."""
    if value is not None and "\x00" in value:
        raise ValueError(f"{name} contains a NUL character, which PostgreSQL cannot store")
    return value


def encode_text(value: str | None) -> str | None:
    """Messages (errors, progress) as PostgreSQL stores them (`storable_text`)."""
    return storable_text(value)


def encode_json(value: Any) -> str | None:
    """A JSON value as text; None stays NULL."""
    return None if value is None else _json.dumps(value)


def job_to_row(job: Job[Any, Any]) -> tuple[Any, ...]:
    """One new job's values, in the order of the arrays of `queries.INSERT_JOBS`."""
    return (
        _json.dumps(job.input),
        job.max_retries,
        job.created_at,
        job.run_after,
        job.deadline_at,
        no_nul("job_run_id", job.job_run_id),
        job.fingerprint,
        no_nul("kind", job.kind),
        job.priority,
        no_nul("unique_key", job.unique_key),
        encode_json(job.metadata or None),  # NULL reads back as {}, as in migrated rows
        job.timeout_ms,
    )


def job_from_row(row: Any) -> Job[Any, Any]:
    """The job a row of pyjobqueue_jobs holds (asyncpg decodes the times)."""
    return job_from_columns(row, None)


def finish_row(
    job_id: int,
    worker_id: str,
    attempt: int,
    outcome: Outcome,
    lease_expired_before: datetime | None,
    payload: str | None,
) -> FinishRow:
    """(id, worker, attempt, expired_before, kind, status, output, error, error_code,
    traceback, completed_at, run_after, payload) of one outcome."""
    kind = outcome.kind
    finished = kind in (OutcomeKind.COMPLETE, OutcomeKind.FAIL)
    failed = kind in (OutcomeKind.FAIL, OutcomeKind.RETRY)
    return (
        job_id,
        worker_id,
        attempt,
        lease_expired_before,
        kind.name,
        outcome.status.value,
        _json.dumps(outcome.output) if kind is OutcomeKind.COMPLETE else None,
        encode_text(outcome.error) if failed else None,
        outcome.error_code if failed else None,
        encode_text(outcome.traceback) if failed else None,
        outcome.at if finished else None,
        None if finished else (outcome.run_after or outcome.at),
        payload,
    )
