"""Output: rich tables on a terminal, aligned plain text in pipes, pure JSON with --json.

rich is imported only here and only when output goes to a terminal, so scripts (and
`--json`) work without it and `import pyjobqueue` never loads it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from ..job import Job, utcnow

if TYPE_CHECKING:
    from rich.console import Console

COLUMN_GAP = "  "
PLAIN_CELL_LIMIT = 80  # pipes get whole lines, but one huge input should not swamp a table
STATUS_STYLES = {
    "PENDING": "cyan",
    "PROCESSING": "yellow",
    "ABORTING": "magenta",
    "COMPLETED": "green",
    "FAILED": "red",
    "DISABLED": "dim",
}


def terminal_console(stream: IO[str] | None = None) -> Console | None:
    """A rich Console writing to `stream` when it is a terminal and rich is installed."""
    stream = stream or sys.stdout
    if not stream.isatty():
        return None  # pipes get plain text, without even importing rich
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(file=stream, highlight=False)


def print_json(value: Any) -> None:
    """Pure JSON on stdout (for scripts), nothing else."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def compact_json(value: Any, limit: int | None = None) -> str:
    """One-line JSON, cut to `limit` characters with an ellipsis."""
    return cut(json.dumps(value, ensure_ascii=False, separators=(",", ":")), limit)


def shorten(text: str, limit: int | None) -> str:
    """`text` on one line (runs of whitespace as one space), cut to `limit` characters."""
    return cut(" ".join(text.split()), limit)


def cut(text: str, limit: int | None) -> str:
    """`text` cut to `limit` characters, the last one an ellipsis."""
    if limit is not None and len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def age(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago, briefly: '12s ago', '5m ago', '3h ago', '2d ago'; 'in 5m' ahead."""
    if moment is None:
        return "-"
    seconds = ((now or utcnow()) - moment).total_seconds()
    ahead = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            amount = f"{int(seconds // size)}{unit}"
            break
    else:
        amount = f"{int(seconds)}s"
    return f"in {amount}" if ahead else f"{amount} ago"


def job_detail(job: Job[Any, Any], limit: int | None = None) -> str:
    """The most telling thing about a job: its error, its output, or its input."""
    if job.error:
        code = f"{job.error_code}: " if job.error_code else ""
        return shorten(f"{code}{job.error}", limit)
    if job.unreadable is not None:
        return shorten(job.unreadable, limit)
    if job.status.value == "COMPLETED":
        return "→ " + compact_json(job.output, None if limit is None else limit - 2)
    return compact_json(job.input, limit)


def print_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    status_column: int | None = None,
) -> None:
    """A table on stdout: rich on a terminal, aligned plain columns otherwise."""
    console = terminal_console()
    if console is None:
        _plain_table(columns, rows, title)
        return
    from rich.table import Table
    from rich.text import Text

    if title:
        # Above the table, not as its title: a long storage URL would wrap to its width.
        console.print(Text(title, style="bold"))
    table = Table(header_style="bold")
    for index, column in enumerate(columns):
        last = index == len(columns) - 1
        table.add_column(
            column.upper(), overflow="ellipsis", no_wrap=not last, ratio=1 if last else None
        )
    for row in rows:
        # Text, not markup: a job's input may well contain square brackets.
        cells = [Text(cell) for cell in row]
        if status_column is not None:
            cells[status_column].stylize(STATUS_STYLES.get(row[status_column], ""))
        table.add_row(*cells)
    console.print(table)


def _plain_table(columns: Sequence[str], rows: Sequence[Sequence[str]], title: str | None) -> None:
    header = [column.upper() for column in columns]
    cells = [[shorten(cell, PLAIN_CELL_LIMIT) for cell in row] for row in rows]
    widths = [max(len(line[index]) for line in [header, *cells]) for index in range(len(header))]
    out = sys.stdout
    if title:
        out.write(title + "\n")
    for line in [header, *cells]:
        padded = COLUMN_GAP.join(
            cell.ljust(width) for cell, width in zip(line, widths, strict=True)
        )
        out.write(padded.rstrip() + "\n")
    out.flush()


def print_fields(fields: Sequence[tuple[str, str]], *, title: str | None = None) -> None:
    """Name / value pairs on stdout, one per line (a two-column grid on a terminal)."""
    console = terminal_console()
    if console is None:
        width = max((len(name) for name, _value in fields), default=0)
        if title:
            sys.stdout.write(title + "\n")
        for name, value in fields:
            lines = value.splitlines() or [""]
            sys.stdout.write(f"{name.ljust(width)}  {lines[0]}\n")
            for line in lines[1:]:
                sys.stdout.write(f"{' ' * width}  {line}\n")
        sys.stdout.flush()
        return
    from rich.table import Table
    from rich.text import Text

    if title:
        console.print(Text(title, style="bold"))
    grid = Table(show_header=False, box=None, padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in fields:
        style = STATUS_STYLES.get(value, "") if name == "status" else ""
        grid.add_row(name, Text(value, style=style))
    console.print(grid)


def print_line(text: str, *, stream: IO[str] | None = None) -> None:
    """One line of text, flushed (worker logs must show up at once in pipes)."""
    stream = stream or sys.stdout
    stream.write(text + "\n")
    stream.flush()
