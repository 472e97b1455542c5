// Node 24 entry: node node_main.mjs <runtime dir> <suite.zip> <results.json> [pytest args...]
// Streams pytest's output, then writes the recorded outcomes to results.json.
import "fake-indexeddb/auto";
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { loadRuntime, runSuite } from "./pyodide_pytest.mjs";

const [runtimeDir, archivePath, resultsPath, ...args] = process.argv.slice(2);
const indexURL = path.resolve(runtimeDir) + path.sep;
const { loadPyodide } = await import(pathToFileURL(path.join(indexURL, "pyodide.mjs")).href);

function flushed(stream) {
  return new Promise((resolve) => stream.write("", resolve));
}

let exitCode = 0;
try {
  const pyodide = await loadRuntime(loadPyodide, indexURL);
  const archive = new Uint8Array(fs.readFileSync(archivePath));
  fs.writeFileSync(resultsPath, await runSuite(pyodide, archive, args));
} catch (error) {
  console.error(error);
  exitCode = 2;
}
// Open channels and lock requests would keep Node alive: exit once output is written.
await flushed(process.stdout);
await flushed(process.stderr);
process.exit(exitCode);
