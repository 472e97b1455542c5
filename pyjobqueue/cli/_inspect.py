"""status, jobs, show, abort, retry, purge: look at a queue and act on its jobs."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta
from typing import Any

from ..client import JobQueueClient
from ..errors import JobNotFoundError
from ..job import Job, JobStatus, utcnow
from ._render import age, job_detail, print_fields, print_json, print_line, print_table
from ._target import Target, opened_queue, target_from
from ._values import CliError

DETAIL_LIMIT = 60
FIELD_ORDER = (
    "id",
    "queue_name",
    "status",
    "progress",
    "progress_message",
    "progress_details",
    "input",
    "output",
    "error",
    "error_code",
    "run_attempts",
    "max_retries",
    "job_run_id",
    "created_at",
    "run_after",
    "last_ran_at",
    "completed_at",
    "deadline_at",
)


def _client(storage: Any) -> JobQueueClient[Any, Any]:
    return JobQueueClient(storage=storage)


def _target(args: argparse.Namespace) -> Target:
    return target_from(args.storage, args.queue)


# -- status ---------------------------------------------------------------------------


async def run_status(args: argparse.Namespace) -> int:
    """Counts of jobs per status."""
    target = _target(args)
    async with opened_queue(target) as storage:
        counts = {status.value: await storage.size(status) for status in JobStatus}
    total = sum(counts.values())
    if args.json:
        print_json(
            {"queue": target.queue, "storage": target.describe(), "counts": counts, "total": total}
        )
        return 0
    rows = [[status, str(count)] for status, count in counts.items()]
    rows.append(["total", str(total)])
    title = f"queue {target.queue!r} in {target.describe()}"
    print_table(["status", "jobs"], rows, title=title, status_column=0)
    return 0


# -- jobs -----------------------------------------------------------------------------


async def run_jobs(args: argparse.Namespace) -> int:
    """A table of jobs: by status, by run id, or of every status."""
    target = _target(args)
    statuses: list[JobStatus] = args.status or list(JobStatus)
    async with opened_queue(target) as storage:
        client = _client(storage)
        if args.run_id is not None:
            found = [job for job in await client.get_jobs_by_run_id(args.run_id)]
            jobs = [job for job in found if job.status in statuses]
            total = len(jobs)
        else:
            jobs = [job for status in statuses for job in await client.peek(status, args.limit)]
            total = sum([await client.size(status) for status in statuses])
    jobs.sort(key=lambda job: job.id or 0)
    shown = jobs[: args.limit]
    if args.json:
        print_json([job.as_dict() for job in shown])
    else:
        _jobs_table(shown)
    if total > len(shown) and not args.json:
        print_line(f"showing {len(shown)} of {total} jobs (use --limit N)", stream=sys.stderr)
    return 0


def _jobs_table(jobs: list[Job[Any, Any]]) -> None:
    now = utcnow()
    rows = [
        [
            str(job.id),
            job.status.value,
            f"{job.progress:.0f}%",
            f"{job.run_attempts}/{job.max_retries + 1}",
            age(job.created_at, now),
            job.job_run_id or "-",
            job_detail(job, DETAIL_LIMIT),
        ]
        for job in jobs
    ]
    columns = ["id", "status", "progress", "tries", "created", "run id", "input / output / error"]
    print_table(columns, rows, status_column=1)


# -- show -----------------------------------------------------------------------------


async def run_show(args: argparse.Namespace) -> int:
    """Every field of one job."""
    target = _target(args)
    async with opened_queue(target) as storage:
        job = await _client(storage).get_job(args.id)
    if job is None:
        raise CliError(f"no job {args.id} in queue {target.queue!r}")
    if args.json:
        print_json(job.as_dict())
        return 0
    fields = job.as_dict()
    # Who and where first, then what it was given and gave back, then the timeline.
    order = [name for name in FIELD_ORDER if name in fields]
    order += [name for name in fields if name not in FIELD_ORDER]
    print_fields([(name, _field_text(fields[name])) for name in order])
    return 0


def _field_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return _with_age(value)
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False)


def _with_age(text: str) -> str:
    """An ISO timestamp gets its age beside it; other strings stay as they are."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is None or "T" not in text:
        return text
    return f"{text}  ({age(moment)})"


# -- abort ----------------------------------------------------------------------------


