// Makes this build's memory snapshot in a Pyodide of its own (see python.js), so the
// page's and the console worker's Pythons never run in the snapshot mode, and tells the
// page its size or why it failed.
import { makeSnapshot } from "./python.js";

try {
  postMessage({ bytes: await makeSnapshot() });
} catch (error) {
  postMessage({ error: `cannot make the memory snapshot: ${error}` });
}
