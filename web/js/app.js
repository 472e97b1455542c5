// The console page: boots Pyodide with pyjobqueue on the main thread (a JobQueueClient
// that drives the view) and a module Web Worker with a second Pyodide that runs this
// tab's JobQueueServer. Exposes window.pyodide, window.pyjobqueueReady (the page can
// submit and list jobs) and window.pyjobqueueWorker (this tab's job worker runs).
import { keepOffline } from "./offline.js";
import { bootPython, saveSnapshot } from "./python.js";
import { ConsoleView } from "../shared/view.js";

const TAB_ID = Math.random().toString(16).slice(2, 6);
// One console per queue: `?queue=name` (the default is "console").
const QUEUE = new URLSearchParams(location.search).get("queue") || "console";
// `?snapshot=0`: both Pythons start without the memory snapshot, and none is made.
const SNAPSHOT = new URLSearchParams(location.search).get("snapshot") !== "0";
// Between the tabs of this console: who leads, and "jobs were deleted, re-read them".
const CONSOLE_CHANNEL = `pyjobqueue-console ${JSON.stringify(QUEUE)}`;

let resolveReady;
let rejectReady;
window.pyjobqueueReady = new Promise((resolve, reject) => {
  resolveReady = resolve;
  rejectReady = reject;
});

const state = { role: "starting", leaderTab: null };
let view = null;

function showFatal(message) {
  console.error(message);
  const banner = document.querySelector("#fatal");
  banner.textContent = message;
  banner.hidden = false;
  if (view) view.leader({ role: "error", text: "Not running" });
}

// -- leadership: the worker knows whether this tab leads; other tabs learn it here ----------

const consoleChannel = new BroadcastChannel(CONSOLE_CHANNEL);
let app = null; // the page's Console (web/py/console_page.py), once it runs

function announceLeader() {
  if (state.role === "leader") {
    consoleChannel.postMessage({ type: "leader", tab: TAB_ID });
  }
}

consoleChannel.onmessage = ({ data }) => {
  if (data.type === "who") {
    announceLeader();
  } else if (data.type === "deleted" && app) {
    Promise.resolve(app.sync()).catch((error) => console.error(`cannot re-read the jobs: ${error}`));
  } else if (data.type === "leader" && state.role !== "leader") {
    state.role = "standby";
    state.leaderTab = data.tab;
    render();
  }
};

function render() {
  if (!view) return;
  view.leader(state);
}

// -- the worker -----------------------------------------------------------------------------

function startWorker() {
  const url = new URL("./worker.js", import.meta.url);
  url.searchParams.set("queue", QUEUE);
  // `?schedule=N`: this tab's server also runs the demo schedule, every N seconds.
  const schedule = new URLSearchParams(location.search).get("schedule");
  if (schedule) url.searchParams.set("schedule", schedule);
  if (!SNAPSHOT) url.searchParams.set("snapshot", "0");
  const worker = new Worker(url, { type: "module" });
  return new Promise((resolve, reject) => {
    worker.onerror = (event) => {
      const message = `the job worker failed: ${event.message || "load error"}`;
      reject(new Error(message));
      showFatal(message);
    };
    worker.onmessage = ({ data }) => {
      const message = JSON.parse(data);
      if (message.type === "started") {
        if (state.role === "starting") state.role = "standby";
        consoleChannel.postMessage({ type: "who" });
        render();
        resolve(worker);
      } else if (message.type === "leader") {
        state.role = message.leader ? "leader" : "standby";
        state.leaderTab = message.leader ? TAB_ID : null;
        announceLeader();
        render();
      } else if (message.type === "error") {
        reject(new Error(message.message));
        showFatal(message.message);
      }
    };
  });
}

// -- the page's Python ----------------------------------------------------------------------

async function startConsole(pyodide) {
  const page = pyodide.pyimport("console_page");
  const tasks = JSON.parse(page.tasks_json());
  const actions = {
    submit: (request) => app.submit(request),
    submitMix: () => app.submit_mix(),
    abort: (id) => app.abort(id),
    abortRun: (runId) => app.abort_run(runId),
    retry: (id) => app.retry(id),
    setPaused: (paused) => app.set_paused(paused), // every tab hears of it as an event
    clearFinished: async () => {
      await app.clear_finished();
      consoleChannel.postMessage({ type: "deleted" }); // no job event tells other tabs
    },
  };
  view = new ConsoleView(document.querySelector("#app"), tasks, actions);
  render();
  app = await page.start(view, QUEUE);
  performance.mark("pyjobqueue:console"); // for bench/browser_start.py
  // The list reads its pages (and a job's detail) from the page's Python.
  await view.showPages({
    pageSize: page.PAGE_SIZE,
    emptyText: "No jobs yet: submit one on the left.",
    readPage: async (query) => JSON.parse(await app.page(JSON.stringify(query))),
    readJob: async (id) => JSON.parse(await app.job(id)),
  });
  // For console users: `app`, `client` and `storage` are globals of window.pyodide.
  pyodide.globals.set("app", app);
  await pyodide.runPythonAsync("client = app.client\nstorage = app.storage");
  page.destroy();
}

async function main() {
  document.querySelector("#tab-id").textContent = `tab ${TAB_ID}`;
  document.querySelector("#queue-name").textContent = QUEUE;
  const pyodide = await bootPython(["console_jobs", "console_model", "console_page"], { snapshot: SNAPSHOT });
  window.pyodide = pyodide;
  state.text = "Starting the job worker…";
  await startConsole(pyodide);
  // Only now: two Pythons starting at once on two cores slow the page's down, and the
  // worker's start reuses the runtime the page has compiled. The badge says "Starting
  // the job worker…" until it runs.
  const workerReady = startWorker();
  workerReady.catch(() => {}); // reported through main's await below
  window.pyjobqueueWorker = workerReady;
  // Ready: jobs can be submitted and are listed. Until this tab's worker runs (or
  // another tab leads), they wait in the queue as they would for any busy worker.
  for (const id of ["#submit", "#submit-mix"]) document.querySelector(id).disabled = false;
  document.body.dataset.ready = "true";
  performance.mark("pyjobqueue:ready");
  resolveReady(pyodide);
  await workerReady;
  document.body.dataset.worker = "started";
  performance.mark("pyjobqueue:worker");
  // Once up, so that filling the caches does not compete with the start.
  window.pyjobqueueOffline = keepOffline();
  window.pyjobqueueOffline.catch((error) => console.warn(`no offline start: ${error}`));
  window.pyjobqueueSnapshot = SNAPSHOT ? saveSnapshot() : Promise.resolve(null);
  window.pyjobqueueSnapshot.catch((error) => console.warn(`no memory snapshot: ${error}`));
}

main().catch((error) => {
  showFatal(`The console could not start: ${error.message || error}`);
  rejectReady(error);
});
