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
// (web/js/snapshot-worker.js) and keeps it in the Cache API for the next starts. The
// snapshot APIs are private in Pyodide (`_makeSnapshot`, `_loadSnapshot`): any failure
// to restore falls back to the usual start.
import { loadPyodide, version as PYODIDE_VERSION } from "../dist/pyodide/pyodide.mjs";

const INDEX_URL = new URL("../dist/pyodide/", import.meta.url).href;
const PYTHON_DIR = new URL("../py/", import.meta.url);
const HOME = "/home/pyodide";
const SNAPSHOT_CACHE = "pyjobqueue-snapshot";
// Bumped when how a snapshot is made changes (the imports below name it by themselves).
const SNAPSHOT_FORMAT = 2;
// Imported before the snapshot is taken: what the console's page and worker import.
const SNAPSHOT_IMPORTS = [
  "pyjobqueue",
  "pyjobqueue.browser",
  "pyjobqueue.events",
  "pyjobqueue.leader",
  "pyjobqueue.storage",
  "pyjobqueue.worker",
  "pyjobqueue._listing",
  "pyjobqueue.schedules",
  "pyjobqueue.browser.broadcast",
  "pyjobqueue.storage.indexeddb",
  "asyncio",
  "json",
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

// The runtime's lock file. Our build adds `pyjobqueue.snapshot` to it: the name of its
// memory snapshot, when it made one.
async function readLock() {
  return JSON.parse(await fetchText(new URL("pyodide-lock.json", INDEX_URL)));
}

// pyjobqueue's lock entry and those of its dependencies, as the lock file lists them.
export function packageEntriesOf(lock) {
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

// FNV-1a, 32 bits, in hex: names what went into a snapshot (not a check of integrity).
function fnv1a(text) {
  let hash = 0x811c9dc5;
  for (let index = 0; index < text.length; index++) {
    hash = Math.imul(hash ^ text.charCodeAt(index), 0x01000193) >>> 0;
  }
  return hash.toString(16);
}

// The app's own modules as a snapshot names them: {name: hash of its source}.
export function moduleHashes(names, texts) {
  return Object.fromEntries(names.map((name, index) => [name, fnv1a(texts[index])]));
}

// What names a snapshot of this build: the format, the imports, our wheels' hashes and
// the app modules it imported too (`moduleHashes`), if any.
function snapshotId(entries, modules = {}) {
  const hashes = entries.map((entry) => entry.sha256.slice(0, 12));
  const id = [SNAPSHOT_FORMAT, fnv1a(SNAPSHOT_IMPORTS.join(" ")), ...hashes];
  const names = Object.keys(modules).sort();
  if (names.length) id.push(fnv1a(names.map((name) => `${name}:${modules[name]}`).join(" ")));
  return id.join("-");
}

// Where the Cache API keeps a snapshot (with the Pyodide version).
function snapshotKey(entries, modules) {
  return new URL(`../snapshot/${PYODIDE_VERSION}/${snapshotId(entries, modules)}`, import.meta.url).href;
}

// The file name of the build's own snapshot, next to the runtime (so of its version).
export function prebuiltSnapshotName(entries, modules = {}) {
  return `pyjobqueue-snapshot-${snapshotId(entries, modules)}.bin.gz`;
}

async function fetchWheels(entries) {
  return Promise.all(
    entries.map(async (entry) => {
      const wheel = await fetchOk(new URL(entry.file_name, INDEX_URL));
      return new Uint8Array(await wheel.arrayBuffer());
    }),
  );
}

// Installs the wheels as a snapshot has them: ours unpacked into site-packages, as
// loadPackage would (which a snapshot refuses: it leaves JavaScript objects in the
// interpreter); its dependencies (tzdata: 600 small files) written as they are, zips
// that Python imports from, which is faster at every restore. Returns those zips' paths.
function installWheels(pyodide, entries, wheels) {
  const sitePackages = pyodide.runPython("import sysconfig\nsysconfig.get_path('purelib')");
  const zips = [];
  entries.forEach((entry, index) => {
    if (entry.name === PACKAGE) {
      pyodide.unpackArchive(wheels[index], "wheel", { extractDir: sitePackages });
    } else {
      const path = `${sitePackages}/${entry.file_name}`;
      pyodide.FS.writeFile(path, wheels[index]);
      zips.push(path);
    }
  });
  return zips;
}

function writeModules(pyodide, names, texts) {
  names.forEach((name, index) => pyodide.FS.writeFile(`${HOME}/${name}.py`, texts[index]));
}

// Installs the wheels and imports what a snapshot holds, in a Pyodide loaded with
// `_makeSnapshot` (here, or by the build in Node). The build's snapshot also imports
// app modules (`names`, their source `texts`: the console's page side), so that a page
// that imports the same files skips compiling them.
export function prepareSnapshot(pyodide, entries, wheels, names = [], texts = []) {
  const zips = installWheels(pyodide, entries, wheels);
  // On sys.path in the snapshot's memory: a restore only writes the files again.
  pyodide.runPython(`import sys\nsys.path.extend(${JSON.stringify(zips)})`);
  writeModules(pyodide, names, texts);
  pyodide.runPython([...SNAPSHOT_IMPORTS, ...names].map((name) => `import ${name}`).join("\n"));
}

// After a restore: the snapshot's app modules stay imported only for a page that wants
// the same files. Those it does not want go (a page of its own may have a module of
// that name); all go when one it wants was edited since the build (the others may hold
// what they imported from it), and are imported again from the files.
// Returns the names of those it keeps.
function forgetStaleModules(pyodide, inSnapshot, wanted) {
  const names = Object.keys(inSnapshot).sort();
  const edited = names.some((name) => name in wanted && wanted[name] !== inSnapshot[name]);
  const gone = names.filter((name) => edited || !(name in wanted));
  if (gone.length) {
    pyodide.runPython(`import sys\nfor name in ${JSON.stringify(gone)}:\n    sys.modules.pop(name, None)`);
  }
  return names.filter((name) => !gone.includes(name));
}

// Makes this build's snapshot and stores it (in a worker: see snapshot-worker.js).
export async function makeSnapshot() {
  const entries = packageEntriesOf(await readLock());
  const [pyodide, wheels] = await Promise.all([
    loadPyodide({ indexURL: INDEX_URL, _makeSnapshot: true }),
    fetchWheels(entries),
  ]);
  prepareSnapshot(pyodide, entries, wheels);
  const snapshot = pyodide.makeMemorySnapshot();
  await keepSnapshot(await caches.open(SNAPSHOT_CACHE), snapshotKey(entries, {}), snapshot);
  return snapshot.byteLength;
}

// Stores a snapshot in the Cache API, in place of another build's.
async function keepSnapshot(cache, key, snapshot) {
  const body = new Response(snapshot, { headers: { "Content-Type": "application/octet-stream" } });
  for (const old of await cache.keys()) await cache.delete(old);
  await cache.put(key, body);
}

// The app modules the build's snapshot imported, as the lock file names them (none when
// the build made no snapshot: one made in the browser has none).
function prebuiltModules(lock, entries) {
  const modules = lock.pyjobqueue?.modules ?? {};
  return lock.pyjobqueue?.snapshot === prebuiltSnapshotName(entries, modules) ? modules : null;
}

function hasPrebuilt(lock, entries) {
  return prebuiltModules(lock, entries) !== null;
}

// The build's own snapshot (gunzipped).
async function fetchPrebuilt(entries, modules) {
  const response = await fetchOk(new URL(prebuiltSnapshotName(entries, modules), INDEX_URL));
  const gunzipped = response.body.pipeThrough(new DecompressionStream("gzip"));
  return new Response(gunzipped).arrayBuffer();
}

// After the first start: make the snapshot for the next ones, unless the build has one
// or it is stored already. Resolves with its size in bytes (0: none was needed).
export async function saveSnapshot() {
  const lock = await readLock();
  const entries = packageEntriesOf(lock);
  if (hasPrebuilt(lock, entries)) return 0;
  const cache = await caches.open(SNAPSHOT_CACHE);
  if (await cache.match(snapshotKey(entries, {}))) return 0;
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

// This build's snapshot restored, or null (none stored, or it failed): `{ pyodide,
// modules }`, the app modules it holds imported (`moduleHashes`).
async function fromSnapshot() {
  let key = null;
  try {
    if (typeof caches === "undefined") return null;
    const [lock, cache] = await Promise.all([readLock(), caches.open(SNAPSHOT_CACHE)]);
    const entries = packageEntriesOf(lock);
    const prebuilt = prebuiltModules(lock, entries);
    const modules = prebuilt ?? {};
    key = snapshotKey(entries, modules);
    const stored = await cache.match(key);
    if (!stored && !prebuilt) return null;
    // Pyodide awaits the snapshot (and the lock file) itself: the runtime's download and
    // compile go on meanwhile, as do the wheels' downloads.
    const snapshot = stored ? stored.arrayBuffer() : fetchPrebuilt(entries, modules);
    const wheels = fetchWheels(entries);
    wheels.catch(() => {}); // awaited below
    const pyodide = await loadPyodide({
      indexURL: INDEX_URL,
      // The lock file read above; with it, Pyodide needs to be told where packages are.
      lockFileContents: lock,
      packageBaseUrl: INDEX_URL,
      _loadSnapshot: snapshot,
    });
    performance.mark("pyjobqueue:interpreter", { detail: { snapshot: true } });
    if (!stored) {
      // Kept as it is for the next starts: reading it is faster than gunzipping it again.
      keepSnapshot(cache, key, await snapshot).catch((error) => console.warn(`not kept: ${error}`));
    }
    // The files were not in the snapshot (only the interpreter's memory is): a module
    // imported later, a traceback's source lines and tzdata's zones need them.
    installWheels(pyodide, entries, await wheels);
    // Every start from one snapshot would draw the same numbers (retry jitter) otherwise.
    pyodide.runPython("import random\nrandom.seed()");
    performance.mark("pyjobqueue:packages");
    return { pyodide, modules };
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
// performance timeline when the interpreter is up (`pyjobqueue:interpreter`), when
// pyjobqueue is installed (`pyjobqueue:packages`) and when `modules` are written
// (`pyjobqueue:modules`), for bench/browser_start.py; the first mark's detail says
// whether the start was from the snapshot, the last's which of `modules` the snapshot
// had imported already (`fromSnapshot`; the others are imported from their files).
export async function bootPython(modules, { snapshot = false } = {}) {
  const sources = Promise.all(modules.map((name) => fetchText(new URL(`${name}.py`, PYTHON_DIR))));
  sources.catch(() => {}); // awaited below
  const restored = snapshot ? await fromSnapshot() : null;
  const pyodide = restored ? restored.pyodide : await freshStart();
  const texts = await sources;
  writeModules(pyodide, modules, texts);
  const kept = restored ? forgetStaleModules(pyodide, restored.modules, moduleHashes(modules, texts)) : [];
  performance.mark("pyjobqueue:modules", { detail: { fromSnapshot: kept } });
  return pyodide;
}
