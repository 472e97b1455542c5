"""Jobs that command-line tests start workers with (`cli_jobs:Steps` and so on).

Tests coordinate with jobs through files, since the jobs run in another process: a
job told to wait for a gate file polls for it, and the test creates it.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import Any

from pyjobqueue import AbortSignalJobError, Job, JobContext, Schedule, job

GATE_POLL_SECONDS = 0.02


class Steps(Job[dict[str, Any], dict[str, Any]]):
    """Reports each progress value of input["steps"], then returns the doubled input["n"]."""

    async def execute(self, input: dict[str, Any], context: JobContext) -> dict[str, Any]:
        for value in input.get("steps", []):
            await context.update_progress(value, f"at {value}")
        return {"doubled": input.get("n", 0) * 2}


class Gated(Job[dict[str, Any], dict[str, Any]]):
    """Runs until the file input["gate"] exists; stops early when aborted."""

    async def execute(self, input: dict[str, Any], context: JobContext) -> dict[str, Any]:
        await context.update_progress(10, "waiting for the gate")
        while not os.path.exists(input["gate"]):
            if context.signal.aborted:
                raise AbortSignalJobError(f"aborted: {context.signal.reason}")
            await asyncio.sleep(GATE_POLL_SECONDS)
        return {"gate": "opened", "attempt": context.job.run_attempts}


class GatedSteps(Job[dict[str, Any], dict[str, Any]]):
    """For each value of input["steps"]: waits for the file of that name in the directory
    input["gates"], then reports it as progress; stops early when aborted."""

    async def execute(self, input: dict[str, Any], context: JobContext) -> dict[str, Any]:
        for value in input["steps"]:
            gate = os.path.join(input["gates"], str(value))
            while not os.path.exists(gate):
                if context.signal.aborted:
                    raise AbortSignalJobError(f"aborted: {context.signal.reason}")
                await asyncio.sleep(GATE_POLL_SECONDS)
            await context.update_progress(value, f"passed gate {value}")
        return {"gates": len(input["steps"]), "attempt": context.job.run_attempts}


class Fails(Job[dict[str, Any], None]):
    """Always fails with a ValueError carrying input["message"]."""

    async def execute(self, input: dict[str, Any], context: JobContext) -> None:
        raise ValueError(input.get("message", "failed on purpose"))


class Flaky(Job[dict[str, Any], Any]):
    """Looks up input["key"] in an empty dict: a KeyError, which it retries an hour later."""

    retry_on = (KeyError,)
    retry_delay_ms = 3_600_000

    async def execute(self, input: dict[str, Any], context: JobContext) -> Any:
        empty: dict[str, Any] = {}
        return empty[input.get("key", "zz")]


class AlsoSteps(Job[dict[str, Any], dict[str, Any]]):
    """Of the kind of Steps: one worker cannot run both."""

    kind = "Steps"

    async def execute(self, input: dict[str, Any], context: JobContext) -> dict[str, Any]:
        return {}


@job
async def echo(input: Any, context: JobContext) -> Any:
    """A function job: returns its input."""
    return input


@job(kind="shout")
async def upper(input: str, context: JobContext) -> str:
    """A function job of kind "shout": its input in capitals."""
    return input.upper()


NOT_A_JOB = 42


class NotAJob:
    """A class that is not a Job."""


class Tick(Job[Any, str]):
    """Run by a schedule: returns the tick it was enqueued for."""

    kind = "tick"

    async def execute(self, input: Any, context: JobContext) -> str:
        return str(context.job.metadata["tick"])


SCHEDULES = [Schedule("every-second", kind=Tick, every=timedelta(seconds=1))]
