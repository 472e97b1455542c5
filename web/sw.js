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
// - The console's own files (its page, JavaScript and Python): from the network, so an
//   edit shows on the next reload, and from the cache when the network fails.
// - Anything else (the JupyterLite site under jupyterlite/, which has a service worker of
//   its own, other pages and their requests): not handled here at all.
importScripts("./dist/build.js");

const BUILD = self.PYJOBQUEUE_BUILD;
const PREFIX = "pyjobqueue-app ";
const CACHE = PREFIX + BUILD.version;
const SCOPE = new URL(self.registration.scope);
const RUNTIME = new URL("dist/pyodide/", SCOPE).href;
const SHELL = new Set(BUILD.shell.map((path) => new URL(path, SCOPE).href));

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

async function install() {
  const older = (await caches.keys()).filter((name) => name.startsWith(PREFIX) && name !== CACHE);
  const previous = older.length ? await caches.open(older[older.length - 1]) : undefined;
  const cache = await caches.open(CACHE);
  await Promise.all([
    ...Object.entries(BUILD.runtime).map(([path, hash]) => fill(cache, path, hash, previous)),
    ...BUILD.shell.map((path) => fill(cache, path, null, undefined)),
  ]);
}

self.addEventListener("install", (event) => {
  // The new build takes over at once: a reload runs it (see activate).
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
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  url.search = "";
  url.hash = "";
  if (url.href.startsWith(RUNTIME)) {
    event.respondWith(fromCache(request));
  } else if (SHELL.has(url.href)) {
    // The page is one entry whatever its query (?queue=...).
    event.respondWith(fromNetwork(request, url.href));
  }
});
