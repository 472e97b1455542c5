// Starting a Pyodide runtime with pyjobqueue: the usual way (`startPyodide`), or from a
// memory snapshot with pyjobqueue installed and imported, the interpreter's memory as
// it was then, which a start restores instead of starting Python (most of the time a
// page takes to be ready). Shared by the web app (web/js/python.js, which loads this
// file from the runtime it sits in, copied there as pyjobqueue-boot.mjs by the build),
// the build itself (buildtasks/make_snapshot.mjs, in Node) and the worker of
// `WorkerServer` (server_worker.mjs, which gets it as a blob: URL). Nothing here imports anything: the caller passes its runtime as
// `{ loadPyodide, version, indexURL }` (pyodide.mjs's exports and its folder).
//
// A snapshot is found in the Cache API (one made in the browser, or the build's kept
// there after its first use), or next to the runtime: the build names its own in the
// runtime's lock file (`pyjobqueue.snapshot`, and `pyjobqueue.modules`, the app modules
// it imported too). The snapshot APIs are private in Pyodide (`_makeSnapshot`,
// `_loadSnapshot`): any failure to restore says so and returns null, and the caller
// starts as usual.

const SNAPSHOT_CACHE = "pyjobqueue-snapshot";
const HOME = "/home/pyodide";
// Bumped when how a snapshot is made changes (the imports below name it by themselves).
const SNAPSHOT_FORMAT = 3;
// Imported before the snapshot is taken: what the console's page and worker, and the
// worker of a WorkerServer, import.
const SNAPSHOT_IMPORTS = [
  "pyjobqueue",
  "pyjobqueue.browser",
  "pyjobqueue.browser._worker_main",
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
export const PACKAGE = "pyjobqueue";

export async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) {
    throw new Error(`cannot load ${url}: HTTP ${response.status}`);
  }
  return response;
}

