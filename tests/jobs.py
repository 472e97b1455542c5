"""Job classes the behaviour suites run, steered by their input and a per-test probe."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import datetime
from typing import Any

from pyjobqueue import (
    AbortSignalJobError,
    Job,
    JobContext,
    JobSnooze,
    PermanentJobError,
    RetryableJobError,
)
from pyjobqueue._json import fingerprint


@dataclasses.dataclass
class Probe:
    """What a test sees of its jobs: runs, starts, and gates the jobs wait on."""

    key: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    runs: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # (job id, attempt)
    started_at: list[datetime] = dataclasses.field(default_factory=list)
    running: int = 0
    most_running: int = 0
    gate: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    started: asyncio.Queue[int] = dataclasses.field(default_factory=asyncio.Queue)
    signals_seen: list[str] = dataclasses.field(default_factory=list)


PROBES: dict[str, Probe] = {}


def new_job(input: Any = None, **fields: Any) -> Job[Any, Any]:
    """A job record to store directly (the storage suites): input {"n": 1} by default,
    with its fingerprint."""
    value = {"n": 1} if input is None else input
    return Job(input=value, fingerprint=fingerprint(value), **fields)


def new_probe() -> Probe:
    probe = Probe()
    PROBES[probe.key] = probe
    return probe


class ScriptedJob(Job[dict[str, Any], Any]):
    """Does what its input says: succeed, fail in a given way, wait for the gate..."""

    async def execute(self, input: dict[str, Any], context: JobContext) -> Any:
        probe = PROBES[input["probe"]]
        job = context.job
        assert job.id is not None
        probe.runs.append((job.id, job.run_attempts))
        probe.started_at.append(datetime.now().astimezone())
        probe.running += 1
        probe.most_running = max(probe.most_running, probe.running)
        probe.started.put_nowait(job.id)
        try:
            return await self._act(input, context, probe)
        finally:
            probe.running -= 1

    async def _act(self, input: dict[str, Any], context: JobContext, probe: Probe) -> Any:
        mode = input.get("mode", "echo")
        action = getattr(self, f"_{mode}", None)
        if action is None:
            raise AssertionError(f"unknown mode {mode}")
        return await action(input, context, probe)

    async def _echo(self, input: dict[str, Any], context: JobContext, probe: Probe) -> Any:
        return {"echo": input.get("value"), "attempt": context.job.run_attempts}

    async def _progress(self, input: dict[str, Any], context: JobContext, probe: Probe) -> Any:
        for value in input["steps"]:
            await context.update_progress(value, f"at {value}", {"step": value})
        return "done"

    async def _wait_gate(self, input: dict[str, Any], context: JobContext, probe: Probe) -> Any:
        await probe.gate.wait()
        return {"released": True}

    async def _wait_abort(self, input: dict[str, Any], context: JobContext, probe: Probe) -> Any:
        probe.signals_seen.append(await context.signal.wait())
        raise AbortSignalJobError("stopped on request")

    async def _ignore_abort(self, input: dict[str, Any], context: JobContext, probe: Probe) -> Any:
        """Keeps going after the abort signal, until the gate opens."""
        context.signal.add_listener(probe.signals_seen.append)
        try:
            await probe.gate.wait()
        except asyncio.CancelledError:
            probe.signals_seen.append("cancelled")
            raise
        return "finished anyway"

    async def _retry_until(self, input: dict[str, Any], context: JobContext, probe: Probe) -> Any:
        attempt = context.job.run_attempts
        if attempt < input["succeed_on"]:
            raise RetryableJobError(f"attempt {attempt} failed")
        return {"attempt": attempt}

    async def _retry_at(self, input: dict[str, Any], context: JobContext, probe: Probe) -> Any:
        if context.job.run_attempts == 1:
            raise RetryableJobError("come back later", datetime.fromisoformat(input["at"]))
        return {"attempt": context.job.run_attempts}

    async def _permanent(self, input: dict[str, Any], context: JobContext, probe: Probe) -> Any:
        raise PermanentJobError("this cannot work")

    async def _fail_first(self, input: dict[str, Any], context: JobContext, probe: Probe) -> Any:
        if len(probe.runs) == 1:
            raise ValueError("first run fails")
        return {"runs": len(probe.runs)}

    async def _crash(self, input: dict[str, Any], context: JobContext, probe: Probe) -> Any:
        raise ValueError("bad value inside the job")

    async def _key_error(self, input: dict[str, Any], context: JobContext, probe: Probe) -> Any:
        """The mistake of a new user: a missing key."""
        return {"value": input["zz"]}

    async def _snooze(self, input: dict[str, Any], context: JobContext, probe: Probe) -> Any:
        """Snoozes until it has run `times` times (attempts are given back each time)."""
        if len(probe.runs) <= input["times"]:
            raise JobSnooze(input["seconds"])
        return {"runs": len(probe.runs), "attempt": context.job.run_attempts}

    async def _metadata(self, input: dict[str, Any], context: JobContext, probe: Probe) -> Any:
        return {"metadata": context.job.metadata, "kind": context.job.kind}

    async def _bad_output(self, input: dict[str, Any], context: JobContext, probe: Probe) -> Any:
        return {"when": object()}

    async def _output_past_limits(
        self, input: dict[str, Any], context: JobContext, probe: Probe
    ) -> Any:
        nested: Any = "deep"
        for _ in range(2_000):
            nested = [nested]
        kinds = {"deep": nested, "surrogate": "a\udc80b", "huge": 10**5_000}
        return {"value": kinds[input["kind"]]}


ResizeOutput = dict[str, Any]


class Resize(Job[dict[str, Any], ResizeOutput]):
    """A job class with a kind of its own: says which class ran it."""

    kind = "resize"

    async def execute(self, input: dict[str, Any], context: JobContext) -> ResizeOutput:
        return {"ran": "resize", "width": input.get("width"), "kind": context.job.kind}


class SendEmail(Job[dict[str, Any], str]):
    """A job class whose kind is its name."""

    async def execute(self, input: dict[str, Any], context: JobContext) -> str:
        return f"sent to {input.get('to')}"


class PatientJob(ScriptedJob):
    """A scripted job with a class timeout."""

    kind = "patient"
    timeout_ms = 60


class PolicyJob(ScriptedJob):
    """A scripted job with a retry policy: 120 ms, then 240 ms, no jitter; KeyError retries."""

    kind = "policy"
    retry_delay_ms = 120
    retry_backoff = 2.0
    retry_jitter = 0.0
    retry_on = (KeyError,)
