// The console's module Web Worker: a second Pyodide that runs this tab's JobQueueServer,
// so CPU-bound jobs never block the page. Pyodide loads only in module workers:
// the page starts this file with `new Worker(url, { type: "module" })`. The server
// reports to the page with postMessage (web/py/console_worker.py).
import { bootPython } from "./python.js";

try {
  const params = new URL(self.location.href).searchParams;
  const snapshot = params.get("snapshot") !== "0";
  const pyodide = await bootPython(["console_jobs", "console_worker"], { snapshot });
  const module = pyodide.pyimport("console_worker");
  // Kept for the life of the worker: the server runs until the tab closes.
  self.consoleServer = await module.start(params.get("queue"), params.get("schedule"));
  module.destroy();
} catch (error) {
  postMessage(JSON.stringify({ type: "error", message: `the job worker could not start: ${error}` }));
}
