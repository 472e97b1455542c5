"""The notebook widget: rows kept from the client's events, abort from the view, and a
pyjobqueue that imports without anywidget."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pyjobqueue import (
    AbortSignalJobError,
    Job,
    JobContext,
    JobQueueClient,
    JobQueueServer,
    JobStatus,
)
from pyjobqueue.notebook import JobTable, job_widget
from pyjobqueue.storage import InMemoryQueueStorage
from tests.children import ROOT, child_environment

WAIT = 10.0


class Gated(Job[dict[str, Any], str]):
    """Reports 50% progress, then waits for the test's gate (or an abort)."""

    gates: dict[str, asyncio.Event] = {}  # noqa: RUF012  # shared by the test and the job

    async def execute(self, input: dict[str, Any], context: JobContext) -> str:
        await context.update_progress(50, "half way")
        gate = self.gates[input["gate"]]
        aborted = asyncio.ensure_future(context.signal.wait())
        opened = asyncio.ensure_future(gate.wait())
        await asyncio.wait({aborted, opened}, return_when=asyncio.FIRST_COMPLETED)
        aborted.cancel()
        opened.cancel()
        if context.signal.aborted:
            raise AbortSignalJobError(context.signal.reason or "aborted")
        return f"done {input['gate']}"


@pytest.fixture
async def queue() -> AsyncIterator[tuple[JobQueueClient[Any, Any], JobQueueServer[Any, Any]]]:
    storage = InMemoryQueueStorage("widget")
    async with storage, JobQueueServer(Gated, storage=storage, worker_count=2) as server:
        client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage)
        client.attach(server)
        yield client, server


async def rows_until(widget: Any, check: Callable[[list[dict[str, Any]]], bool]) -> None:
    """Wait until the widget's synced rows pass `check` (woken by each change of them)."""
    changed = asyncio.Event()

    def note(_: object) -> None:
        changed.set()

    widget.observe(note, names="jobs")
    try:
        async with asyncio.timeout(WAIT):
            while not check(widget.jobs):
                changed.clear()
                await changed.wait()
    finally:
        widget.unobserve(note, names="jobs")


def row_of(rows: list[dict[str, Any]], job_id: int) -> dict[str, Any] | None:
    return next((row for row in rows if row["id"] == job_id), None)


def has(job_id: int, **fields: Any) -> Callable[[list[dict[str, Any]]], bool]:
    def check(rows: list[dict[str, Any]]) -> bool:
        row = row_of(rows, job_id)
        return row is not None and all(row[name] == value for name, value in fields.items())

    return check


async def test_widget_follows_progress_and_completion_from_events(
    queue: tuple[JobQueueClient[Any, Any], JobQueueServer[Any, Any]],
) -> None:
    client, _ = queue
    Gated.gates["a"] = asyncio.Event()
    widget = client.widget()
    assert client.widget() is widget  # one per client
    handle = await client.submit({"gate": "a"})
    await rows_until(widget, has(handle.id, status="PROCESSING", progress=50.0))
    assert row_of(widget.jobs, handle.id) == {
        "id": handle.id,
        "kind": "",
        "status": "PROCESSING",
        "progress": 50.0,
        "message": "half way",
        "error": "",
        "finished": False,
    }
    Gated.gates["a"].set()
    assert await handle.wait_for() == "done a"
    await rows_until(widget, has(handle.id, status="COMPLETED", progress=100.0, finished=True))
    widget.close()


async def test_widget_shows_stored_jobs_and_jobs_it_learns_of_from_events(
    queue: tuple[JobQueueClient[Any, Any], JobQueueServer[Any, Any]],
) -> None:
    client, server = queue
    Gated.gates["b"] = asyncio.Event()
    Gated.gates["b"].set()
    earlier = await client.submit({"gate": "b"})
    await earlier.wait_for()
    # A second client on the same server submits: this widget's client did not.
    other: JobQueueClient[Any, Any] = JobQueueClient(storage=client.storage)
    other.attach(server)
    widget = job_widget(client, limit=5)
    await rows_until(widget, has(earlier.id, status="COMPLETED"))
    Gated.gates["c"] = asyncio.Event()
    later = await other.submit({"gate": "c"})
    await rows_until(widget, has(later.id, status="PROCESSING", progress=50.0))
    Gated.gates["c"].set()
    await rows_until(widget, has(later.id, status="COMPLETED"))
    assert [row["id"] for row in widget.jobs] == [later.id, earlier.id]
    assert job_widget(client, limit=5) is widget
    wider = job_widget(client, limit=6)
    assert wider is not widget and widget.closed and not wider.closed
    assert widget._on_submitted not in client.submit_taps
    wider.close()


async def test_abort_message_from_the_view_aborts_the_job(
    queue: tuple[JobQueueClient[Any, Any], JobQueueServer[Any, Any]],
) -> None:
    client, _ = queue
    Gated.gates["d"] = asyncio.Event()
    widget = client.widget()
    handle = await client.submit({"gate": "d"})
    await rows_until(widget, has(handle.id, status="PROCESSING"))
    # What the view's abort button sends (the Playwright test clicks the real one).
    widget._on_message(widget, {"type": "abort", "job_id": handle.id}, [])
    await rows_until(widget, has(handle.id, status="FAILED", finished=True))
    job = await client.get_job(handle.id)
    assert job is not None and job.status is JobStatus.FAILED
    # Messages that are not an abort of a job id change nothing.
    before = (list(widget.jobs), set(widget._tasks))
    widget._on_message(widget, {"type": "abort", "job_id": "1"}, [])
    widget._on_message(widget, ["abort"], [])
    assert (list(widget.jobs), set(widget._tasks)) == before
    widget.close()
    assert widget._on_submitted not in client.submit_taps


def test_table_keeps_the_newest_jobs_and_ignores_events_older_than_a_finished_read() -> None:
    table = JobTable(limit=2)
    for job_id in (1, 2, 3):
        table.put(Job(input={}, id=job_id))
    assert [row["id"] for row in table.rows()] == [3, 2]
    assert table.apply("job_progress", 3, (40.0, "reading", None))
    assert table.rows()[0]["status"] == "PROCESSING"  # progress: it started
    assert table.apply("job_error", 3, ("boom",))
    assert table.apply("job_progress", 3, (60.0, "late", None))  # older than the error
    assert table.rows()[0] | {} == {
        "id": 3,
        "kind": "",
        "status": "FAILED",
        "progress": 40.0,
        "message": "reading",
        "error": "boom",
        "finished": True,
    }
    table.put(Job(input={}, id=3, status=JobStatus.PROCESSING))  # a stale read
    assert table.rows()[0]["status"] == "FAILED"
    assert not table.apply("job_start", 9, ())
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="limit must be a positive integer"):
            JobTable(bad)  # type: ignore[arg-type]


def test_pyjobqueue_imports_without_anywidget_and_the_widget_says_what_to_install() -> None:
    script = """
import sys
class NoAnywidget:
    def find_spec(self, name, path=None, target=None):
        if name == "anywidget" or name.startswith("anywidget."):
            raise ImportError("No module named 'anywidget'")
        return None
sys.meta_path.insert(0, NoAnywidget())
import pyjobqueue, pyjobqueue.notebook
from pyjobqueue.storage import InMemoryQueueStorage
client = pyjobqueue.JobQueueClient(storage=InMemoryQueueStorage("q"))
assert client._repr_mimebundle_() is None
try:
    client.widget()
except ImportError as error:
    print(error)
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=child_environment(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == (
        "the job widget needs anywidget: pip install 'pyjobqueue[notebook]'"
    )
    assert "anywidget" not in result.stderr
