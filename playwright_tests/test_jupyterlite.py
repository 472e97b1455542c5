"""The example notebook in the locally built JupyterLite, in Debian's Chromium.

The site is .build/jupyterlite/site/ (``python build.py test`` builds it): JupyterLab's
notebook app with the Pyodide kernel on our assembled Pyodide. Its cells run in the
kernel's Web Worker: ``%pip install`` takes our wheel from the site, the server keeps
its jobs in that worker's IndexedDB, and the widget draws them on the page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from browser_log import BrowserLog
from playwright.sync_api import BrowserContext, Locator, Page, expect

from buildtasks import webserver
from buildtasks.jupyterlite import LITE_SITE, NOT_ISOLATED, NOTEBOOK_PATH, SITE_PREFIX

WATCH_PATH = SITE_PREFIX + "notebooks/index.html?path=watch.ipynb"

pytestmark = pytest.mark.timeout(300)

# The first cell loads Pyodide's packages in the kernel's worker: slow on a busy machine.
CELL_TIMEOUT = 120_000
# The only request of the notebook page that fails: the browser's own guess at an icon
# at the server's root, outside the site.
ROOT_FAVICON = re.compile(r"404.*\(http://127\.0\.0\.1:\d+/favicon\.ico\)$")
# Records every widget row's (id, status, progress) as the page draws it.
WATCH_ROWS = """
(widget) => {
  window.pjqSeen = [];
  const record = () => {
    for (const row of widget.querySelectorAll("tr[data-job-id]")) {
      const bar = row.querySelector("progress");
      window.pjqSeen.push([Number(row.dataset.jobId), row.dataset.status, bar.value]);
    }
  };
  new MutationObserver(record).observe(widget, { childList: true, subtree: true });
  record();
}
"""


@pytest.fixture(scope="module")
def lite_url() -> Iterator[str]:
    """The JupyterLite site served as ``build.py serve`` serves it, under /jupyterlite/."""
    if not (LITE_SITE / "jupyter-lite.json").is_file():
        pytest.fail(f"{LITE_SITE} is missing: run `python build.py test` to build it")
    site = webserver.Site({SITE_PREFIX: LITE_SITE}, log_requests=False, unisolated=NOT_ISOLATED)
    with webserver.serving(site, "jupyterlite server") as base:
        yield base


class Notebook:
    """The example notebook open in a tab, its cells run from here."""

    def __init__(self, page: Page, code_cells: int) -> None:
        self.page = page
        self.cells = page.locator(".jp-Notebook .jp-CodeCell")
        self.code_cells = code_cells
        self.runs = 0

    @classmethod
    def open(
        cls, context: BrowserContext, url: str, path: str = NOTEBOOK_PATH, code_cells: int = 6
    ) -> Notebook:
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())  # leaving an edited notebook
        page.goto(url + path)
        notebook = cls(page, code_cells)
        notebook.wait_ready()
        return notebook

    def wait_ready(self) -> None:
        expect(self.cells).to_have_count(self.code_cells, timeout=60_000)
        idle = self.page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
        expect(idle).to_be_visible(timeout=60_000)
        self.runs = 0

    def cell(self, starts_with: str) -> Locator:
        return self.cells.filter(
            has=self.page.locator(".jp-InputArea-editor", has_text=starts_with)
        ).first

    def run(self, starts_with: str) -> Locator:
        """Run one cell (Ctrl+Enter) and wait until the kernel has run it; its output."""
        cell = self.cell(starts_with)
        cell.locator(".jp-InputArea-editor").click()
        self.page.keyboard.press("Control+Enter")
        self.runs += 1
        prompt = cell.locator(".jp-InputArea-prompt")
        expect(prompt).to_have_text(f"[{self.runs}]:", timeout=CELL_TIMEOUT)
        output = cell.locator(".jp-OutputArea")
        expect(output.locator(".jp-OutputArea-output[data-mime-type*='error']")).to_have_count(0)
        return output

    def start(self) -> Locator:
        """Install, define the job, start the server, show the widget; the widget."""
        expect(self.run("import sys")).to_have_text("")
        expect(self.run("import asyncio")).to_have_text("")
        expect(self.run("storage = ")).to_have_text("server running: True")
        widget = self.run("client.widget()").locator(".pyjobqueue-jobs")
        expect(widget.locator(".pjq-title")).to_have_text(re.compile(r"queue notebook-demo: "))
        return widget


def rows_of(widget: Locator) -> list[tuple[str, str, str]]:
    """(status, percent, message) of each row the widget shows, newest job first."""
    return [
        (
            row.locator(".pjq-status").inner_text(),
            row.locator(".pjq-progress").inner_text().strip(),
            row.locator(".pjq-message").inner_text(),
        )
        for row in widget.locator("tr[data-job-id]").all()
    ]


def progress_by_job(seen: list[list[Any]]) -> dict[int, list[float]]:
    """The progress values each job's row showed, in order, repeats dropped."""
    values: dict[int, list[float]] = {}
    for job_id, _status, progress in seen:
        shown = values.setdefault(job_id, [])
        if not shown or shown[-1] != progress:
            shown.append(progress)
    return values


def assert_clean(browser_log: BrowserLog) -> None:
    problems = [problem for problem in browser_log.take() if not ROOT_FAVICON.search(problem)]
    assert not problems, "the browser reported errors:\n" + "\n".join(problems)


