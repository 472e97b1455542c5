// Loads Pyodide from the assembled runtime, installs our wheel and pytest from its
// lock file (no network), unpacks the packed suite and runs pytest inside Pyodide.
// Shared by the Node runner (node_main.mjs) and the browser page (suite.html).

export const PACKAGES = ["pyjobqueue", "pytest", "pytest-asyncio"];
export const SUITE_DIR = "/home/pyodide/suite";

export async function loadRuntime(loadPyodide, indexURL, packages = PACKAGES, log = console.log) {
  const started = Date.now();
  const pyodide = await loadPyodide({ indexURL, stdout: log, stderr: log });
  const errors = [];
  // loadPackage reports a missing package through errorCallback and does not throw.
  await pyodide.loadPackage(packages, {
    messageCallback: () => {},
    errorCallback: (message) => errors.push(message),
  });
  if (errors.length) {
    throw new Error(`loading ${packages.join(", ")} failed: ${errors.join("; ")}`);
  }
  log(`pyodide ${pyodide.version} ready with ${packages.join(", ")} in ${Date.now() - started} ms`);
  return pyodide;
}

export async function runSuite(pyodide, archive, args, holdAt = []) {
  pyodide.FS.mkdirTree(SUITE_DIR);
  pyodide.unpackArchive(archive, "zip", { extractDir: SUITE_DIR });
  const run = pyodide.runPython(`
import sys
sys.path.insert(0, ${JSON.stringify(SUITE_DIR)})
import pyodide_pytest
pyodide_pytest.run
`);
  try {
    // callPromising lets pytest-asyncio block on coroutines (JSPI stack switching).
    return await run.callPromising(SUITE_DIR, pyodide.toPy(args), pyodide.toPy(holdAt));
  } finally {
    run.destroy();
  }
}
