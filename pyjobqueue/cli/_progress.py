"""Progress of waited-for jobs on stderr: live bars on a terminal, plain lines in a pipe."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING

from ._render import print_line, shorten, terminal_console

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

# With more jobs than this, bars show only for running jobs (and one for the batch).
MAX_BARS = 12
MESSAGE_LIMIT = 60


class ProgressDisplay:
    """Shows nothing (--quiet); the other displays override what they show."""

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def started(self, job_id: int) -> None:
        """A job began an attempt."""

    def update(self, job_id: int, progress: float, message: str) -> None:
        """A job reported progress."""

    def finished(self, job_id: int, status: str, error: str | None) -> None:
        """A job ended."""


class LineDisplay(ProgressDisplay):
    """One line on stderr per change: what logs and CI output want."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = set(ids)

    def started(self, job_id: int) -> None:
        if job_id in self.ids:
            print_line(f"job {job_id}: started", stream=sys.stderr)

    def update(self, job_id: int, progress: float, message: str) -> None:
        text = shorten(f"{progress:.0f}% {message}".strip(), MESSAGE_LIMIT)
        print_line(f"job {job_id}: {text}", stream=sys.stderr)

    def finished(self, job_id: int, status: str, error: str | None) -> None:
        print_line(f"job {job_id}: {status}", stream=sys.stderr)


class BarDisplay(ProgressDisplay):
    """Live progress bars (rich) on the terminal behind stderr."""

    def __init__(self, console: Console, ids: list[int]) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress: Progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[message]}", markup=False),
            console=console,
            transient=False,
        )
        self.ids = ids
        self.every_job = len(ids) <= MAX_BARS
        self.tasks: dict[int, TaskID] = {}
        self.batch: TaskID | None = None
        if len(ids) > 1:
            self.batch = self.progress.add_task(
                f"{len(ids)} jobs", total=len(ids), message="", start=True
            )
        if self.every_job:
            for job_id in ids:
                self._task(job_id)

    def __enter__(self) -> ProgressDisplay:
        self.progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def _task(self, job_id: int) -> TaskID:
        task = self.tasks.get(job_id)
        if task is None:
            task = self.progress.add_task(f"job {job_id}", total=100, message="pending")
            self.tasks[job_id] = task
        return task

    def started(self, job_id: int) -> None:
        if job_id in self.ids:
            self.progress.update(self._task(job_id), message="running")

    def update(self, job_id: int, progress: float, message: str) -> None:
        text = shorten(message, MESSAGE_LIMIT) or "running"
        self.progress.update(self._task(job_id), completed=progress, message=text)

    def finished(self, job_id: int, status: str, error: str | None) -> None:
        if self.batch is not None:
            self.progress.advance(self.batch)
        if not self.every_job:
            task = self.tasks.pop(job_id, None)
            if task is not None:
                self.progress.remove_task(task)
            return
        task = self._task(job_id)
        if status == "COMPLETED":
            self.progress.update(task, completed=100, message="done")
        else:
            reason = shorten(error or "", MESSAGE_LIMIT)
            self.progress.update(
                task, description=f"[red]job {job_id}[/]", message=f"{status.lower()}: {reason}"
            )
        self.progress.stop_task(task)


def make_display(ids: list[int], *, quiet: bool) -> ProgressDisplay:
    """Bars on a terminal, lines in a pipe, nothing with --quiet."""
    if quiet:
        return ProgressDisplay()
    console = terminal_console(sys.stderr)
    if console is None:
        return LineDisplay(ids)
    return BarDisplay(console, ids)
