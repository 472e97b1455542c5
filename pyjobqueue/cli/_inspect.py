"""status, jobs, show, abort, retry, purge: look at a queue and act on its jobs."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta
from typing import Any

from ..client import JobQueueClient
from ..errors import JobNotFoundError
from ..job import Job, JobStatus, counts_by_status, utcnow
from ._render import age, job_detail, print_fields, print_json, print_line, print_table
from ._target import Target, opened_queue, target_from
from ._values import CliError

DETAIL_LIMIT = 60
PAUSED_STATE = "PAUSED (no job starts until `pyjobqueue resume`)"
RETRYABLE = frozenset({JobStatus.FAILED.value, JobStatus.DISABLED.value})
NO_KIND = "-"  # a job submitted without a kind (it runs as a worker's first class)
FIELD_ORDER = (
    "id",
    "queue_name",
    "kind",
    "status",
    "priority",
    "unique_key",
    "depends_on",
    "dependencies_left",
    "progress",
    "progress_message",
    "progress_details",
    "input",
    "output",
    "metadata",
    "error",
    "error_code",
    "run_attempts",
    "max_retries",
    "timeout_ms",
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
    """Whether the queue is paused; counts of jobs per status, and per kind and status;
    the servers that are alive."""
    target = _target(args)
    async with opened_queue(target) as storage:
        client = _client(storage)
        paused = await client.is_paused()
        by_kind = await client.counts()
        servers = await client.servers()
    counts = counts_by_status(by_kind)
    kinds = {
        kind: counts_by_status({key: n for key, n in by_kind.items() if key[0] == kind})
        for kind, _status in by_kind
    }
    # Named kinds by name, then the jobs of no kind.
    order = sorted(kinds, key=lambda kind: (kind is None, kind or ""))
    total = sum(counts.values())
    if args.json:
        print_json(
            {
                "queue": target.queue,
                "storage": target.describe(),
                "paused": paused,
                "counts": counts,
                "total": total,
                "kinds": [
                    {"kind": kind, "counts": kinds[kind], "total": sum(kinds[kind].values())}
                    for kind in order
                ],
                "servers": [server.as_dict() for server in servers],
            }
        )
        return 0
    state = PAUSED_STATE if paused else "not paused"
    rows = [[status, str(count)] for status, count in counts.items()]
    rows.append(["total", str(total)])
    title = f"queue {target.queue!r} in {target.describe()}, {state}"
    print_table(["status", "jobs"], rows, title=title, status_column=0)
    if order:
        columns = ["kind", *(status.value.lower() for status in JobStatus), "total"]
        kind_rows = [
            [
                kind or NO_KIND,
                *(str(n) for n in kinds[kind].values()),
                str(sum(kinds[kind].values())),
            ]
            for kind in order
        ]
        print_line("")
        print_table(columns, kind_rows, title="jobs by kind")
    print_line("")
    if not servers:
        print_line("no server of this queue is running")
        return 0
    server_rows = [
        [
            server.host,
            "-" if server.pid is None else str(server.pid),
            ", ".join(server.kinds),
            str(server.worker_count),
            _with_age(server.started_at.isoformat()),
            _with_age(server.last_seen.isoformat()),
        ]
        for server in servers
    ]
    columns = ["host", "pid", "kinds", "workers", "started", "last heartbeat"]
    print_table(columns, server_rows, title="servers alive")
    return 0


# -- pause and resume -----------------------------------------------------------------


async def run_pause(args: argparse.Namespace) -> int:
    """Pause the queue: every worker stops starting jobs; running jobs go on."""
    return await _set_paused(args, paused=True)


async def run_resume(args: argparse.Namespace) -> int:
    """Resume the queue: workers start jobs again."""
    return await _set_paused(args, paused=False)


async def _set_paused(args: argparse.Namespace, *, paused: bool) -> int:
    target = _target(args)
    async with opened_queue(target) as storage:
        # Whether this call changed the flag (one atomic write), which reading it first
        # and writing it then could not tell under a race.
        client = _client(storage)
        changed = await (client.pause() if paused else client.resume())
    if args.json:
        print_json({"queue": target.queue, "paused": paused, "changed": changed})
    else:
        print_line(_pause_line(target.queue, paused=paused, changed=changed))
    return 0


def _pause_line(queue: str, *, paused: bool, changed: bool) -> str:
    if paused and changed:
        return (
            f"queue {queue!r} paused: workers start no job until `pyjobqueue resume` "
            "(running jobs go on; submit still stores jobs)"
        )
    if paused:
        return f"queue {queue!r} was already paused: nothing changed"
    if changed:
        return f"queue {queue!r} resumed: workers start jobs again"
    return f"queue {queue!r} was not paused: nothing changed"


# -- jobs -----------------------------------------------------------------------------


async def run_jobs(args: argparse.Namespace) -> int:
    """A table of jobs: by status, by run id, or of every status."""
    target = _target(args)
    statuses: list[JobStatus] = args.status or list(JobStatus)
    async with opened_queue(target) as storage:
        client = _client(storage)
        if args.run_id is not None:
            found = await client.get_jobs_by_run_id(args.run_id)
            jobs = [
                job
                for job in found
                if job.status in statuses and (args.kind is None or job.kind == args.kind)
            ]
            total = len(jobs)
        else:
            jobs = [
                job
                for status in statuses
                for job in await client.peek(status, args.limit, kind=args.kind)
            ]
            total = sum([await client.size(status, kind=args.kind) for status in statuses])
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
            job.kind or NO_KIND,
            str(job.priority),
            f"{job.progress:.0f}%",
            f"{job.run_attempts}/{job.max_retries + 1}",
            age(job.created_at, now),
            job.job_run_id or "-",
            job_detail(job, DETAIL_LIMIT),
        ]
        for job in jobs
    ]
    columns = [
        "id",
        "status",
        "kind",
        "priority",
        "progress",
        "tries",
        "created",
        "run id",
        "input / output / error",
    ]
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
    # The traceback goes last, whole and unindented, as Python prints it.
    traceback = fields.pop("error_traceback", None)
    # Who and where first, then what it was given and gave back, then the timeline.
    order = [name for name in FIELD_ORDER if name in fields]
    order += [name for name in fields if name not in FIELD_ORDER]
    print_fields([(name, _field_text(name, fields[name])) for name in order])
    if traceback:
        # A blank line, then the text as Python printed it (ready to read or paste).
        print_line(f"\ntraceback of the last failed attempt:\n{str(traceback).rstrip()}")
    return 0


def _field_text(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name == "timeout_ms":
        return f"{value:g} ms"
    if name == "depends_on":
        return ", ".join(map(str, value)) or "-"
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


# -- schedules --------------------------------------------------------------------------


async def run_schedules(args: argparse.Namespace) -> int:
    """The schedules that servers of the queue run: last and next tick of each."""
    target = _target(args)
    async with opened_queue(target) as storage:
        states = await _client(storage).schedules()
    if args.json:
        print_json(
            [
                {
                    "name": state.name,
                    "last_tick": None if state.last_tick is None else state.last_tick.isoformat(),
                    "next_tick": state.next_tick.isoformat(),
                    "spec": json.loads(state.spec),
                }
                for state in states
            ]
        )
        return 0
    if not states:
        print(f"no schedules in queue {target.queue!r} (servers record theirs when they start)")
        return 0
    rows = [
        [
            state.name,
            _describe_spec(state.spec),
            "-" if state.last_tick is None else _with_age(state.last_tick.isoformat()),
            _with_age(state.next_tick.isoformat()),
        ]
        for state in states
    ]
    print_table(
        ["schedule", "when", "last tick", "next tick"], rows, title=f"queue {target.queue!r}"
    )
    return 0


def _describe_spec(spec: str) -> str:
    """`every 60s` or `cron '0 8 * * *' Europe/Paris`."""
    try:
        values = json.loads(spec)
    except ValueError:
        return spec
    if "every_seconds" in values:
        return f"every {values['every_seconds']:g}s"
    return f"cron {values.get('cron')!r} {values.get('timezone', 'UTC')}"


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
            job = await client.get_job(job_id)
            results.append(
                {
                    "id": job_id,
                    "retried": retried,
                    "status": None if job is None else job.status.value,
                    "unique_key": None if job is None else job.unique_key,
                }
            )
    if args.json:
        print_json(results)
    else:
        for result in results:
            print_line(_retry_line(result))
    return 0 if all(result["retried"] for result in results) else 1


def _retry_line(result: dict[str, Any]) -> str:
    if result["retried"]:
        return f"job {result['id']}: queued again ({result['status']})"
    if result["status"] in RETRYABLE and result["unique_key"] is not None:
        # Refused because another unfinished job holds the key (SPEC 8.3).
        return (
            f"job {result['id']}: not retried, another unfinished job of the queue holds "
            f"its unique key {result['unique_key']!r} (retry it once that job has finished)"
        )
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
