"""The anywidget behind `client.widget()`: rows from the client's events, abort buttons.

Imported only through `pyjobqueue.notebook.job_widget`, which turns a missing anywidget
into a clear ImportError. The storage is read when the widget is made, and once for a
job it learns of from an event or a submit; progress and status then come from events.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from ._platform import IN_PYODIDE
from .events import JOB_EVENTS
from .job import JobStatus
from .notebook import JobTable

if TYPE_CHECKING:
    from .client import JobQueueClient

logger = logging.getLogger(__name__)

# Read when the widget is made: the newest jobs of each status.
SHOWN_STATUSES = tuple(JobStatus)

ESM = """
const ACTIVE = new Set(["PENDING", "PROCESSING"]);
const COLUMNS = ["id", "kind", "status", "progress", "message", ""];

// One row per job, made once and updated in place: a button under the pointer stays
// the same element however many progress events arrive.
function newRow(jobId, model) {
  const tr = document.createElement("tr");
  tr.dataset.jobId = String(jobId);
  const cells = {};
  for (const name of ["id", "kind", "status", "progress", "message", "actions"]) {
    cells[name] = tr.insertCell();
    cells[name].className = "pjq-" + name;
  }
  cells.id.textContent = String(jobId);
  const bar = document.createElement("progress");
  bar.max = 100;
  const percent = document.createElement("span");
  cells.progress.append(bar, percent);
  const button = document.createElement("button");
  button.textContent = "Abort";
  button.className = "pjq-abort";
  button.addEventListener("click", () => {
    button.disabled = true;
    model.send({ type: "abort", job_id: jobId });
  });
  return { tr, cells, bar, percent, button };
}

function update(row, job) {
  row.tr.dataset.status = job.status;
  row.cells.kind.textContent = job.kind;
  row.cells.status.textContent = job.status;
  row.cells.status.className = "pjq-status pjq-" + job.status.toLowerCase();
  row.bar.value = job.progress;
  row.percent.textContent = " " + Math.round(job.progress) + "%";
  row.cells.message.textContent = job.error || job.message;
  const active = ACTIVE.has(job.status);
  if (active && !row.button.isConnected) row.cells.actions.appendChild(row.button);
  if (!active && row.button.isConnected) row.button.remove();
}

function render({ model, el }) {
  el.classList.add("pyjobqueue-jobs");
  const title = document.createElement("div");
  title.className = "pjq-title";
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  for (const name of COLUMNS) {
    const th = document.createElement("th");
    th.textContent = name;
    head.appendChild(th);
  }
  const body = table.createTBody();
  el.append(title, table);
  const rows = new Map();
  const draw = () => {
    const jobs = model.get("jobs");
    title.textContent = "queue " + model.get("queue_name") + ": " + jobs.length + " jobs";
    const shown = new Set(jobs.map((job) => job.id));
    for (const [jobId, row] of rows) {
      if (!shown.has(jobId)) {
        row.tr.remove();
        rows.delete(jobId);
      }
    }
    jobs.forEach((job, index) => {
      let row = rows.get(job.id);
      if (!row) {
        row = newRow(job.id, model);
        rows.set(job.id, row);
      }
      update(row, job);
      if (body.children[index] !== row.tr) body.insertBefore(row.tr, body.children[index] || null);
    });
  };
  model.on("change:jobs", draw);
  draw();
  return () => model.off("change:jobs", draw);
}

