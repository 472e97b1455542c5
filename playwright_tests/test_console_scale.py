"""The browser console at 10,000 jobs: the page stays small and its memory steady.

Two equal rounds of 10,000 jobs go through the page's client (`submit_batch`) in kinds
that no server runs, so they stay where the test puts them; 100 of each round are
aborted (100 `job_error` events). After each round the DOM holds one page of rows, the
list says how many jobs there are, its filters and lookups find them, and a job found
by id opens its detail. The second round must leave the page's JavaScript heap (after a
garbage collection) and the page's Python objects (counted once the console has settled)
about where the first left them. A tab opened on the 20,000 jobs then shows the same.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from console_tab import ConsoleTab
from playwright.sync_api import BrowserContext, CDPSession, Page, expect

ROUND = 10_000
DOOMED = 100  # of each round: aborted, so that the list has failed jobs to filter
BATCH = 2_500  # jobs per submit_batch call
MAX_NODES = 2_000
# What the second round may add: a few MB of heap and a few thousand Python objects,
# far from what keeping 10,000 more jobs (or their rows) would cost.
MAX_HEAP_GROWTH_BYTES = 4_000_000
MAX_PYTHON_OBJECT_GROWTH = 3_000
SCALE_TIMEOUT_MS = 120_000

SUBMIT_ROUND = """
import time
from pyjobqueue import JobStatus
ids = {{"bulk-a": [], "bulk-b": []}}
for start in range(0, {round} - {doomed}, {batch}):
    kind = "bulk-a" if start % (2 * {batch}) == 0 else "bulk-b"
    inputs = [{{"n": n}} for n in range(start, min(start + {batch}, {round} - {doomed}))]
    ids[kind] += [h.id for h in await client.submit_batch(inputs, kind=kind)]
doomed = await client.submit_batch(
    [{{"n": n}} for n in range({doomed})], kind="bulk-b", job_run_id="doomed-{number}"
)
await client.abort_job_run("doomed-{number}")
[ids["bulk-a"][len(ids["bulk-a"]) // 2], len(ids["bulk-a"]), doomed[0].id]
"""

# The page's Python objects by type, counted once the console has applied every event
# and no read of the queue runs (a read in flight holds the jobs it has read so far).
PYTHON_OBJECTS = """
import gc, json
from collections import Counter
await app.settled()
gc.collect()
json.dumps(Counter(type(value).__qualname__ for value in gc.get_objects()))
"""


def python_objects(tab: ConsoleTab) -> Counter[str]:
    """The page's Python objects, by type."""
    return Counter(json.loads(tab.run_python(PYTHON_OBJECTS)))


def grown(before: Counter[str], after: Counter[str]) -> list[tuple[str, int]]:
    """The types of which there are most more objects."""
    return (after - before).most_common(10)


def dom_nodes(page: Page) -> int:
    """Elements in the page."""
    count: int = page.evaluate("document.getElementsByTagName('*').length")
    return count


def heap_after_gc(cdp: CDPSession) -> int:
    """The page's JavaScript heap in use after a full garbage collection, in bytes."""
    cdp.send("HeapProfiler.collectGarbage")
    usage: dict[str, Any] = cdp.send("Runtime.getHeapUsage")
    return int(usage["usedSize"])


def label(page: Page) -> Any:
    return page.locator("#page-label")


def check_the_list(tab: ConsoleTab, total: int, middle: int, kind_a: int, doomed: int) -> None:
    """The list after a round: its total, filters, lookups and a job's detail."""
    page = tab.page
    rows = page.locator("#job-list li.job")
    expect(label(page)).to_have_text(f"1\N{EN DASH}50 of {total:,}", timeout=SCALE_TIMEOUT_MS)
    expect(page.locator('[data-stat="total"]')).to_have_text(f"{total:,}")
    expect(page.locator('[data-stat="failed"]')).to_have_text(f"{total // ROUND * DOOMED}")
    expect(rows).to_have_count(50)

    page.locator("#status-filter").select_option("FAILED")
    expect(label(page)).to_have_text(f"1\N{EN DASH}50 of {total // ROUND * DOOMED}")
    expect(rows.first.locator(".status")).to_have_text("failed")
    page.locator("#status-filter").select_option("")
    page.locator("#kind-filter").select_option("bulk-a")
    expect(label(page)).to_have_text(f"1\N{EN DASH}50 of {total // ROUND * kind_a:,}")
    expect(rows.locator(".job-kind").filter(has_text="bulk-b")).to_have_count(0)
    page.locator("#kind-filter").select_option("")

    page.locator("#lookup-run").fill(f"doomed-{total // ROUND}")
    page.get_by_role("button", name="Find").click()
    expect(label(page)).to_have_text(f"1\N{EN DASH}50 of {DOOMED}")
    expect(rows.last).to_have_attribute("data-job-id", str(doomed + DOOMED - 50))
    page.locator("#lookup-run").fill("")
    page.locator("#lookup-id").fill(str(middle))
    page.get_by_role("button", name="Find").click()
    expect(rows).to_have_count(1)
    tab.job(middle).locator(".job-id").click()
    dialog = page.locator("#job-detail")
    expect(dialog.locator("h2")).to_have_text(f"Job #{middle} · pending")
    expect(dialog.locator("dd pre").filter(has_text=re.compile(r"^bulk-a$"))).to_have_count(1)
    dialog.get_by_role("button", name="Close").click()
    page.get_by_role("button", name="Show all").click()
    expect(label(page)).to_have_text(f"1\N{EN DASH}50 of {total:,}")
    assert dom_nodes(page) < MAX_NODES


def test_ten_thousand_jobs_keep_the_page_small_and_its_memory_steady(
    watched_context: BrowserContext, queue_name: str
) -> None:
    tab = ConsoleTab.open(watched_context, queue_name)
    cdp = watched_context.new_cdp_session(tab.page)
    measured = []
    for number in (1, 2):
        code = SUBMIT_ROUND.format(round=ROUND, doomed=DOOMED, batch=BATCH, number=number)
        middle, kind_a, doomed = tab.run_python(code)
        check_the_list(tab, number * ROUND, middle, kind_a, doomed)
        measured.append((heap_after_gc(cdp), python_objects(tab), dom_nodes(tab.page)))
    (heap_1, types_1, nodes_1), (heap_2, types_2, nodes_2) = measured
    objects_1, objects_2 = types_1.total(), types_2.total()
    print(f"after {ROUND:,} jobs: {nodes_1} elements, heap {heap_1:,} B, {objects_1:,} objects")
    print(f"after {2 * ROUND:,} jobs: {nodes_2} elements, heap {heap_2:,} B, {objects_2:,} objects")
    assert max(nodes_1, nodes_2) < MAX_NODES
    assert heap_2 - heap_1 < MAX_HEAP_GROWTH_BYTES, (heap_1, heap_2)
    assert objects_2 - objects_1 < MAX_PYTHON_OBJECT_GROWTH, grown(types_1, types_2)

    # A tab opened now reads the 20,000 jobs once and shows the same.
    other = ConsoleTab.open(watched_context, queue_name)
    expect(label(other.page)).to_have_text(f"1\N{EN DASH}50 of {2 * ROUND:,}")
    expect(other.page.locator('[data-stat="failed"]')).to_have_text(str(2 * DOOMED))
    assert dom_nodes(other.page) < MAX_NODES
