// Boot a Pyodide with pyjobqueue installed and the console's Python modules on its path.
// Used by the page (main thread) and by the module Web Worker alike: everything comes
// from this origin (web/dist/pyodide/ is assembled by `python build.py serve`).
import { loadPyodide } from "../dist/pyodide/pyodide.mjs";

const INDEX_URL = new URL("../dist/pyodide/", import.meta.url).href;
const PYTHON_DIR = new URL("../py/", import.meta.url);
const HOME = "/home/pyodide";

async function fetchText(url) {
  const response = await fetch(url);
  if (!response.ok) {
    throw new Error(`cannot load ${url}: HTTP ${response.status}`);
  }
  return response.text();
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

export async function bootPython(modules) {
  const [pyodide, sources] = await Promise.all([
    loadPyodide({ indexURL: INDEX_URL }),
    Promise.all(modules.map((name) => fetchText(new URL(`${name}.py`, PYTHON_DIR)))),
  ]);
  await loadPackages(pyodide, ["pyjobqueue"]);
  modules.forEach((name, index) => pyodide.FS.writeFile(`${HOME}/${name}.py`, sources[index]));
  return pyodide;
}
