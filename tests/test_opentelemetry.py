"""OpenTelemetry (SPEC section 9): the submit's span and each attempt's span are linked,
across processes. Both sides run in processes of their own, each with the SDK's
in-memory exporter, so that this test process never configures a global tracer."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from .children import child_environment

pytest.importorskip("opentelemetry.sdk")

SETUP = """
import asyncio, json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

def dump():
    spans = []
    for span in exporter.get_finished_spans():
        context = span.get_span_context()
        spans.append({
            "name": span.name,
            "kind": span.kind.name,
            "trace_id": format(context.trace_id, "032x"),
            "span_id": format(context.span_id, "016x"),
            "parent": format(span.parent.span_id, "016x") if span.parent else None,
            "links": [format(link.context.span_id, "016x") for link in span.links],
            "attributes": dict(span.attributes),
            "status": span.status.status_code.name,
        })
    print(json.dumps(spans))
"""

PRODUCER = (
    SETUP
    + """
from pyjobqueue import JobQueueClient
from pyjobqueue.storage import SqliteQueueStorage

async def main():
    async with SqliteQueueStorage(sys.argv[1], "traced") as storage:
        client = JobQueueClient(storage=storage)
        await client.submit({"n": 1}, kind="traced", metadata={"tenant": "a"})
        await client.submit({"fail": True}, kind="traced", max_retries=0)

asyncio.run(main())
dump()
"""
)

WORKER = (
    SETUP
    + """
from pyjobqueue import Job, JobQueueClient, JobQueueServer
from pyjobqueue.contrib.opentelemetry import TracingMiddleware
from pyjobqueue.storage import SqliteQueueStorage

class Traced(Job[dict, dict]):
    kind = "traced"
    async def execute(self, input, context):
        if input.get("fail"):
            raise ValueError("no")
        return {"ok": True}

async def main():
    async with SqliteQueueStorage(sys.argv[1], "traced") as storage:
        server = JobQueueServer(Traced, storage=storage, middleware=[TracingMiddleware()])
        async with server:
            client = JobQueueClient(storage=storage)
            client.attach(server)
            await client.wait_for(1, timeout=30)
            try:
                await client.wait_for(2, timeout=30)
            except Exception:
                pass
            job = await client.get_job(1)
            assert job.metadata["tenant"] == "a" and "traceparent" in job.metadata

asyncio.run(main())
dump()
"""
)


def run(tmp_path: Path, name: str, code: str, database: Path) -> list[dict[str, Any]]:
    script = tmp_path / name
    script.write_text(textwrap.dedent(code), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script), str(database)],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_environment(),
    )
    assert result.returncode == 0, result.stderr
    spans: list[dict[str, Any]] = json.loads(result.stdout.strip().splitlines()[-1])
    return spans


def test_each_attempt_span_is_linked_to_its_submit_span_across_processes(
    tmp_path: Path,
) -> None:
    database = tmp_path / "jobs.db"
    submits = run(tmp_path, "producer.py", PRODUCER, database)
    attempts = run(tmp_path, "worker.py", WORKER, database)
    assert [span["name"] for span in submits] == ["pyjobqueue submit traced"] * 2
    assert all(span["kind"] == "PRODUCER" for span in submits)
    runs = [span for span in attempts if span["name"] == "pyjobqueue run traced"]
    assert len(runs) == 2
    for submit, attempt in zip(submits, runs, strict=True):
        assert attempt["kind"] == "CONSUMER"
        assert attempt["links"] == [submit["span_id"]]
        assert attempt["parent"] == submit["span_id"]
        assert attempt["trace_id"] == submit["trace_id"]
        assert attempt["attributes"]["messaging.destination.name"] == "traced"
        assert attempt["attributes"]["pyjobqueue.attempt"] == 1
    assert runs[0]["status"] == "UNSET" and runs[1]["status"] == "ERROR"
    assert runs[0]["attributes"]["messaging.message.id"] == "1"
