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
from ..errors import JobDisabledError, JobError
from ..events import EventName
from ..job import utcnow
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

    def as_json(self) -> dict[str, Any]:
        """The result for --json: output for a completed job, error fields otherwise."""
        if self.status == "COMPLETED":
            return {"id": self.id, "status": self.status, "output": self.output}
        return {
            "id": self.id,
            "status": self.status,
            "error": self.error,
            "error_code": self.error_code,
        }


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
    target = target_from(args.storage, args.queue)
    async with opened_queue(target) as storage:
        client: JobQueueClient[Any, Any] = JobQueueClient(
            storage=storage, poll_interval_ms=args.poll_interval * 1000
        )
        if not args.wait:
            _print_ids(await _submit(client, inputs, args), as_json=args.json)
            return 0
        # Listen before submitting: events of a fast job may come before the ids do.
        await client.connect()
        early = EarlyEvents(client)
        try:
            ids = await _submit(client, inputs, args)
            results = await _wait_all(client, ids, early, args)
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
) -> list[int]:
    now = utcnow()
    try:
        handles = await client.submit_batch(
            inputs,
            max_retries=args.max_retries,
            job_run_id=args.run_id,
            run_after=now + timedelta(seconds=args.delay) if args.delay else None,
            deadline_at=now + timedelta(seconds=args.deadline) if args.deadline else None,
        )
    except (TypeError, ValueError) as error:
        raise CliError(f"invalid input: {error}") from None
    return [handle.id for handle in handles]


def _print_ids(ids: Sequence[int], *, as_json: bool) -> None:
    if as_json:
        print_json([{"id": job_id} for job_id in ids])
    else:
        for job_id in ids:
            print_line(str(job_id))


async def _wait_all(
    client: JobQueueClient[Any, Any],
    ids: list[int],
    early: EarlyEvents,
    args: argparse.Namespace,
) -> list[JobResult]:
    display = make_display(ids, quiet=args.quiet)
    early.attach(display, ids)
    try:
        with display:
            waits = [_wait_one(client, job_id, display) for job_id in ids]
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
    client: JobQueueClient[Any, Any], job_id: int, display: ProgressDisplay
) -> JobResult:
    try:
        output = await client.wait_for(job_id)
    except JobDisabledError as error:
        result = JobResult(job_id, "DISABLED", error=str(error), error_code=type(error).__name__)
    except JobError as error:
        code = _stored_code(await client.get_job(job_id)) or type(error).__name__
        result = JobResult(job_id, "FAILED", error=str(error), error_code=code)
    else:
        result = JobResult(job_id, "COMPLETED", output=output)
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
