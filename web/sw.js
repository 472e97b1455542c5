// The app's service worker: it keeps the app's files in the Cache API, so a page of this
// origin starts offline, and a reload takes the Pyodide runtime and our wheels from the
// cache without asking the server.
//
// dist/build.js (written by the build next to dist/pyodide/) names this build's version
// and files. A rebuild changes that file, so the browser installs this worker again: the
// new install fills a cache of the new version (reusing the unchanged files of the old
// one), and its activation deletes the old caches.
//
// - dist/pyodide/ (the runtime, the lock file, the wheels): versioned by the build, so
//   served from the cache without revalidation; a file not cached yet (a wheel nobody
//   asked for before) is fetched once and kept.
// - The console's own files (its page, JavaScript and Python), and any other page of the
//   origin once visited (a page of your own that registers this worker): from the
//   network, so an edit shows on the next reload, and from the cache when the network
//   fails.
// - Anything else (the JupyterLite site under jupyterlite/, which has a service worker of
//   its own, and the other requests of pages): not handled here at all.
importScripts("./dist/build.js");

const BUILD = self.PYJOBQUEUE_BUILD;
const PREFIX = "pyjobqueue-app ";
const CACHE = PREFIX + BUILD.version;
const SCOPE = new URL(self.registration.scope);
const RUNTIME = new URL("dist/pyodide/", SCOPE).href;
const SHELL = new Set(BUILD.shell.map((path) => new URL(path, SCOPE).href));
const NOT_HANDLED = [new URL("jupyterlite/", SCOPE).href];

async function fetchOk(request) {
  const response = await fetch(request);
  if (!response.ok) throw new Error(`${request.url || request}: HTTP ${response.status}`);
  return response;
}

// A file that the previous build's cache holds with the same content hash, or the network.
async function fill(cache, path, hash, previous) {
  const url = new URL(path, SCOPE).href;
  const old = hash && previous ? await previous.match(url) : undefined;
  if (old && old.headers.get("x-pyjobqueue-sha256") === hash) {
    await cache.put(url, old);
    return;
  }
  const response = await fetchOk(new Request(url, { cache: "no-cache" }));
  await cache.put(url, hash ? await withHash(response, hash) : response);
}

// The response with its content hash in a header, so that the next build can reuse it.
async function withHash(response, hash) {
  const headers = new Headers(response.headers);
  headers.set("x-pyjobqueue-sha256", hash);
  return new Response(await response.blob(), { status: response.status, headers });
}

function handled(url) {
  return url.startsWith(SCOPE.href) && !NOT_HANDLED.some((prefix) => url.startsWith(prefix));
}

// The key of a page or file: one entry whatever its query (?queue=...).
function keyOf(url) {
  const key = new URL(url);
  key.search = "";
  key.hash = "";
  return key.href;
}

async function install() {
  const older = (await caches.keys()).filter((name) => name.startsWith(PREFIX) && name !== CACHE);
  const previous = older.length ? await caches.open(older[older.length - 1]) : undefined;
  const cache = await caches.open(CACHE);
  // The pages open now: the one that registers this worker was loaded without it.
  const windows = await self.clients.matchAll({ includeUncontrolled: true, type: "window" });
  const pages = windows.map((client) => keyOf(client.url));
  const others = pages.filter((url) => handled(url) && !SHELL.has(url));
  await Promise.all([
    ...Object.entries(BUILD.runtime).map(([path, hash]) => fill(cache, path, hash, previous)),
    ...[...SHELL].map((url) => fill(cache, url, null, undefined)),
    // Best effort: such a page works offline once it is visited under this worker.
    ...others.map((url) => fill(cache, url, null, undefined).catch(() => {})),
  ]);
}

self.addEventListener("install", (event) => {
  // The new build takes over once cached, without waiting for the pages of the old one
  // to close (a reload never closes them all): the next load runs it.
  event.waitUntil(install().then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      const names = await caches.keys();
      await Promise.all(
        names.filter((name) => name.startsWith(PREFIX) && name !== CACHE).map((name) => caches.delete(name)),
      );
      await self.clients.claim();
    })(),
  );
});

async function fromCache(request) {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(request, { ignoreSearch: true });
  if (cached) return cached;
  const response = await fetch(request);
  if (response.ok) await cache.put(request.url, response.clone());
  return response;
}

async function fromNetwork(request, key) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(key, response.clone());
    return response;
  } catch (error) {
    const cached = await cache.match(key);
    if (!cached) throw error;
    // A copy without the cached URL: a worker's location is its script's response URL,
    // and the console's worker reads its parameters (?queue=...) from there.
    return new Response(cached.body, cached);
  }
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const key = keyOf(request.url);
  if (request.method !== "GET" || !handled(key)) return;
  if (key.startsWith(RUNTIME)) {
    event.respondWith(fromCache(request));
  } else if (SHELL.has(key) || request.mode === "navigate") {
    event.respondWith(fromNetwork(request, key));
  }
});
