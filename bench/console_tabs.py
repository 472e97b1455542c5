"""The console's submit-to-result latency with one tab open, and with a second one.

Every open console tab follows every event of its queue. Before the console kept its
queue in memory (`web/py/console_model.py`), each tab read storage again on each
event, and a second open tab doubled the leader tab's own submit-to-result latency.
This measures it: the leader tab submits one small job at a time (primes up to a few
thousand, a millisecond of work) through its client and waits for its result
(`wait_for`); then with a second tab open on the queue (it follows every event, its
worker stands by); and, to tell what following costs from what a second tab costs at
all, with a second tab open on a queue of its own (it leads that idle queue). Rounds
go through the three in turn, in a fresh browser context each, so that a busy
machine's drift spreads over all.

    python bench/console_tabs.py --jobs 100 --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from measure import WARMUP_SAMPLES, percentile  # noqa: E402

from buildtasks import chromium, webserver  # noqa: E402 (after the path set-up above)
from buildtasks.paths import WEB_MOUNTS  # noqa: E402

# In the leader tab's Python: milliseconds from each submit to its result.
ROUND = """
import time
samples = []
for n in range({warmup} + {jobs}):
    started = time.perf_counter()
    handle = await client.submit({{"task": "primes", "limit": 2_000 + n}}, kind="count_primes")
    await handle.wait_for()
    samples.append((time.perf_counter() - started) * 1000)
samples[{warmup}:]
"""
READY = "async () => { await window.pyjobqueueReady; await window.pyjobqueueWorker; }"
READY_TIMEOUT_MS = 120_000


def open_tab(context: Any, queue: str, *, leader: bool) -> Any:
    """A console tab on `queue`, once ready and its worker up (leading, or standing by)."""
    page = context.new_page()
    page.goto(f"/?queue={queue}")
    page.wait_for_function(READY, timeout=READY_TIMEOUT_MS)
    # The other tab stands by once it knows which tab leads.
    settled = "leader" if leader else "standby"
    badge = f'#leader-badge[data-role="{settled}"]' + ("" if leader else "[data-leader-tab]")
    page.wait_for_selector(badge, timeout=READY_TIMEOUT_MS)
    return page


def run_python(page: Any, code: str) -> Any:
    """Run `code` in the page's Pyodide; its result as a JavaScript value."""
    return page.evaluate(
        """async (code) => {
          const result = await window.pyodide.runPythonAsync(code);
          const value = result.toJs();
          result.destroy();
          return value;
        }""",
        code,
    )


SETUPS = {
    "one tab": None,
    "a second tab on the queue": "same",
    "a second tab on another queue": "other",
}


def measure(browser: Any, base: str, jobs: int, second: str | None) -> list[float]:
    """Latencies (ms) of `jobs` jobs of the leader tab, with a second console tab on the
    same queue, on another one, or none."""
    context = browser.new_context(base_url=base)
    try:
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        leader = open_tab(context, queue, leader=True)
        if second == "same":
            open_tab(context, queue, leader=False)
        elif second == "other":
            open_tab(context, f"{queue}-other", leader=True)
        samples: list[float] = run_python(leader, ROUND.format(warmup=WARMUP_SAMPLES, jobs=jobs))
        return samples
    finally:
        context.close()


def summary(samples: list[float]) -> str:
    return f"p50 {statistics.median(samples):.1f} ms, p90 {percentile(samples, 0.9):.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100, help="jobs timed per round")
    parser.add_argument("--runs", type=int, default=3, help="rounds of one tab, then two")
    args = parser.parse_args()
    results: dict[str, list[float]] = {setup: [] for setup in SETUPS}
    site = webserver.Site(WEB_MOUNTS, log_requests=False)
    with webserver.serving(site, "console tabs benchmark") as base, chromium.launched() as browser:
        for run in range(args.runs):
            for setup, second in SETUPS.items():
                samples = measure(browser, base, args.jobs, second)
                results[setup] += samples
                print(f"run {run + 1}, {setup}: {summary(samples)}", flush=True)
    alone = statistics.median(results["one tab"])
    for setup, samples in results.items():
        ratio = statistics.median(samples) / alone
        print(f"{setup:>30}: {summary(samples)}, p50 {ratio:.2f} of one tab's")


if __name__ == "__main__":
    main()