async def run_abort(args: argparse.Namespace) -> int:
    """Abort jobs by id, or every unfinished job of a run."""
    if bool(args.ids) == (args.run_id is not None):
        raise CliError("give job ids or --run-id RUN, not both and not neither")
    target = _target(args)
    async with opened_queue(target) as storage:
        client = _client(storage)
        if args.run_id is not None:
            before = {job.id: job.status for job in await client.get_jobs_by_run_id(args.run_id)}
            if not before:
                raise CliError(f"no jobs with run id {args.run_id!r} in queue {target.queue!r}")
            await client.abort_job_run(args.run_id)
            ids = sorted(job_id for job_id in before if job_id is not None)
        else:
            ids = list(args.ids)
            before = {}
            for job_id in ids:
                job = await client.get_job(job_id)
                if job is None:
                    raise CliError(f"no job {job_id} in queue {target.queue!r}")
                before[job_id] = job.status
            for job_id in ids:
                await client.abort(job_id)
        after = {job_id: await _status(client, job_id) for job_id in ids}
    return _report_aborts(ids, before, after, as_json=args.json)


async def _status(client: JobQueueClient[Any, Any], job_id: int) -> JobStatus | None:
    job = await client.get_job(job_id)
    return None if job is None else job.status


def _abort_outcome(before: JobStatus | None, after: JobStatus | None) -> str:
    if before is JobStatus.PENDING and after is JobStatus.FAILED:
        return "aborted"
    if after is JobStatus.ABORTING and before is not JobStatus.ABORTING:
        return "aborting"
    if before is JobStatus.PROCESSING and after is not None and after is not JobStatus.PROCESSING:
        return "aborted"
    return "unchanged"


def _report_aborts(
    ids: list[int],
    before: dict[Any, JobStatus],
    after: dict[int, JobStatus | None],
    *,
    as_json: bool,
) -> int:
    outcomes = {job_id: _abort_outcome(before.get(job_id), after[job_id]) for job_id in ids}
    if as_json:
        print_json(
            [
                {"id": job_id, "result": outcomes[job_id], "status": _value(after[job_id])}
                for job_id in ids
            ]
        )
        return 0
    for job_id in ids:
        print_line(_abort_line(job_id, outcomes[job_id], before.get(job_id), after[job_id]))
    return 0


def _value(status: JobStatus | None) -> str | None:
    return None if status is None else status.value


def _abort_line(
    job_id: int, outcome: str, before: JobStatus | None, after: JobStatus | None
) -> str:
    if outcome == "aborted":
        return f"job {job_id}: aborted (now {_value(after)})"
    if outcome == "aborting":
        return f"job {job_id}: aborting (its worker stops it within a poll interval)"
    return f"job {job_id}: nothing to abort, it is {_value(after or before)}"


# -- retry ----------------------------------------------------------------------------


async def run_retry(args: argparse.Namespace) -> int:
    """Run FAILED or DISABLED jobs again, as new."""
    target = _target(args)
    results: list[dict[str, Any]] = []
    async with opened_queue(target) as storage:
        client = _client(storage)
        for job_id in args.ids:
            try:
                retried = await client.retry(job_id)
            except JobNotFoundError:
                raise CliError(f"no job {job_id} in queue {target.queue!r}") from None
            status = await _status(client, job_id)
            results.append({"id": job_id, "retried": retried, "status": _value(status)})
    if args.json:
        print_json(results)
    else:
        for result in results:
            print_line(_retry_line(result))
    return 0 if all(result["retried"] for result in results) else 1


def _retry_line(result: dict[str, Any]) -> str:
    if result["retried"]:
        return f"job {result['id']}: queued again ({result['status']})"
    return (
        f"job {result['id']}: not retried, it is {result['status']} "
        "(only FAILED or DISABLED jobs can be retried)"
    )


# -- purge ----------------------------------------------------------------------------


async def run_purge(args: argparse.Namespace) -> int:
    """Delete finished jobs of the given statuses that finished before the cutoff."""
    target = _target(args)
    cutoff = utcnow() - timedelta(seconds=args.older_than)
    deleted: dict[str, int] = {}
    async with opened_queue(target) as storage:
        for status in args.status:
            deleted[status.value] = await storage.delete_finished(status, cutoff)
    if args.json:
        print_json({"deleted": deleted, "finished_before": cutoff.isoformat()})
        return 0
    for status, count in deleted.items():
        noun = "job" if count == 1 else "jobs"
        print_line(
            f"deleted {count} {status} {noun} finished before {cutoff:%Y-%m-%d %H:%M:%S} UTC"
        )
    return 0
