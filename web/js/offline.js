// Registers the app's service worker (web/sw.js), which keeps the Pyodide runtime, our
// wheels and the console's files in the Cache API so that the next visit starts from
// there, offline too. Any page of this origin may call it (the README's minimal page).
const SERVICE_WORKER = new URL("../sw.js", import.meta.url);

// Resolves once the worker is active (the files are cached), or with null where the
// browser has no service workers (a page that is not a secure context, for example).
export async function keepOffline() {
  if (!("serviceWorker" in navigator)) return null;
  // The browser checks sw.js and dist/build.js for a new build, bypassing its HTTP cache.
  await navigator.serviceWorker.register(SERVICE_WORKER, { updateViaCache: "none" });
  return navigator.serviceWorker.ready;
}
