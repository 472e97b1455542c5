// The module Web Worker of pyjobqueue.browser.WorkerServer: a Pyodide of its own with
// pyjobqueue, the page's job module and a JobQueueServer. The page starts it from this
// file's text (a blob: URL, so it needs no address of its own) and sends one message:
// where Pyodide is, what to install, the shared Int32Array of the hard cancel (on a
// cross-origin isolated page) and the server's request for
// pyjobqueue/browser/_worker_main.py, which answers the page from then on.
self.onmessage = async ({ data }) => {
  self.onmessage = null;
  try {
    const { loadPyodide } = await import(data.pyodideModule);
    const pyodide = await loadPyodide({ indexURL: data.indexURL });
    if (data.shared) pyodide.setInterruptBuffer(data.shared);
    const names = data.packages.filter((name) => !name.includes("/"));
    const wheels = data.packages.filter((name) => name.includes("/"));
    if (wheels.length) names.push("micropip");
    // loadPackage reports a failure only through errorCallback.
    const errors = [];
    await pyodide.loadPackage(names, {
      messageCallback: () => {},
      errorCallback: (message) => errors.push(message),
    });
    if (errors.length) throw new Error(`cannot load ${names.join(", ")}: ${errors.join("; ")}`);
    if (wheels.length) await pyodide.pyimport("micropip").install(wheels);
    const main = pyodide.pyimport("pyjobqueue.browser._worker_main");
    // Kept for the life of the worker: the server runs until the page stops it.
    self.pyjobqueueWorker = await main.start(data.request, data.shared);
  } catch (error) {
    postMessage(JSON.stringify({ type: "error", message: String(error.message || error) }));
  }
};
