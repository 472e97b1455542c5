// The module Web Worker of pyjobqueue.browser.WorkerServer: a Pyodide of its own with
// pyjobqueue, the page's job module and a JobQueueServer. The page starts it from this
// file's text (a blob: URL, so it needs no address of its own) and sends one message:
// where Pyodide is, what to install, boot.mjs (as a blob: URL too), the shared
// Int32Array of the hard cancel (on a cross-origin isolated page) and the server's
// request for pyjobqueue/browser/_worker_main.py, which answers the page from then on.
self.onmessage = async ({ data }) => {
  self.onmessage = null;
  try {
    const { loadPyodide, version } = await import(data.pyodideModule);
    // A runtime our build assembled has a memory snapshot with pyjobqueue installed and
    // imported: restored, the worker's Python is up in a fraction of its usual start.
    const boot = await import(data.bootModule);
    const runtime = { loadPyodide, version, indexURL: data.indexURL };
    const restored = await boot.restoreSnapshot(runtime, data.packages);
    const pyodide = restored ? restored.pyodide : await boot.startPyodide(runtime, data.packages);
    // The console's page modules, which the build's snapshot holds, are not the worker's.
    if (restored) boot.forgetStaleModules(pyodide, restored.modules, {});
    if (data.shared) pyodide.setInterruptBuffer(data.shared);
    const main = pyodide.pyimport("pyjobqueue.browser._worker_main");
    const request = { ...JSON.parse(data.request), snapshot: restored !== null };
    // Kept for the life of the worker: the server runs until the page stops it.
    self.pyjobqueueWorker = await main.start(JSON.stringify(request), data.shared);
  } catch (error) {
    postMessage(JSON.stringify({ type: "error", message: String(error.message || error) }));
  }
};
