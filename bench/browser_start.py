"""How long a page takes to get pyjobqueue ready in Chromium: first visit, reload, offline.

A plain page (the README's: Pyodide from web/dist/pyodide/, `loadPackage`, our
imports, an IndexedDB queue opened), or the console itself, is loaded in a fresh
Chromium profile, then reloaded; where the variant has the service worker, it is then
reloaded once more offline (`context.set_offline`). Optionally the plain page then
starts a `WorkerServer` (a second Pyodide, in a worker). For each visit it prints the
time to ready and where it went, measured inside the page:

- `scripts`: from navigation to the runtime's compile (pyodide.mjs, pyodide.asm.mjs,
  the lock file; with a snapshot, reading it from the Cache API too);
- `compile`: WebAssembly compile and instantiate of pyodide.asm.wasm (streaming: it
  overlaps the download on a first visit);
- `interpreter`: from then until `loadPyodide` returns (the stdlib zip, Python's start;
  with a snapshot, restoring the interpreter's memory instead);
- `packages`: `loadPackage` of our wheel (and tzdata, its dependency under Pyodide), or
  unpacking them after a snapshot's restore;
- `modules`: (web/js/python.js only) until the page's own modules are written, and
  those the snapshot holds kept (the console's: fetched during the phases before);
- `imports`: importing pyjobqueue and opening the queue's IndexedDB database (for the
  console: importing its modules and reading its queue, `pyjobqueue:console`);
- `list`: (the console) from then until `pyjobqueueReady`, when jobs can be submitted
  and the list shows its first page;
- `worker`: `WorkerServer(...).start()` until its server runs (with --worker); for the
  console, from ready until its job worker's Python and server run (`pyjobqueueWorker`).

`MB` is what the server sent during the visit (bodies of 200 answers; the service
worker's and the snapshot worker's requests included), `requests` how many it answered.

Variants (--variant, several allowed). The plain page: `today` (every file `no-cache`:
revalidated on each visit, as `build.py serve` does), `immutable` (every file cached
for a year without revalidation, as versioned file names would allow), `parallel` (the
packages passed to `loadPyodide`, which fetches them while Python starts), `no-tzdata`
(our wheel by URL, without its timezone dependency), `service-worker` (started by
web/js/python.js, web/sw.js registered after the first visit), `snapshot` (the same,
every visit started from the build's memory snapshot), `browser-snapshot` (the same
with a runtime that lacks the build's snapshot: the first visit starts as usual and
makes one in a worker, which the next visits start from). The console
(web/index.html): `console` (`?snapshot=0`) and `console-snapshot` (as served).

    python bench/browser_start.py --runs 3 --variant today --variant snapshot \
        --variant console --variant console-snapshot
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import statistics
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from buildtasks import bundle, chromium, webserver  # noqa: E402 (after the path set-up above)
from buildtasks.paths import WEB_MOUNTS  # noqa: E402

WEB = ROOT / "web"
IMMUTABLE = "public, max-age=31536000, immutable"
SNAPSHOTS = ("snapshot", "browser-snapshot")
PLAIN = ("today", "immutable", "parallel", "no-tzdata", "service-worker", *SNAPSHOTS)
CONSOLE = ("console", "console-snapshot")
VARIANTS = PLAIN + CONSOLE
OFFLINE = ("service-worker", *SNAPSHOTS, *CONSOLE)  # with the service worker
PHASES = ("scripts", "compile", "interpreter", "packages", "modules", "imports", "list", "worker")

# In every page before its own scripts: when the runtime's WebAssembly is compiled (the
# first compile starts, the last ends).
COMPILE_MARKS = """
window.benchMarks = {};
for (const name of ["compile", "compileStreaming", "instantiate", "instantiateStreaming"]) {
  const original = WebAssembly[name];
  WebAssembly[name] = async (...args) => {
    benchMarks.compileStart ??= performance.now();
    try { return await original.apply(WebAssembly, args); }
    finally { benchMarks.compileEnd = performance.now(); }
  };
}
"""

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>start benchmark</title>
<link rel="icon" href="/shared/favicon.svg"></head><body>
<script type="module">
const params = new URLSearchParams(location.search);
const marks = window.benchMarks;
const now = () => performance.now();
const markTime = (name) => performance.getEntriesByName(name)[0].startTime;

async function plainStart() {
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
  return pyodide;
}

// As the console starts: web/js/python.js, from the snapshot if asked and stored.
async function appStart(python) {
  const pyodide = await python.bootPython([], { snapshot: params.get("snapshot") === "1" });
  marks.interpreterEnd = markTime("pyjobqueue:interpreter");
  marks.packagesEnd = markTime("pyjobqueue:packages");
  marks.modulesEnd = markTime("pyjobqueue:modules");
  return pyodide;
}

window.benchResult = (async () => {
  const python = params.get("app") === "1" ? await import("/js/python.js") : null;
  const pyodide = python ? await appStart(python) : await plainStart();
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
  // After ready, as the console does: the caches for the next visit.
  if (params.get("sw") === "1") {
    await (await import("/js/offline.js")).keepOffline();
  }
  if (params.get("snapshot") === "1") {
    const started = now();
    marks.snapshotBytes = await python.saveSnapshot();
    marks.snapshotMs = now() - started;
  }
  return marks;
})();
</script></body></html>
"""

