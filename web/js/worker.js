// The console's module Web Worker: a second Pyodide that runs this tab's JobQueueServer,
// so CPU-bound jobs never block the page. Pyodide loads only in module workers:
// the page starts this file with `new Worker(url, { type: "module" })`.
import { bootPython } from "./python.js";

function report(type, detail) {
  postMessage(JSON.stringify({ type, ...detail }));
}

let server = null;
const pending = [];

self.onmessage = (event) => {
  if (server === null) {
    pending.push(event.data);
  } else {
    handle(event.data);
  }
};

async function handle(data) {
  const message = JSON.parse(data);
  try {
    if (message.type === "scale") {
      await server.scale(message.count);
    }
  } catch (error) {
    report("error", { message: String(error) });
  }
}

try {
  const pyodide = await bootPython(["console_jobs", "console_worker"]);
  const module = pyodide.pyimport("console_worker");
  server = await module.start();
  module.destroy();
  pending.splice(0).forEach(handle);
} catch (error) {
  report("error", { message: `the worker could not start: ${error}` });
}
