"""How long a page takes to get pyjobqueue ready in Chromium, first visit and reload.

A plain page (the README's: Pyodide from web/dist/pyodide/, `loadPackage`, our
imports, an IndexedDB queue opened) is loaded in a fresh Chromium profile, then
reloaded; optionally it then starts a `WorkerServer` (a second Pyodide, in a worker).
For each visit it prints the time to ready and where it went, measured inside the page:

- `scripts`: from navigation to the runtime's compile (pyodide.mjs, pyodide.asm.mjs,
  the lock file);
- `compile`: WebAssembly compile and instantiate of pyodide.asm.wasm (streaming: it
  overlaps the download on a first visit);
- `interpreter`: from then until `loadPyodide` returns (the stdlib zip, Python's start);
- `packages`: `loadPackage` of our wheel (and tzdata, its dependency under Pyodide);
- `imports`: importing pyjobqueue and opening the queue's IndexedDB database;
- `worker`: `WorkerServer(...).start()` until its server runs (with --worker).

`bytes` is what the page's own requests transferred (the worker's are not counted);
0 for a file taken from the cache, a few hundred bytes for a revalidated one (304).

Variants (--variant, several allowed): `today` (every file `no-cache`: revalidated on
each visit, as `build.py serve` does), `immutable` (every file cached for a year
without revalidation, as versioned file names would allow), `parallel` (the packages
passed to `loadPyodide`, which fetches them while Python starts), `no-tzdata` (our
wheel by URL, without its timezone dependency).

    python bench/browser_start.py --runs 3 --variant today --variant immutable --worker
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from buildtasks import chromium, webserver  # noqa: E402 (after the path set-up above)

WEB = ROOT / "web"
IMMUTABLE = "public, max-age=31536000, immutable"
VARIANTS = ("today", "immutable", "parallel", "no-tzdata")
PHASES = ("scripts", "compile", "interpreter", "packages", "imports", "worker")

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>start benchmark</title>
<link rel="icon" href="/favicon.svg"></head><body>
<script type="module">
const params = new URLSearchParams(location.search);
const marks = {};
const now = () => performance.now();
// When the runtime's WebAssembly is compiled: the first compile starts, the last ends.
for (const name of ["compile", "compileStreaming", "instantiate", "instantiateStreaming"]) {
  const original = WebAssembly[name];
  WebAssembly[name] = async (...args) => {
    marks.compileStart ??= now();
    try { return await original.apply(WebAssembly, args); } finally { marks.compileEnd = now(); }
  };
}
window.benchResult = (async () => {
  const { loadPyodide } = await import("/dist/pyodide/pyodide.mjs");
  const wheel = params.get("wheel");
  const parallel = params.get("parallel") === "1";
  const pyodide = await loadPyodide({
    indexURL: "/dist/pyodide/", packages: parallel ? ["pyjobqueue"] : [],
  });
  marks.interpreterEnd = now();
  if (!parallel) {
    const errors = [];
    await pyodide.loadPackage([wheel || "pyjobqueue"], {
      messageCallback: () => {}, errorCallback: (message) => errors.push(message),
    });
    if (errors.length) throw new Error(errors.join("; "));
  }
  marks.packagesEnd = now();
  await pyodide.runPythonAsync(`
from pyjobqueue import JobQueueClient
from pyjobqueue.storage import IndexedDbQueueStorage
storage = IndexedDbQueueStorage("bench")
await storage.setup_database()
client = JobQueueClient(storage=storage)
`);
  marks.ready = now();
  if (params.get("worker") === "1") {
    await pyodide.runPythonAsync(`
from pyjobqueue.browser import WorkerServer
JOBS = '''
from pyjobqueue import job


@job
async def noop(n, context):
    return n
'''
server = await WorkerServer(JOBS, queue_name="bench", packages=["pyjobqueue"]).start()
await server.stop()
`);
    marks.workerEnd = now();
  }
  const entries = [...performance.getEntriesByType("navigation"),
                   ...performance.getEntriesByType("resource")];
  marks.bytes = entries.reduce((sum, entry) => sum + (entry.transferSize || 0), 0);
  return marks;
})();
</script></body></html>
"""


def phases(marks: dict[str, float]) -> dict[str, float]:
    """Milliseconds per phase, from the page's marks."""
    result = {
        "scripts": marks["compileStart"],
        "compile": marks["compileEnd"] - marks["compileStart"],
        "interpreter": marks["interpreterEnd"] - marks["compileEnd"],
        "packages": marks["packagesEnd"] - marks["interpreterEnd"],
        "imports": marks["ready"] - marks["packagesEnd"],
        "ready": marks["ready"],
        "bytes": marks["bytes"],
    }
    if "workerEnd" in marks:
        result["worker"] = marks["workerEnd"] - marks["ready"]
    return result


def page_url(variant: str, worker: bool) -> str:
    """The benchmark page's address for one variant."""
    query = {"parallel": "1"} if variant == "parallel" else {}
    if variant == "no-tzdata":
        wheel = next((WEB / "dist" / "pyodide").glob("pyjobqueue-*.whl")).name
        query = {"wheel": f"/dist/pyodide/{wheel}"}
    if worker:
        query["worker"] = "1"
    return "/start.html?" + "&".join(f"{key}={value}" for key, value in query.items())


def measure(playwright: Any, base: str, variant: str, worker: bool) -> list[dict[str, float]]:
    """(first visit, reload) in a fresh profile (a disk cache of its own)."""
    with tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, base_url=base, **chromium.launch_options()
        )
        try:
            page = context.new_page()
            visits = []
            for visit in ("first", "reload"):
                if visit == "first":
                    page.goto(page_url(variant, worker))
                else:
                    page.reload()
                marks = page.evaluate("() => window.benchResult", None)
                visits.append(phases(marks))
            return visits
        finally:
            context.close()


def report(variant: str, runs: list[list[dict[str, float]]]) -> None:
    """Median of each figure over the runs, per visit."""
    for index, visit in enumerate(("first visit", "reload")):
        figures = [run[index] for run in runs]
        median = {key: statistics.median(f[key] for f in figures) for key in figures[0]}
        readies = ", ".join(f"{f['ready'] / 1000:.2f}" for f in figures)
        parts = "  ".join(f"{name} {median[name]:.0f}" for name in PHASES if name in median)
        print(
            f"{variant:>10} {visit:<12} ready {median['ready'] / 1000:.2f} s "
            f"(runs: {readies}), {median['bytes'] / 1e6:.2f} MB; ms: {parts}",
            flush=True,
        )


def main() -> None:
    """Run the chosen variants and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--variant", action="append", choices=VARIANTS)
    parser.add_argument("--worker", action="store_true", help="also start a WorkerServer")
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    variants = args.variant or ["today"]
    results: dict[str, list[Any]] = {variant: [] for variant in variants}
    with contextlib.ExitStack() as servers, sync_playwright() as playwright:
        bases = {
            variant: servers.enter_context(webserver.serving(site(variant))) for variant in variants
        }
        # Run by run, every variant in turn: a busy machine's drift spreads over all.
        for _ in range(args.runs):
            for variant in variants:
                results[variant].append(measure(playwright, bases[variant], variant, args.worker))
    for variant in variants:
        report(variant, results[variant])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def site(variant: str) -> webserver.Site:
    """web/ and the benchmark page, with the variant's caching."""
    return webserver.Site(
        {"/": WEB},
        files={"/start.html": PAGE.encode()},
        cache_control=IMMUTABLE if variant == "immutable" else webserver.REVALIDATE,
        log_requests=False,
    )


if __name__ == "__main__":
    main()