def test_the_example_notebook_runs_in_jupyterlite_and_its_jobs_outlive_a_reload(
    lite_url: str, watched_context: BrowserContext, browser_log: BrowserLog
) -> None:
    notebook = Notebook.open(watched_context, lite_url)
    widget = notebook.start()
    expect(widget.locator(".pjq-title")).to_have_text("queue notebook-demo: 0 jobs")
    watch(notebook, widget)

    output = notebook.run("handles = ")
    expect(output).to_have_text("['job 0 done', 'job 1 done', 'job 2 done']")
    expect(widget.locator(".pjq-status")).to_have_text(["COMPLETED"] * 3)
    assert rows_of(widget) == [("COMPLETED", "100%", "step 5 of 5")] * 3
    # The bars moved: each job's row went up through its five steps as events came.
    values = progress_by_job(notebook.page.evaluate("window.pjqSeen"))
    assert sorted(values) == [1, 2, 3]
    for job_values in values.values():
        assert job_values == sorted(job_values), job_values
        assert job_values[-1] == 100
        assert any(0 < value < 100 for value in job_values), job_values
    expect(notebook.run('print("completed')).to_have_text("completed jobs: 3")
    assert_clean(browser_log)

    # A reload starts a new kernel (a new worker): the jobs are still in its IndexedDB.
    notebook.page.reload()
    notebook.wait_ready()
    widget = notebook.start()
    expect(widget.locator(".pjq-title")).to_have_text("queue notebook-demo: 3 jobs")
    assert rows_of(widget) == [("COMPLETED", "100%", "step 5 of 5")] * 3
    expect(notebook.run('print("completed')).to_have_text("completed jobs: 3")
    assert_clean(browser_log)


def watch(notebook: Notebook, widget: Locator) -> None:
    """Record what `widget` shows from now on (window.pjqSeen)."""
    notebook.page.evaluate(WATCH_ROWS, widget.element_handle())


def test_a_second_notebook_sees_the_first_ones_jobs_and_aborts_one_it_runs(
    lite_url: str, watched_context: BrowserContext, browser_log: BrowserLog
) -> None:
    """Two notebooks, two kernels (two workers) on one queue: the watching one's widget
    follows the jobs the other runs, and an Abort click in one stops a job for both."""
    runner = Notebook.open(watched_context, lite_url)
    runner_widget = runner.start()
    watcher = Notebook.open(watched_context, lite_url, WATCH_PATH, code_cells=4)
    expect(watcher.run("import sys")).to_have_text("")
    watcher_widget = watcher.run("from pyjobqueue").locator(".pyjobqueue-jobs")
    expect(watcher_widget.locator(".pjq-title")).to_have_text("queue notebook-demo: 0 jobs")
    watch(watcher, watcher_widget)

    expect(runner.run("handles = ")).to_have_text("['job 0 done', 'job 1 done', 'job 2 done']")
    expect(watcher_widget.locator(".pjq-status")).to_have_text(["COMPLETED"] * 3)
    assert rows_of(watcher_widget) == [("COMPLETED", "100%", "step 5 of 5")] * 3
    values = progress_by_job(watcher.page.evaluate("window.pjqSeen"))
    assert sorted(values) == [1, 2, 3]
    assert any(0 < value < 100 for job_values in values.values() for value in job_values)

    # The watcher submits a long job; the runner's server runs it, both widgets show it.
    expect(watcher.run("slow = ")).to_have_text("submitted job 4")
    slow_row = runner_widget.locator("tr[data-job-id='4']")
    expect(slow_row.locator(".pjq-message")).to_have_text(re.compile(r"step \d+ of 100"))
    expect(watcher_widget.locator("tr[data-job-id='4'] .pjq-status")).to_have_text("PROCESSING")
    slow_row.locator(".pjq-abort").click()
    expect(slow_row.locator(".pjq-status")).to_have_text("FAILED")
    watcher_row = watcher_widget.locator("tr[data-job-id='4']")
    expect(watcher_row.locator(".pjq-status")).to_have_text("FAILED")
    expect(watcher_row.locator(".pjq-abort")).to_have_count(0)
    expect(watcher.run('print("completed')).to_have_text("completed jobs: 3")
    assert_clean(browser_log)


def test_the_notebook_config_loads_nothing_from_a_cdn() -> None:
    """What the kernel is told: our Pyodide, our wheels, and PyPI never asked."""
    config = json.loads((LITE_SITE / "jupyter-lite.json").read_text())
    settings = config["jupyter-config-data"]["litePluginSettings"][
        "@jupyterlite/pyodide-kernel-extension:kernel"
    ]
    assert settings["pyodideUrl"] == "./static/pyodide/pyodide.mjs"
    assert settings["disablePyPIFallback"] is True
    assert all(url.startswith("./") for url in settings["pipliteUrls"])
    lock = json.loads((LITE_SITE / "static" / "pyodide" / "pyodide-lock.json").read_text())
    for package in lock["packages"].values():
        assert (LITE_SITE / "static" / "pyodide" / package["file_name"]).is_file()
    assert {"ipython", "anywidget", "ipywidgets", "micropip"} <= set(lock["packages"])
    assert list((LITE_SITE / "pypi").glob("pyjobqueue-*-py3-none-any.whl"))
