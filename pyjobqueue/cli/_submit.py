"""`pyjobqueue submit`: store jobs in one batch; with --wait, follow them to the end."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any, TextIO

from ..client import JobQueueClient
from ..errors import JobDisabledError, JobError, JobNotFoundError
from ..events import EventName
from ..job import utcnow
from ..storage.base import Added
from ._progress import ProgressDisplay, make_display
from ._render import print_json, print_line
from ._target import opened_queue, target_from
from ._values import CliError, parse_json_input

EXIT_JOB_FAILED = 3


@dataclasses.dataclass
class JobResult:
    """How one waited-for job ended."""

    id: int
    status: str
    output: Any = None
    error: str | None = None
    error_code: str | None = None
    created: bool = True

    def as_json(self) -> dict[str, Any]:
        """The result for --json: output for a completed job, error fields otherwise."""
        if self.status == "COMPLETED":
            outcome = {"output": self.output}
        else:
            outcome = {"error": self.error, "error_code": self.error_code}
        return {"id": self.id, "created": self.created, "status": self.status, **outcome}


def read_inputs(args: argparse.Namespace, stdin: TextIO) -> list[Any]:
    """The JSON inputs: arguments, else --file lines, else stdin lines (one JSON per line)."""
    if args.inputs and args.file is not None:
        raise CliError("give inputs as arguments or with --file, not both")
    if args.inputs:
        return [
            parse_json_input(text, f"input {index}" if len(args.inputs) > 1 else "the input")
            for index, text in enumerate(args.inputs, start=1)
        ]
    if args.file is not None and args.file != "-":
        try:
            with open(args.file, encoding="utf-8") as lines:
                return _parse_lines(lines, args.file)
        except OSError as error:
            raise CliError(f"cannot read {args.file}: {error.strerror or error}") from None
    if args.file is None and stdin.isatty():
        raise CliError(
            "no input: give a JSON input ('{\"n\": 1}'), --file FILE, or pipe one JSON per line"
        )
    return _parse_lines(stdin, "standard input")


def _parse_lines(lines: Iterable[str], source: str) -> list[Any]:
    inputs = [
        parse_json_input(line, f"line {number} of {source}")
        for number, line in enumerate(lines, start=1)
        if line.strip()
    ]
    if not inputs:
        raise CliError(f"no input in {source}: expected one JSON value per line")
    return inputs


async def run_submit(args: argparse.Namespace) -> int:
    """Submit the inputs as one batch; print ids, or with --wait the outputs."""
    inputs = read_inputs(args, sys.stdin)
    if args.unique_key is not None and len(inputs) > 1:
        raise CliError(
            f"--unique-key gives one job its key, but there are {len(inputs)} inputs: "
            "submit them one at a time, each with its own key",
            exit_code=2,
        )
    target = target_from(args.storage, args.queue)
    async with opened_queue(target) as storage:
        client: JobQueueClient[Any, Any] = JobQueueClient(
            storage=storage, poll_interval_ms=args.poll_interval * 1000
        )
        if not args.wait:
            _print_added(await _submit(client, inputs, args), args)
            return 0
        # Listen before submitting: events of a fast job may come before the ids do.
        await client.connect()
        early = EarlyEvents(client)
        try:
            added = await _submit(client, inputs, args)
            _report_unique_key(added, args)
            results = await _wait_all(client, added, early, args)
        finally:
            early.close()
            await client.disconnect()
    return _print_results(results, as_json=args.json)


class EarlyEvents:
    """Job start and progress events, kept from before the submitted ids are known."""

    def __init__(self, client: JobQueueClient[Any, Any]) -> None:
        self.kept: list[tuple[int, tuple[Any, ...]]] = []
        self.display: ProgressDisplay | None = None
        self.ids: set[int] = set()
        self._removers = [
            client.on(EventName.JOB_START, lambda _queue, job_id: self._route(job_id, ())),
            client.on(
                EventName.JOB_PROGRESS,
                lambda _queue, job_id, progress, message, _details: self._route(
                    job_id, (progress, message)
                ),
            ),
        ]

    def _route(self, job_id: int, progress: tuple[Any, ...]) -> None:
        if self.display is None:
            self.kept.append((job_id, progress))
        elif job_id in self.ids:
            if progress:
                self.display.update(job_id, *progress)
            else:
                self.display.started(job_id)

    def attach(self, display: ProgressDisplay, ids: list[int]) -> None:
        """Show what came so far for these jobs, then every event as it comes."""
        self.display, self.ids = display, set(ids)
        kept, self.kept = self.kept, []
        for job_id, progress in kept:
            self._route(job_id, progress)

    def close(self) -> None:
        """Stop listening."""
        for remove in self._removers:
            remove()


async def _submit(
    client: JobQueueClient[Any, Any], inputs: list[Any], args: argparse.Namespace
) -> list[Added]:
    now = utcnow()
    try:
        handles = await client.submit_batch(
            inputs,
            max_retries=args.max_retries,
            job_run_id=args.run_id,
            run_after=now + timedelta(seconds=args.delay) if args.delay else None,
            deadline_at=now + timedelta(seconds=args.deadline) if args.deadline else None,
            kind=args.kind,
            priority=args.priority,
            unique_keys=None if args.unique_key is None else [args.unique_key],
            metadata=args.metadata,
            timeout_ms=args.timeout_ms,
            depends_on=args.depends_on,
        )
    except (TypeError, ValueError) as error:
        raise CliError(f"invalid input: {error}") from None
    except JobNotFoundError as error:
        raise CliError(f"--depends-on: {error}") from None
    return [Added(handle.id, handle.created) for handle in handles]


def _print_added(added: Sequence[Added], args: argparse.Namespace) -> None:
    """The ids on stdout: of the stored jobs, or of those found by unique key (either
    way the job to follow)."""
    if args.json:
        print_json([{"id": job_id, "created": created} for job_id, created in added])
        return
    for job_id, _created in added:
        print_line(str(job_id))
    _report_unique_key(added, args)


def _report_unique_key(added: Sequence[Added], args: argparse.Namespace) -> None:
    """On stderr (so stdout stays the ids), whether a job was stored or found by its key."""
    if args.unique_key is None or args.json:
        return
    for job_id, created in added:
        if created:
            line = f"job {job_id}: created with unique key {args.unique_key!r}"
        else:
            line = (
                f"job {job_id}: already in the queue with unique key {args.unique_key!r}; "
                "nothing stored"
            )
        print_line(line, stream=sys.stderr)


async def _wait_all(
    client: JobQueueClient[Any, Any],
    added: list[Added],
    early: EarlyEvents,
    args: argparse.Namespace,
) -> list[JobResult]:
    ids = [job_id for job_id, _created in added]
    display = make_display(ids, quiet=args.quiet)
    early.attach(display, ids)
    try:
        with display:
            waits = [_wait_one(client, job_id, created, display) for job_id, created in added]
            async with asyncio.timeout(args.timeout):
                return list(await asyncio.gather(*waits))
    except TimeoutError:
        raise CliError(
            f"gave up waiting after {args.timeout:g} s; the jobs keep running "
            f"(see: pyjobqueue jobs --run-id, pyjobqueue show {ids[0]})"
        ) from None
    except asyncio.CancelledError:
        print_line("stopped waiting; the jobs keep running", stream=sys.stderr)
        raise


async def _wait_one(
    client: JobQueueClient[Any, Any], job_id: int, created: bool, display: ProgressDisplay
) -> JobResult:
    try:
        output = await client.wait_for(job_id)
    except JobDisabledError as error:
        result = JobResult(
            job_id, "DISABLED", error=str(error), error_code=type(error).__name__, created=created
        )
    except JobError as error:
        code = _stored_code(await client.get_job(job_id)) or type(error).__name__
        result = JobResult(job_id, "FAILED", error=str(error), error_code=code, created=created)
    else:
        result = JobResult(job_id, "COMPLETED", output=output, created=created)
    display.finished(job_id, result.status, result.error)
    return result


def _stored_code(job: Any) -> str | None:
    # wait_for raises JobError for codes of user exceptions; the record keeps the real name.
    return None if job is None else job.error_code


def _print_results(results: list[JobResult], *, as_json: bool) -> int:
    if as_json:
        print_json([result.as_json() for result in results])
    else:
        for result in results:
            if result.status == "COMPLETED":
                print_line(json.dumps(result.output, ensure_ascii=False))
            else:
                message = (
                    f"job {result.id} {result.status.lower()}: {result.error_code}: {result.error}"
                )
                print_line(message, stream=sys.stderr)
    failed = any(result.status != "COMPLETED" for result in results)
    return EXIT_JOB_FAILED if failed else 0