// The runtime's lock file.
async function readLock(indexURL) {
  return (await fetchOk(new URL("pyodide-lock.json", indexURL))).json();
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

// What names a snapshot: the format, the imports, our wheels' hashes and the app
// modules it imported too (`moduleHashes`), if any.
function snapshotId(entries, modules = {}) {
  const hashes = entries.map((entry) => entry.sha256.slice(0, 12));
  const id = [SNAPSHOT_FORMAT, fnv1a(SNAPSHOT_IMPORTS.join(" ")), ...hashes];
  const names = Object.keys(modules).sort();
  if (names.length) id.push(fnv1a(names.map((name) => `${name}:${modules[name]}`).join(" ")));
  return id.join("-");
}

// Where the Cache API keeps a snapshot (a URL of the runtime's, with its version).
function snapshotKey(runtime, entries, modules) {
  return new URL(`pyjobqueue-snapshot/${runtime.version}/${snapshotId(entries, modules)}`, runtime.indexURL).href;
}

// The file name of the build's own snapshot, next to the runtime (so of its version).
export function prebuiltSnapshotName(entries, modules = {}) {
  return `pyjobqueue-snapshot-${snapshotId(entries, modules)}.bin.gz`;
}

async function fetchWheels(indexURL, entries) {
  return Promise.all(
    entries.map(async (entry) => {
      const wheel = await fetchOk(new URL(entry.file_name, indexURL));
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

export function writeModules(pyodide, names, texts) {
  names.forEach((name, index) => pyodide.FS.writeFile(`${HOME}/${name}.py`, texts[index]));
}

// Installs the wheels and imports what a snapshot holds, in a Pyodide loaded with
// `_makeSnapshot` (in a browser's worker, or by the build in Node). The build's
// snapshot also imports app modules (`names`, their source `texts`: the console's page
// side), so that a page that imports the same files skips compiling them.
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
export function forgetStaleModules(pyodide, inSnapshot, wanted) {
  const names = Object.keys(inSnapshot).sort();
  const edited = names.some((name) => name in wanted && wanted[name] !== inSnapshot[name]);
  const gone = names.filter((name) => edited || !(name in wanted));
  if (gone.length) {
    pyodide.runPython(`import sys\nfor name in ${JSON.stringify(gone)}:\n    sys.modules.pop(name, None)`);
  }
  return names.filter((name) => !gone.includes(name));
}

// Stores a snapshot in the Cache API, in place of another build's.
async function keepSnapshot(cache, key, snapshot) {
  const body = new Response(snapshot, { headers: { "Content-Type": "application/octet-stream" } });
  for (const old of await cache.keys()) await cache.delete(old);
  await cache.put(key, body);
}

// The app modules the build's snapshot imported, as the lock file names them, or null
// when the build made no snapshot (one made in the browser has no app modules).
function prebuiltModules(lock, entries) {
  const modules = lock.pyjobqueue?.modules ?? {};
  return lock.pyjobqueue?.snapshot === prebuiltSnapshotName(entries, modules) ? modules : null;
}

// The build's own snapshot (gunzipped).
async function fetchPrebuilt(indexURL, entries, modules) {
  const response = await fetchOk(new URL(prebuiltSnapshotName(entries, modules), indexURL));
  const gunzipped = response.body.pipeThrough(new DecompressionStream("gzip"));
  return new Response(gunzipped).arrayBuffer();
}

// Makes a snapshot of the runtime and keeps it in the Cache API; its size in bytes.
// In a worker of its own: the Pyodide it loads for that serves nothing else.
export async function makeSnapshot(runtime) {
  const entries = packageEntriesOf(await readLock(runtime.indexURL));
  const [pyodide, wheels] = await Promise.all([
    runtime.loadPyodide({ indexURL: runtime.indexURL, _makeSnapshot: true }),
    fetchWheels(runtime.indexURL, entries),
  ]);
  prepareSnapshot(pyodide, entries, wheels);
  const snapshot = pyodide.makeMemorySnapshot();
  await keepSnapshot(await caches.open(SNAPSHOT_CACHE), snapshotKey(runtime, entries, {}), snapshot);
  return snapshot.byteLength;
}

// Whether the runtime has no snapshot yet (neither the build's nor one in the Cache API).
export async function lacksSnapshot(runtime) {
  const lock = await readLock(runtime.indexURL);
  const entries = packageEntriesOf(lock);
  if (prebuiltModules(lock, entries) !== null) return false;
  const cache = await caches.open(SNAPSHOT_CACHE);
  return !(await cache.match(snapshotKey(runtime, entries, {})));
}

// Whether the snapshot holds every package asked for: a name of the lock file, or the
// URL of its wheel next to the runtime.
function holds(runtime, entries, packages) {
  const given = new Set(entries.flatMap((entry) => [entry.name, new URL(entry.file_name, runtime.indexURL).href]));
  return packages.every((name) => given.has(name));
}

// The runtime started the usual way, with `packages` (names in its lock file, or wheel
// URLs, which micropip installs). Marks the performance timeline as restoreSnapshot does
// (`detail.snapshot` false).
export async function startPyodide(runtime, packages = [PACKAGE]) {
  const pyodide = await runtime.loadPyodide({ indexURL: runtime.indexURL });
  performance.mark("pyjobqueue:interpreter", { detail: { snapshot: false } });
  const names = packages.filter((name) => !name.includes("/"));
  const wheels = packages.filter((name) => name.includes("/"));
  if (wheels.length) names.push("micropip");
  // loadPackage reports a failure only through errorCallback: collect it and throw.
  const errors = [];
  await pyodide.loadPackage(names, {
    messageCallback: () => {},
    errorCallback: (message) => errors.push(message),
  });
  if (errors.length) throw new Error(`cannot load ${names.join(", ")}: ${errors.join("; ")}`);
  if (wheels.length) await pyodide.pyimport("micropip").install(wheels);
  performance.mark("pyjobqueue:packages");
  return pyodide;
}

// The runtime restored from a snapshot, with pyjobqueue (and `packages`: names or wheel
// URLs, which must be ones the snapshot holds) installed: `{ pyodide, modules }`, the
// app modules it holds imported (`moduleHashes`); or null (none stored, or it failed).
// Marks the performance timeline when the interpreter is up (`pyjobqueue:interpreter`,
// `detail.snapshot` true) and when the packages are installed (`pyjobqueue:packages`).
export async function restoreSnapshot(runtime, packages = [PACKAGE]) {
  let key = null;
  try {
    if (typeof caches === "undefined") return null;
    const [lock, cache] = await Promise.all([readLock(runtime.indexURL), caches.open(SNAPSHOT_CACHE)]);
    const entries = packageEntriesOf(lock);
    if (!holds(runtime, entries, packages)) return null;
    const prebuilt = prebuiltModules(lock, entries);
    const modules = prebuilt ?? {};
    key = snapshotKey(runtime, entries, modules);
    const stored = await cache.match(key);
    if (!stored && !prebuilt) return null;
    // Pyodide awaits the snapshot (and the lock file) itself: the runtime's download and
    // compile go on meanwhile, as do the wheels' downloads.
    const snapshot = stored ? stored.arrayBuffer() : fetchPrebuilt(runtime.indexURL, entries, modules);
    const wheels = fetchWheels(runtime.indexURL, entries);
    wheels.catch(() => {}); // awaited below
    const pyodide = await runtime.loadPyodide({
      indexURL: runtime.indexURL,
      // The lock file read above; with it, Pyodide needs to be told where packages are.
      lockFileContents: lock,
      packageBaseUrl: runtime.indexURL,
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
