// Makes the memory snapshot that a first visit starts from (see
// pyjobqueue/browser/boot.mjs), in Node: the same Pyodide runtime (its build id is
// checked on restore), pyjobqueue installed and imported as a snapshot made in the
// browser would have them, and the app modules given (Python files; imported too, so
// that a page importing them skips it).
//
//   node buildtasks/make_snapshot.mjs <runtime directory> <cache directory> [module.py...]
//
// Writes the gzipped snapshot into the runtime directory under the name python.js looks
// for (taking it from the cache directory when this Pyodide version made it already),
// names it in the runtime's lock file as `pyjobqueue.snapshot`, with the modules' hashes
// as `pyjobqueue.modules`, and prints that name.
import fs from "node:fs";
import path from "node:path";
import url from "node:url";
import zlib from "node:zlib";
import {
  moduleHashes,
  packageEntriesOf,
  prebuiltSnapshotName,
  prepareSnapshot,
} from "../pyjobqueue/browser/boot.mjs";

const [runtime, cacheRoot, ...moduleFiles] = process.argv.slice(2).map((arg) => path.resolve(arg));
const names = moduleFiles.map((file) => path.basename(file, ".py"));
const texts = moduleFiles.map((file) => fs.readFileSync(file, "utf8"));
const modules = moduleHashes(names, texts);
const { loadPyodide, version } = await import(url.pathToFileURL(path.join(runtime, "pyodide.mjs")).href);
const lock = JSON.parse(fs.readFileSync(path.join(runtime, "pyodide-lock.json"), "utf8"));
const entries = packageEntriesOf(lock);
const name = prebuiltSnapshotName(entries, modules);
const cached = path.join(cacheRoot, version, name);
if (!fs.existsSync(cached)) {
  const wheels = entries.map((entry) => new Uint8Array(fs.readFileSync(path.join(runtime, entry.file_name))));
  // No script of Node's as sys.executable: a page has none.
  const pyodide = await loadPyodide({ indexURL: runtime + path.sep, _makeSnapshot: true, _sysExecutable: "" });
  prepareSnapshot(pyodide, entries, wheels, names, texts);
  const snapshot = zlib.gzipSync(pyodide.makeMemorySnapshot(), { level: 6 });
  fs.mkdirSync(path.dirname(cached), { recursive: true });
  fs.writeFileSync(`${cached}.tmp`, snapshot);
  fs.renameSync(`${cached}.tmp`, cached);
}
for (const old of fs.readdirSync(runtime)) {
  if (old.startsWith("pyjobqueue-snapshot-") && old !== name) fs.rmSync(path.join(runtime, old));
}
fs.copyFileSync(cached, path.join(runtime, name));
lock.pyjobqueue = { snapshot: name, modules };
fs.writeFileSync(path.join(runtime, "pyodide-lock.json"), JSON.stringify(lock, null, 1) + "\n");
console.log(name);
