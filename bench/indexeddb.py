"""pyjobqueue on IndexedDB in Chromium against a hand-written JavaScript queue, as ratios.

One page (served from web/ as `build.py serve` serves it, in Debian's Chromium driven
by Playwright) loads Pyodide and our wheel, then runs, round by round (--repeat):

- the floor: a hand-written queue in JavaScript on an IndexedDB object store with an
  index on its status. Its --workers async workers each claim the first pending job
  in one readwrite transaction (a cursor on the index, the job updated to running)
  and mark it done in another; it has no leases, events, retries or limits: the least
  a durable queue on IndexedDB can do;
- pyjobqueue: `queue_throughput` of bench/pyjobqueue_runs.py, run inside Pyodide on an
  IndexedDbQueueStorage, with as many workers (its own code, loaded into the page).

Both drain --jobs jobs stored before the clock starts. Latency: --rounds jobs one
after the other; pyjobqueue submits and awaits wait_for (`queue_latency`), the floor
stores a pending job, claims it and marks it done, each in its own transaction.
Needs web/dist/pyodide/ (`python build.py bench` assembles it, as `build.py serve`
does) and runs in .venv, which has Playwright:

    .venv/bin/python bench/indexeddb.py --jobs 1000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from measure import (  # noqa: E402
    WARMUP_SAMPLES,
    Rounds,
    Row,
    drain_parser,
    latency_rows,
    progress,
    report,
    rounds_with_warmup,
)

from buildtasks import chromium, webserver  # noqa: E402 (after the path set-up above)

WEB = ROOT / "web"
SHARED = ("measure.py", "pyjobqueue_runs.py")  # loaded into the page's Python

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>IndexedDB benchmark</title>
<link rel="icon" href="/favicon.svg"></head><body>
<script type="module">
const settled = (request) => new Promise((resolve, reject) => {
  request.onsuccess = () => resolve(request.result);
  request.onerror = () => reject(request.error);
});
const committed = (tx) => new Promise((resolve, reject) => {
  tx.oncomplete = () => resolve();
  tx.onerror = tx.onabort = () => reject(tx.error);
});

async function openQueue(name) {
  const request = indexedDB.open(name, 1);
  request.onupgradeneeded = () => {
    const jobs = request.result.createObjectStore("jobs", { keyPath: "id", autoIncrement: true });
    jobs.createIndex("status", "status");
  };
  return settled(request);
}

async function store(db, first, count) {
  const tx = db.transaction("jobs", "readwrite");
  const jobs = tx.objectStore("jobs");
  for (let n = first; n < first + count; n++) jobs.add({ status: "pending", input: { n } });
  await committed(tx);
}

async function claim(db) {
  const tx = db.transaction("jobs", "readwrite");
  const request = tx.objectStore("jobs").index("status").openCursor(IDBKeyRange.only("pending"));
  let job = null;
  request.onsuccess = () => {
    const cursor = request.result;
    if (cursor) { job = { ...cursor.value, status: "running" }; cursor.update(job); }
  };
  await committed(tx);
  return job;
}

async function finish(db, job) {
  const tx = db.transaction("jobs", "readwrite");
  tx.objectStore("jobs").put({ ...job, status: "done", output: job.input.n });
  await committed(tx);
}

async function withQueue(run) {
  const name = `hand-written-${crypto.randomUUID()}`;
  const db = await openQueue(name);
  try {
    return await run(db);
  } finally {
    db.close();
    await settled(indexedDB.deleteDatabase(name));
  }
}

const hand = {
  drain: (jobs, workers) => withQueue(async (db) => {
    await store(db, 0, jobs);
    const start = performance.now();
    const work = async () => { let job; while ((job = await claim(db))) await finish(db, job); };
    await Promise.all(Array.from({ length: workers }, work));
    return (performance.now() - start) / 1000;
  }),
  latency: (rounds, warmup) => withQueue(async (db) => {
    const samples = [];
    for (let n = 0; n < warmup + rounds; n++) {
      const start = performance.now();
      await store(db, n, 1);
      await finish(db, await claim(db));
      samples.push(performance.now() - start);
    }
    return samples.slice(warmup);
  }),
};

let pyodide;
window.benchStart = async (sources) => {
  const { loadPyodide } = await import("/dist/pyodide/pyodide.mjs");
  pyodide = await loadPyodide({ indexURL: "/dist/pyodide/" });
  await pyodide.loadPackage(["pyjobqueue"], { messageCallback: () => {} });
  pyodide.FS.mkdirTree("/bench");
  for (const [name, text] of Object.entries(sources)) pyodide.FS.writeFile(`/bench/${name}`, text);
  await pyodide.runPythonAsync(`
import json, sys
sys.path.insert(0, "/bench")
from pyjobqueue_runs import on_fresh_queue, queue_latency, queue_throughput
URL = "indexeddb://pyjobqueue-bench"
`);
};
window.benchRun = async ({ queue, measure, jobs, workers, rounds, warmup }) => {
  if (queue === "hand") {
    return measure === "drain" ? hand.drain(jobs, workers) : hand.latency(rounds, warmup);
  }
  const call = measure === "drain"
    ? `await on_fresh_queue(URL, lambda s: queue_throughput(s, ${jobs}, ${workers}))`
    : `json.dumps(await on_fresh_queue(URL, lambda s: queue_latency(s, ${rounds})))`;
  const result = await pyodide.runPythonAsync(call);
  return measure === "drain" ? result : JSON.parse(result);
};
</script></body></html>
"""


