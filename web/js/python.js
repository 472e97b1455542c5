// Boot a Pyodide with pyjobqueue installed and the console's Python modules on its path.
// Used by the page (main thread) and by the module Web Worker alike: everything comes
// from this origin (web/dist/pyodide/ is assembled by `python build.py serve`).
//
// With `snapshot`, a start begins from a memory snapshot of this build: the
// interpreter's memory as it was with pyjobqueue installed and imported, which skips
// Python's own start (most of the time a page takes to be ready). The build makes one
// (buildtasks/make_snapshot.mjs, in Node) next to the runtime, gzipped, and a first
// visit starts from it. Without it, the first visit starts as usual, and
// `saveSnapshot()` then makes the snapshot in a worker of its own
// (web/js/snapshot-worker.js) and keeps it in the Cache API for the next starts. How
// snapshots are made, found and restored is pyjobqueue's
// (pyjobqueue/browser/boot.mjs, which the build puts next to the runtime as
// pyjobqueue-boot.mjs): a WorkerServer's worker starts from the same snapshot.
import { loadPyodide, version } from "../dist/pyodide/pyodide.mjs";
import {
  fetchOk,
  forgetStaleModules,
  lacksSnapshot,
  makeSnapshot as makeRuntimeSnapshot,
  moduleHashes,
  restoreSnapshot,
  startPyodide,
  writeModules,
} from "../dist/pyodide/pyjobqueue-boot.mjs";

const RUNTIME = { loadPyodide, version, indexURL: new URL("../dist/pyodide/", import.meta.url).href };
const PYTHON_DIR = new URL("../py/", import.meta.url);

// Makes this build's snapshot and stores it (in a worker: see snapshot-worker.js).
export async function makeSnapshot() {
  return makeRuntimeSnapshot(RUNTIME);
}

// After the first start: make the snapshot for the next ones, unless the build has one
// or it is stored already. Resolves with its size in bytes (0: none was needed).
export async function saveSnapshot() {
  if (!(await lacksSnapshot(RUNTIME))) return 0;
  const worker = new Worker(new URL("./snapshot-worker.js", import.meta.url), { type: "module" });
  try {
    const { data } = await new Promise((resolve, reject) => {
      worker.onmessage = resolve;
      worker.onerror = (event) => reject(new Error(event.message || "the worker did not load"));
    });
    if (data.error) throw new Error(data.error);
    return data.bytes;
  } finally {
    worker.terminate();
  }
}

// `snapshot`: start from this build's memory snapshot when one is stored. Marks the
// performance timeline when the interpreter is up (`pyjobqueue:interpreter`), when
// pyjobqueue is installed (`pyjobqueue:packages`) and when `modules` are written
// (`pyjobqueue:modules`), for bench/browser_start.py; the first mark's detail says
// whether the start was from the snapshot, the last's which of `modules` the snapshot
// had imported already (`fromSnapshot`; the others are imported from their files).
export async function bootPython(modules, { snapshot = false } = {}) {
  const sources = Promise.all(
    modules.map(async (name) => (await fetchOk(new URL(`${name}.py`, PYTHON_DIR))).text()),
  );
  sources.catch(() => {}); // awaited below
  const restored = snapshot ? await restoreSnapshot(RUNTIME) : null;
  const pyodide = restored ? restored.pyodide : await startPyodide(RUNTIME);
  const texts = await sources;
  writeModules(pyodide, modules, texts);
  const kept = restored ? forgetStaleModules(pyodide, restored.modules, moduleHashes(modules, texts)) : [];
  performance.mark("pyjobqueue:modules", { detail: { fromSnapshot: kept } });
  return pyodide;
}