# The console's figures, once it is up and has filled its caches for the next visit.
CONSOLE_RESULT = """async () => {
  await window.pyjobqueueReady;
  const marks = window.benchMarks;
  const markTime = (name) => performance.getEntriesByName(name)[0].startTime;
  marks.interpreterEnd = markTime("pyjobqueue:interpreter");
  marks.packagesEnd = markTime("pyjobqueue:packages");
  marks.modulesEnd = markTime("pyjobqueue:modules");
  marks.consoleEnd = markTime("pyjobqueue:console");
  marks.ready = markTime("pyjobqueue:ready");
  await window.pyjobqueueWorker;
  marks.workerEnd = markTime("pyjobqueue:worker");
  await window.pyjobqueueOffline;
  const started = performance.now();
  marks.snapshotBytes = await window.pyjobqueueSnapshot;
  if (marks.snapshotBytes !== null) marks.snapshotMs = performance.now() - started;
  return marks;
}"""


@dataclass
class Traffic:
    """What a server sent: bodies of its answers, and how many answers."""

    bytes: int = 0
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, size: int) -> None:
        """Count one answer of ``size`` bytes."""
        with self.lock:
            self.bytes += size
            self.requests += 1

    def read(self) -> tuple[int, int]:
        """(bytes, requests) so far."""
        with self.lock:
            return self.bytes, self.requests


class CountingHandler(webserver.SiteHandler):
    """A ``SiteHandler`` that counts what it sends."""

    def __init__(self, *args: Any, traffic: Traffic, **kwargs: Any) -> None:
        self.traffic = traffic
        self.body_size = 0
        super().__init__(*args, **kwargs)

    def send_header(self, keyword: str, value: str) -> None:
        """Note the body's size."""
        if keyword.lower() == "content-length":
            self.body_size = int(value)
        super().send_header(keyword, value)

    def end_headers(self) -> None:
        """Count the answer (a 304's body is empty)."""
        self.traffic.add(self.body_size)
        self.body_size = 0
        super().end_headers()


@contextlib.contextmanager
def serving(site: webserver.Site) -> Iterator[tuple[str, Traffic]]:
    """Serve ``site`` from a thread on a free port; its base URL and its traffic."""
    traffic = Traffic()
    handler = functools.partial(CountingHandler, site=site, traffic=traffic)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", traffic
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def phases(marks: dict[str, float]) -> dict[str, float]:
    """Milliseconds per phase, from the page's marks."""
    result = {
        "scripts": marks["compileStart"],
        "compile": marks["compileEnd"] - marks["compileStart"],
        "interpreter": marks["interpreterEnd"] - marks["compileEnd"],
        "packages": marks["packagesEnd"] - marks["interpreterEnd"],
        "ready": marks["ready"],
    }
    imported = marks.get("consoleEnd", marks["ready"])
    if "modulesEnd" in marks:
        result["modules"] = marks["modulesEnd"] - marks["packagesEnd"]
    result["imports"] = imported - marks.get("modulesEnd", marks["packagesEnd"])
    if "consoleEnd" in marks:
        result["list"] = marks["ready"] - marks["consoleEnd"]
    if "workerEnd" in marks:
        result["worker"] = marks["workerEnd"] - marks["ready"]
    if marks.get("snapshotBytes"):  # made during this visit
        result["snapshot made"] = marks["snapshotMs"]
        result["snapshot MB"] = marks["snapshotBytes"] / 1e6
    return result


