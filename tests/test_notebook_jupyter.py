"""docs/notebooks/pyjobqueue.ipynb, run headless by nbclient on a real ipykernel (CPython,
SQLite): its cells await on the kernel's loop, and the widget ends with the finished jobs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

from tests.children import ROOT, child_environment
from tests.test_readme import python_blocks

NOTEBOOK = ROOT / "docs" / "notebooks" / "pyjobqueue.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# Run first: pyjobqueue must never start an event loop of its own inside the kernel.
FORBID_ASYNCIO_RUN = """
import asyncio

def _no_asyncio_run(*args, **kwargs):
    raise AssertionError("asyncio.run inside the kernel")

asyncio.run = _no_asyncio_run
"""
# Run last: the rows the widget's model holds in the kernel. (nbclient keeps only the
# messages of the cell it is running; the widget's updates come from the server's tasks,
# started in an earlier cell, so its stored widget state stops at the model's opening.)
WIDGET_ROWS = """
import json
print(client.widget().model_id)
print(json.dumps(client.widget().jobs))
"""


def text_of(cell: Any) -> str:
    """The stream text a code cell printed."""
    return "".join(
        output.get("text", "") for output in cell.outputs if output.output_type == "stream"
    )


def errors_of(notebook: Any) -> list[str]:
    return [
        f"{output.ename}: {output.evalue}"
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]


async def run_notebook(directory: Path) -> Any:
    # nbformat has no type hints.
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    notebook.cells.insert(0, nbformat.v4.new_code_cell(FORBID_ASYNCIO_RUN))  # type: ignore[no-untyped-call]
    notebook.cells.append(nbformat.v4.new_code_cell(WIDGET_ROWS))  # type: ignore[no-untyped-call]
    await execute(notebook, directory)
    return notebook


async def execute(notebook: Any, directory: Path) -> None:
    """Run every cell on a new ipykernel working in `directory`, with this checkout."""
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(directory)}},
        store_widget_state=True,
    )
    await client.async_execute(env=child_environment())


def code_cell(notebook: Any, starts_with: str) -> Any:
    return next(
        cell
        for cell in notebook.cells
        if cell.cell_type == "code" and cell.source.startswith(starts_with)
    )


async def test_the_example_notebook_runs_on_cpython_with_sqlite(tmp_path: Path) -> None:
    notebook = await run_notebook(tmp_path)
    assert errors_of(notebook) == []
    assert text_of(code_cell(notebook, "storage = ")) == "server running: True\n"
    assert text_of(code_cell(notebook, "handles = ")) == (
        "['job 0 done', 'job 1 done', 'job 2 done']\n"
    )
    assert text_of(code_cell(notebook, 'print("completed')) == "completed jobs: 3\n"
    # The jobs are in ./pyjobqueue.db of the kernel's working directory.
    with sqlite3.connect(tmp_path / "pyjobqueue.db") as database:
        (stored,) = database.execute("SELECT count(*) FROM pyjobqueue_jobs").fetchone()
    assert stored == 3

    # The widget cell displayed a view of the client's one widget, which ends with every
    # job done.
    (display,) = code_cell(notebook, "client.widget()").outputs
    model_id = display.data[WIDGET_VIEW]["model_id"]
    state = notebook.metadata.widgets[WIDGET_STATE]["state"][model_id]["state"]
    assert state["queue_name"] == "notebook-demo"
    assert state["_esm"].lstrip().startswith("const ACTIVE")
    shown_id, rows = text_of(notebook.cells[-1]).splitlines()
    assert shown_id == model_id
    assert [(row["status"], row["progress"], row["message"]) for row in json.loads(rows)] == [
        ("COMPLETED", 100.0, "step 5 of 5")
    ] * 3


async def test_a_second_run_sees_the_jobs_the_first_stored(tmp_path: Path) -> None:
    """A new kernel on the same directory (a kernel restart): the finished jobs are there."""
    await run_notebook(tmp_path)
    notebook = await run_notebook(tmp_path)
    assert errors_of(notebook) == []
    assert text_of(code_cell(notebook, 'print("completed')) == "completed jobs: 6\n"


async def test_the_readme_notebook_cells_run_in_a_kernel(tmp_path: Path) -> None:
    """README's notebook block, less its %pip line (pyjobqueue is installed here)."""
    (block,) = python_blocks("In a notebook: Jupyter and JupyterLite")
    first, *rest = block.splitlines()
    assert first.startswith("%pip install")
    cells = ["\n".join(rest), "print(await (await client.submit(21)).wait_for())"]
    notebook = nbformat.v4.new_notebook(  # type: ignore[no-untyped-call]
        cells=[nbformat.v4.new_code_cell(cell) for cell in cells]  # type: ignore[no-untyped-call]
    )
    await execute(notebook, tmp_path)
    assert errors_of(notebook) == []
    (display,) = notebook.cells[0].outputs
    assert WIDGET_VIEW in display.data
    assert text_of(notebook.cells[1]) == "42\n"
