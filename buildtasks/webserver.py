"""The static web server of ``build.py serve`` and of the browser suites (standard library only).

A ``Site`` says what to serve: directories mounted under URL prefixes, files held in
memory, and hooks (a GET of a hook's path calls it, then answers 204). WebAssembly, ES
modules and wheels get their MIME types. Pages are cross-origin isolated (COOP and
COEP) unless the site says otherwise. ``serve_forever`` runs a site in the
foreground on a given port; ``serving`` runs one in a thread on a free port.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import os
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, BinaryIO

from .commands import BuildError

EXTRA_MIME_TYPES: Mapping[str, str] = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".json": "application/json",
    ".whl": "application/zip",
    ".zip": "application/zip",
    ".tar": "application/x-tar",
}

# Make the browser revalidate every file, so a rebuilt wheel is always picked up. Not
# no-store: a revalidated Pyodide runtime (304) lets Chromium reuse what it cached,
# compiled WebAssembly included, on a reload or in a second tab.
REVALIDATE = "no-cache"
# Nothing kept at all, for suites that must see exactly what is on disk now.
NEVER_STORE = "no-store"
# Sent with every response of an isolated site: the page is then cross-origin isolated
# (`crossOriginIsolated`), so it may share memory with its workers (SharedArrayBuffer),
# which the hard cancel of `pyjobqueue.browser` needs. Everything the site serves
# carries `Cross-Origin-Resource-Policy: cross-origin`, so pages of other origins that
# are isolated themselves can still load our wheel and runtime.
CROSS_ORIGIN_ISOLATION: Mapping[str, str] = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
}


@dataclass(frozen=True)
class Site:
    """What a server serves: directories under URL prefixes, in-memory files and hooks."""

    mounts: Mapping[str, Path]  # URL prefix ending in "/" -> directory
    files: Mapping[str, bytes] = field(default_factory=dict)  # URL path -> content
    hooks: Mapping[str, Callable[[], object]] = field(default_factory=dict)  # URL path -> hook
    cache_control: str = REVALIDATE
    log_requests: bool = True
    isolated: bool = True  # send CROSS_ORIGIN_ISOLATION (COOP and COEP)
    # URL prefixes served without them all the same (see jupyterlite.NOT_ISOLATED)
    unisolated: frozenset[str] = frozenset()

    def mount_for(self, url_path: str) -> tuple[str, Path] | None:
        """The longest mounted prefix of ``url_path`` and its directory, if any."""
        matches = [prefix for prefix in self.mounts if url_path.startswith(prefix)]
        if not matches:
            return None
        prefix = max(matches, key=len)
        return prefix, self.mounts[prefix]


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Answers one request for a ``Site``."""

    def __init__(self, *args: Any, site: Site, **kwargs: Any) -> None:
        self.site = site
        super().__init__(*args, **kwargs)

    def url_path(self) -> str:
        """The request's path, without query or fragment."""
        return urllib.parse.urlsplit(self.path).path

    def do_GET(self) -> None:
        """Run a hook, or serve a file."""
        hook = self.site.hooks.get(self.url_path())
        if hook is None:
            super().do_GET()
            return
        hook()
        self.send_response(HTTPStatus.NO_CONTENT)
        self.end_headers()

    def send_head(self) -> BinaryIO | None:
        """Headers of an in-memory file or a file under a mount; 404 outside the mounts."""
        url_path = self.url_path()
        content = self.site.files.get(url_path)
        if content is not None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", self.guess_type(url_path))
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            return io.BytesIO(content)
        if self.site.mount_for(url_path) is None:
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        head: BinaryIO | None = super().send_head()
        return head

    def translate_path(self, path: str) -> str:
        """The file for a URL path, looked up in the directory of its mount."""
        mount = self.site.mount_for(urllib.parse.urlsplit(path).path)
        if mount is None:
            return ""  # send_head answers 404 before asking
        prefix, directory = mount
        self.directory = str(directory)  # one handler per request: the stdlib's lookup uses it
        return super().translate_path("/" + path[len(prefix) :])

    def guess_type(self, path: str | os.PathLike[str]) -> str:
        """MIME type, with explicit types for .wasm, .mjs and wheels."""
        return EXTRA_MIME_TYPES.get(Path(path).suffix.lower()) or super().guess_type(path)

    def do_OPTIONS(self) -> None:
        """A CORS preflight: any origin may GET what the site serves."""
        self.send_response(HTTPStatus.NO_CONTENT)
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        requested = self.headers.get("Access-Control-Request-Headers")
        if requested:
            self.send_header("Access-Control-Allow-Headers", requested)
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def end_headers(self) -> None:
        """Add the site's Cache-Control header, and CORS headers that let a page of any
        origin (a Pyodide console elsewhere, a notebook) load our wheel and runtime."""
        self.send_header("Cache-Control", self.site.cache_control)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Cross-Origin-Resource-Policy", "cross-origin")
        url_path = urllib.parse.urlsplit(self.path).path
        if self.site.isolated and not url_path.startswith(tuple(self.site.unisolated)):
            for name, value in CROSS_ORIGIN_ISOLATION.items():
                self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """One line per request on stderr, unless the site is quiet (test output)."""
        if self.site.log_requests:
            super().log_message(format, *args)


def make_server(site: Site, port: int) -> http.server.ThreadingHTTPServer:
    """A threading HTTP server for ``site`` bound to 127.0.0.1:``port`` (0: a free port)."""
    handler: Callable[..., SiteHandler] = functools.partial(SiteHandler, site=site)
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


def serve_forever(site: Site, port: int) -> None:
    """Serve ``site`` on 127.0.0.1:``port`` until Ctrl-C."""
    try:
        server = make_server(site, port)
    except OSError as exc:
        raise BuildError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from exc
    with server:
        served = ", ".join(str(directory) for directory in site.mounts.values())
        print(f"==> serving {served} at http://127.0.0.1:{port}/ (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()


@contextlib.contextmanager
def serving(site: Site, name: str = "web server") -> Iterator[str]:
    """Serve ``site`` from a thread on a free port for the block; yields its base URL."""
    server = make_server(site, 0)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