def site() -> webserver.Site:
    """web/ and the benchmark page."""
    return webserver.Site({"/": WEB}, files={"/indexeddb.html": PAGE.encode()}, log_requests=False)


def measure_in_page(page: Any, args: argparse.Namespace) -> list[Row]:
    """Every round of drains, then the latency samples, on one open page."""
    labels = {
        "ours": f"{args.workers} workers, in Pyodide",
        "hand": f"hand-written JavaScript queue, {args.workers} async workers (floor)",
    }
    rounds = Rounds("jobs/s")
    for round_number, jobs in rounds_with_warmup(args.jobs, args.repeat):
        figures = rounds if round_number else Rounds("jobs/s")
        for queue in ("hand", "ours"):
            options = {"queue": queue, "measure": "drain", "jobs": jobs, "workers": args.workers}
            figures.add(labels[queue], jobs / page.evaluate("o => benchRun(o)", options))
        progress(f"indexeddb: drain round {round_number}/{args.repeat} done")
    samples = {}
    for queue in ("hand", "ours"):
        options = {"queue": queue, "measure": "latency", "rounds": args.rounds}
        samples[queue] = page.evaluate("o => benchRun(o)", {**options, "warmup": WARMUP_SAMPLES})
    return [
        rounds.row(
            f"drain, IndexedDB in Chromium, {args.jobs:,} jobs", labels["ours"], labels["hand"]
        ),
        *latency_rows(
            "latency, IndexedDB in Chromium",
            ("1 worker in Pyodide, submit then wait_for", samples["ours"]),
            ("hand-written JavaScript queue: store, claim, mark done (floor)", samples["hand"]),
        ),
    ]


def parse_args() -> argparse.Namespace:
    parser = drain_parser(__doc__, jobs=1000)
    args = parser.parse_args()
    if min(args.jobs, args.workers, args.repeat, args.rounds) < 1:
        parser.error("--jobs, --workers, --repeat and --rounds must be at least 1")
    if not (WEB / "dist" / "pyodide" / "pyodide.mjs").is_file():
        parser.error("web/dist/pyodide/ is missing: `python build.py bench` assembles it")
    return args


def main() -> None:
    args = parse_args()
    from playwright.sync_api import sync_playwright

    sources = {name: (BENCH / name).read_text() for name in SHARED}
    with webserver.serving(site()) as base, sync_playwright() as playwright:
        browser = chromium.launch(playwright.chromium)
        try:
            page = browser.new_page(base_url=base)
            page.set_default_timeout(0)
            page.goto("/indexeddb.html")
            progress("indexeddb: starting Pyodide")
            page.evaluate("sources => benchStart(sources)", sources)
            rows = measure_in_page(page, args)
        finally:
            browser.close()
    report(rows, args.json)


if __name__ == "__main__":
    main()