def page_url(variant: str, worker: bool) -> str:
    """The page's address for one variant."""
    if variant in CONSOLE:
        return "/?queue=bench" + ("" if variant == "console-snapshot" else "&snapshot=0")
    query = {
        "parallel": {"parallel": "1"},
        "service-worker": {"app": "1", "sw": "1"},
        "snapshot": {"app": "1", "sw": "1", "snapshot": "1"},
        "browser-snapshot": {"app": "1", "sw": "1", "snapshot": "1"},
    }.get(variant, {})
    if variant == "no-tzdata":
        wheel = next((WEB / "dist" / "pyodide").glob("pyjobqueue-*.whl")).name
        query = {"wheel": f"/dist/pyodide/{wheel}"}
    if worker:
        query["worker"] = "1"
    return "/start.html?" + "&".join(f"{key}={value}" for key, value in query.items())


def measure(
    playwright: Any, base: str, traffic: Traffic, variant: str, worker: bool
) -> list[dict[str, float]]:
    """First visit, reload (and offline) in a fresh profile (a disk cache of its own)."""
    with tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, base_url=base, **chromium.launch_options()
        )
        context.add_init_script(COMPILE_MARKS)
        try:
            page = context.new_page()
            visits = []
            for visit in ("first", "reload", "offline")[: 3 if variant in OFFLINE else 2]:
                before = traffic.read()
                if visit == "first":
                    page.goto(page_url(variant, worker))
                else:
                    context.set_offline(visit == "offline")
                    page.reload()
                if variant in CONSOLE:
                    marks = page.evaluate(CONSOLE_RESULT)
                else:
                    marks = page.evaluate("() => window.benchResult")
                after = traffic.read()
                figures = phases(marks)
                figures["MB"] = (after[0] - before[0]) / 1e6
                figures["requests"] = after[1] - before[1]
                visits.append(figures)
            return visits
        finally:
            context.close()


def report(variant: str, runs: list[list[dict[str, float]]]) -> None:
    """Median of each figure over the runs, per visit."""
    for index, visit in enumerate(("first visit", "reload", "offline")[: len(runs[0])]):
        figures = [run[index] for run in runs]
        median = {key: statistics.median(f[key] for f in figures) for key in figures[0]}
        readies = ", ".join(f"{f['ready'] / 1000:.2f}" for f in figures)
        parts = "  ".join(f"{name} {median[name]:.0f}" for name in PHASES if name in median)
        made = ""
        if "snapshot made" in median:
            made = f"; snapshot ({median['snapshot MB']:.1f} MB) made in "
            made += f"{median['snapshot made']:.0f} ms"
        print(
            f"{variant:>16} {visit:<12} ready {median['ready'] / 1000:.2f} s "
            f"(runs: {readies}), {median['MB']:.2f} MB in {median['requests']:.0f} requests; "
            f"ms: {parts}{made}",
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
        scratch = Path(servers.enter_context(tempfile.TemporaryDirectory()))
        bases = {
            variant: servers.enter_context(serving(site(variant, scratch))) for variant in variants
        }
        # Run by run, every variant in turn: a busy machine's drift spreads over all.
        for _ in range(args.runs):
            for variant in variants:
                base, traffic = bases[variant]
                results[variant].append(measure(playwright, base, traffic, variant, args.worker))
    for variant in variants:
        report(variant, results[variant])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def site(variant: str, scratch: Path) -> webserver.Site:
    """web/ (as `build.py serve` serves it) and the benchmark page, with the variant's
    caching; for `browser-snapshot`, a runtime without the build's snapshot in ``scratch``."""
    mounts = dict(WEB_MOUNTS)
    files = {"/start.html": PAGE.encode()}
    if variant == "browser-snapshot":
        runtime = bundle.runtime_without_snapshot(scratch / "pyodide")
        mounts["/dist/pyodide/"] = runtime
        manifest = json.dumps(bundle.build_manifest(runtime))
        files["/dist/build.js"] = f"self.PYJOBQUEUE_BUILD = {manifest};\n".encode()
    return webserver.Site(
        mounts,
        files=files,
        cache_control=IMMUTABLE if variant == "immutable" else webserver.REVALIDATE,
        log_requests=False,
    )


if __name__ == "__main__":
    main()
