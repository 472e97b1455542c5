// Boot a Pyodide with pyjobqueue installed and the console's Python modules on its path.
// Used by the page (main thread) and by the module Web Worker alike: everything comes
// from this origin (web/dist/pyodide/ is assembled by `python build.py serve`).
//
// With `snapshot`, a start begins from a memory snapshot when one of this build is
// stored: the interpreter's memory as it was with pyjobqueue installed and imported,
// which skips Python's own start (most of the time a page takes to be ready). The first
// visit starts as usual; `saveSnapshot()` then makes the snapshot in a worker of its own
// (web/js/snapshot-worker.js) and keeps it in the Cache API for the next start. The
// snapshot APIs are private in Pyodide (`_makeSnapshot`, `_loadSnapshot`): any failure
// to restore falls back to the usual start.
import { loadPyodide, version as PYODIDE_VERSION } from "../dist/pyodide/pyodide.mjs";

const INDEX_URL = new URL("../dist/pyodide/", import.meta.url).href;
const PYTHON_DIR = new URL("../py/", import.meta.url);
const HOME = "/home/pyodide";
const SNAPSHOT_CACHE = "pyjobqueue-snapshot";
// Bumped when what a snapshot holds changes: the modules below, or how they are installed.
const SNAPSHOT_FORMAT = 1;
// Imported before the snapshot is taken: what the console's page and worker import.
const SNAPSHOT_IMPORTS = [
  "pyjobqueue",
  "pyjobqueue.browser",
  "pyjobqueue.events",
  "pyjobqueue.leader",
  "pyjobqueue.storage",
  "pyjobqueue.worker",
  "asyncio",
  "hashlib",
  "logging",
  "uuid",
  "zoneinfo",
];
const PACKAGE = "pyjobqueue";

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) {
    throw new Error(`cannot load ${url}: HTTP ${response.status}`);
  }
  return response;
}

async function fetchText(url) {
  return (await fetchOk(url)).text();
}

// loadPackage reports a failure only through errorCallback: collect it and throw.
async function loadPackages(pyodide, names) {
  const errors = [];
  await pyodide.loadPackage(names, {
    messageCallback: () => {},
    errorCallback: (message) => errors.push(message),
  });
  if (errors.length) {
    throw new Error(`cannot load ${names.join(", ")}: ${errors.join("; ")}`);
  }
}

// -- the snapshot ---------------------------------------------------------------------------

// pyjobqueue's lock entry and those of its dependencies, as the lock file lists them.
async function packageEntries() {
  const lock = JSON.parse(await fetchText(new URL("pyodide-lock.json", INDEX_URL)));
  const entries = [];
  const visit = (name) => {
    const entry = lock.packages[name];
    if (!entry) throw new Error(`${name} is not in pyodide-lock.json`);
    if (entries.includes(entry)) return;
    entries.push(entry);
    entry.depends.forEach(visit);
  };
  visit(PACKAGE);
  return entries;
}

// Where this build's snapshot is kept: the Pyodide version and our wheels' hashes name it.
function snapshotKey(entries) {
  const hashes = entries.map((entry) => entry.sha256.slice(0, 16)).join("-");
  return new URL(`../snapshot/${PYODIDE_VERSION}/${SNAPSHOT_FORMAT}/${hashes}`, import.meta.url).href;
}

async function fetchWheels(entries) {
  return Promise.all(
    entries.map(async (entry) => {
      const wheel = await fetchOk(new URL(entry.file_name, INDEX_URL));
      return new Uint8Array(await wheel.arrayBuffer());
    }),
  );
}

// Unpacks the wheels into site-packages, as loadPackage would (which a snapshot refuses:
// it leaves JavaScript objects in the interpreter).
function unpackWheels(pyodide, wheels) {
  const sitePackages = pyodide.runPython("import sysconfig\nsysconfig.get_path('purelib')");
  for (const wheel of wheels) pyodide.unpackArchive(wheel, "wheel", { extractDir: sitePackages });
}

// Makes this build's snapshot and stores it (in a worker: see snapshot-worker.js).
export async function makeSnapshot() {
  const entries = await packageEntries();
  const [pyodide, wheels] = await Promise.all([
    loadPyodide({ indexURL: INDEX_URL, _makeSnapshot: true }),
    fetchWheels(entries),
  ]);
  unpackWheels(pyodide, wheels);
  pyodide.runPython(SNAPSHOT_IMPORTS.map((name) => `import ${name}`).join("\n"));
  const snapshot = pyodide.makeMemorySnapshot();
  const cache = await caches.open(SNAPSHOT_CACHE);
  for (const old of await cache.keys()) await cache.delete(old); // another build's
  const headers = { "Content-Type": "application/octet-stream" };
  await cache.put(snapshotKey(entries), new Response(snapshot, { headers }));
  return snapshot.byteLength;
}

// After the first start: make the snapshot for the next ones unless it is stored already.
// Resolves with its size in bytes (0: it was there).
export async function saveSnapshot() {
  const cache = await caches.open(SNAPSHOT_CACHE);
  if (await cache.match(snapshotKey(await packageEntries()))) return 0;
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

// A Pyodide restored from this build's snapshot, or null (none stored, or it failed).
async function fromSnapshot() {
  let key = null;
  try {
    if (typeof caches === "undefined") return null;
    const entries = await packageEntries();
    key = snapshotKey(entries);
    const cache = await caches.open(SNAPSHOT_CACHE);
    const stored = await cache.match(key);
    if (!stored) return null;
    const [snapshot, wheels] = await Promise.all([stored.arrayBuffer(), fetchWheels(entries)]);
    const pyodide = await loadPyodide({ indexURL: INDEX_URL, _loadSnapshot: snapshot });
    performance.mark("pyjobqueue:interpreter", { detail: { snapshot: true } });
    // The files were not in the snapshot (only the interpreter's memory is): a module
    // imported later, a traceback's source lines and tzdata's zones need them.
    unpackWheels(pyodide, wheels);
    // Every start from one snapshot would draw the same numbers (retry jitter) otherwise.
    pyodide.runPython("import random\nrandom.seed()");
    performance.mark("pyjobqueue:packages");
    return pyodide;
  } catch (error) {
    console.warn(`starting without the memory snapshot: ${error}`);
    if (key) await caches.open(SNAPSHOT_CACHE).then((cache) => cache.delete(key), () => {});
    return null;
  }
}

async function freshStart() {
  const pyodide = await loadPyodide({ indexURL: INDEX_URL });
  performance.mark("pyjobqueue:interpreter", { detail: { snapshot: false } });
  await loadPackages(pyodide, [PACKAGE]);
  performance.mark("pyjobqueue:packages");
  return pyodide;
}

// `snapshot`: start from this build's memory snapshot when one is stored. Marks the
// performance timeline when the interpreter is up (`pyjobqueue:interpreter`) and when
// pyjobqueue is installed (`pyjobqueue:packages`), for bench/browser_start.py; the first
// mark's detail says whether the start was from the snapshot.
export async function bootPython(modules, { snapshot = false } = {}) {
  const sources = Promise.all(modules.map((name) => fetchText(new URL(`${name}.py`, PYTHON_DIR))));
  sources.catch(() => {}); // awaited below
  const pyodide = (snapshot && (await fromSnapshot())) || (await freshStart());
  const texts = await sources;
  modules.forEach((name, index) => pyodide.FS.writeFile(`${HOME}/${name}.py`, texts[index]));
  return pyodide;
}