export default { render };
"""

CSS = """
.pyjobqueue-jobs table { border-collapse: collapse; font-size: 0.9em; }
.pyjobqueue-jobs th, .pyjobqueue-jobs td { padding: 2px 8px; text-align: left; }
.pyjobqueue-jobs .pjq-title { font-weight: bold; margin-bottom: 4px; }
.pyjobqueue-jobs .pjq-completed { color: #2e7d32; }
.pyjobqueue-jobs .pjq-failed { color: #c62828; }
.pyjobqueue-jobs .pjq-processing, .pyjobqueue-jobs .pjq-aborting { color: #1565c0; }
"""


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The kernel's event loop: ipykernel runs cells inside it; Pyodide's WebLoop is the
    thread's loop without being entered between cells."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    if IN_PYODIDE:
        return asyncio.get_event_loop()
    return None


class JobsWidget(anywidget.AnyWidget):
    """The queue's newest jobs with progress bars, status and abort buttons, live."""

    _esm = traitlets.Unicode(ESM).tag(sync=True)
    _css = traitlets.Unicode(CSS).tag(sync=True)
    jobs = traitlets.List(traitlets.Dict()).tag(sync=True)
    queue_name = traitlets.Unicode("").tag(sync=True)

    def __init__(self, client: JobQueueClient[Any, Any], table: JobTable) -> None:
        super().__init__(queue_name=client.queue_name)
        self.client = client
        self.table = table
        self.closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        # Jobs being read, with the events that came for them meanwhile.
        self._reading: dict[int, list[tuple[str, tuple[Any, ...]]]] = {}
        self._flush_scheduled = False
        self._unsubscribe: list[Callable[[], None]] = [
            client.on(name, functools.partial(self._on_event, str(name))) for name in JOB_EVENTS
        ]
        client.submit_taps.append(self._on_submitted)
        self.on_msg(self._on_message)
        self._spawn(self.refresh())

    # -- what the storage holds -------------------------------------------------------

    async def refresh(self) -> None:
        """Read the newest jobs of every status from the storage (on creation, or when
        asked: jobs submitted elsewhere show up by themselves once they start)."""
        for status in SHOWN_STATUSES:
            for job in await self.client.peek(status, self.table.limit):
                self.table.put(job)
        self._changed()

    async def _read(self, job_ids: Iterable[int]) -> None:
        for job_id in job_ids:
            try:
                job = await self.client.get_job(job_id)
            finally:
                early = self._reading.pop(job_id, [])
            if job is not None:
                self.table.put(job)
                for name, args in early:
                    self.table.apply(name, job_id, args)
        self._changed()

    # -- what the client says ---------------------------------------------------------

    def _on_event(self, name: str, queue_name: str, job_id: int, *args: Any) -> None:
        if job_id in self._reading:
            self._reading[job_id].append((name, args))
        elif self.table.apply(name, job_id, args):
            self._changed()
        else:  # submitted elsewhere: read it once
            self._reading[job_id] = [(name, args)]
            self._spawn(self._read([job_id]))

    def _on_submitted(self, job_ids: list[int]) -> None:
        fresh = [job_id for job_id in job_ids if job_id not in self.table]
        for job_id in fresh:
            self._reading.setdefault(job_id, [])
        self._spawn(self._read(fresh))

    def _on_message(self, widget: object, content: Any, buffers: object) -> None:
        if isinstance(content, dict) and content.get("type") == "abort":
            job_id = content.get("job_id")
            if isinstance(job_id, int) and not isinstance(job_id, bool):
                self._spawn(self.client.abort(job_id))

    # -- sending ----------------------------------------------------------------------

    def _changed(self) -> None:
        """Send the rows once per turn of the loop, however many events came in it."""
        if self._flush_scheduled or self.closed:
            return
        loop = running_loop()
        if loop is None:
            self._flush()
            return
        self._flush_scheduled = True
        loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self.closed:
            self.jobs = self.table.rows()

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        loop = running_loop()
        if loop is None:  # no event loop: `await widget.refresh()` fills it later
            work.close()
            return
        task = loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("job widget: %s", task.exception(), exc_info=task.exception())

    def close(self) -> None:
        """Stop following the client and close the widget's views."""
        if not self.closed:
            self.closed = True
            for unsubscribe in self._unsubscribe:
                unsubscribe()
            if self._on_submitted in self.client.submit_taps:
                self.client.submit_taps.remove(self._on_submitted)
            for task in list(self._tasks):
                task.cancel()
        super().close()
