"""The static server of `build.py serve`: CORS, so that a page of another origin (a
Pyodide console, a notebook) can load our wheel and the Pyodide runtime."""

from __future__ import annotations

import urllib.request
from email.message import Message
from pathlib import Path

from buildtasks.webserver import Site, serving


def fetch(url: str, method: str = "GET", **headers: str) -> tuple[int, Message, bytes]:
    """Status, headers (case-insensitive) and body of a request."""
    request = urllib.request.Request(url, method=method, headers=headers)
    with urllib.request.urlopen(request) as response:
        return response.status, response.headers, response.read()


def test_a_wheel_can_be_fetched_from_another_origin(tmp_path: Path) -> None:
    (tmp_path / "pyjobqueue-0.1.0-py3-none-any.whl").write_bytes(b"PK wheel")
    site = Site(mounts={"/dist/": tmp_path}, log_requests=False)
    with serving(site) as base:
        url = f"{base}/dist/pyjobqueue-0.1.0-py3-none-any.whl"
        status, headers, body = fetch(url, Origin="https://console.example")
        assert (status, body) == (200, b"PK wheel")
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert headers["Content-Type"] == "application/zip"
        status, headers, body = fetch(
            url,
            "OPTIONS",
            Origin="https://console.example",
            **{"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "range"},
        )
        assert (status, body) == (204, b"")
        assert "GET" in headers["Access-Control-Allow-Methods"]
        assert headers["Access-Control-Allow-Headers"] == "range"
        assert headers["Access-Control-Allow-Origin"] == "*"


def test_pages_are_cross_origin_isolated_unless_the_site_says_otherwise(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_bytes(b"<!doctype html>")
    for isolated in (True, False):
        site = Site(mounts={"/": tmp_path}, log_requests=False, isolated=isolated)
        with serving(site) as base:
            _status, headers, _body = fetch(f"{base}/index.html")
        policies = (headers["Cross-Origin-Opener-Policy"], headers["Cross-Origin-Embedder-Policy"])
        assert policies == (("same-origin", "require-corp") if isolated else (None, None))
        assert headers["Cross-Origin-Resource-Policy"] == "cross-origin"


def test_prefixes_left_unisolated_get_no_coop_or_coep(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    site = Site(
        mounts={"/dist/": tmp_path, "/lite/": tmp_path},
        log_requests=False,
        unisolated=frozenset({"/lite/"}),
    )
    with serving(site) as base:
        isolated = urllib.request.urlopen(f"{base}/dist/a.txt")
        plain = urllib.request.urlopen(f"{base}/lite/a.txt")
    assert isolated.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
    assert plain.headers["Cross-Origin-Embedder-Policy"] is None
    assert plain.headers["Cross-Origin-Opener-Policy"] is None
