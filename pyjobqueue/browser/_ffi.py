"""The JavaScript FFI seam of the browser modules: `js` and `pyodide.ffi`, under Pyodide only.

Values cross the bridge as JSON text where they can (`JSON.parse` / `JSON.stringify`):
no proxy is created, `None` becomes `null` and back, and nothing needs releasing. The
few Python callables that JavaScript must call are wrapped by `proxied`, which destroys
the proxy when the block ends (a proxy that is never destroyed leaks for ever).
"""

from __future__ import annotations

import contextlib
import importlib
import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .._platform import IN_PYODIDE, pyodide_required

if IN_PYODIDE or TYPE_CHECKING:
    from pyodide import ffi

# A JsProxy of a JavaScript object: attribute access and calls go to JavaScript.
JsObject = Any


def js_global() -> JsObject:
    """`globalThis` of the JavaScript side (Pyodide's `js` module)."""
    if not IN_PYODIDE:
        raise pyodide_required("the JavaScript bridge")
    return importlib.import_module("js")


def is_missing(value: object) -> bool:
    """True for JavaScript `undefined` (None) and `null` (`jsnull` in recent Pyodide)."""
    return value is None or value is getattr(ffi, "jsnull", None)


def json_to_js(value: object) -> JsObject:
    """A plain JavaScript value built from a JSON-serialisable Python value."""
    return js_global().JSON.parse(json.dumps(value, allow_nan=False))


def js_to_json(value: JsObject) -> Any:
    """The Python form of a JSON-serialisable JavaScript value (None for null/undefined)."""
    if is_missing(value):
        return None
    text = js_global().JSON.stringify(value)
    return None if is_missing(text) else json.loads(text)


def js_array(items: list[Any]) -> JsObject:
    """A JavaScript array of numbers, strings and nested arrays (IndexedDB keys)."""
    return ffi.to_js(items, create_pyproxies=False)


def error_text(error: JsObject) -> str:
    """`name: message` of a JavaScript error or DOMException, tolerating null."""
    if is_missing(error):
        return "unknown error"
    name, message = getattr(error, "name", ""), getattr(error, "message", "")
    return f"{name}: {message}" if message else str(name or error)


def create_proxy(function: Callable[..., Any]) -> JsObject:
    """A JavaScript function calling `function`; call its `destroy()` when JS is done with it."""
    return ffi.create_proxy(function)


@contextlib.contextmanager
def proxied(function: Callable[..., Any]) -> Iterator[JsObject]:
    """A JavaScript function calling `function`, destroyed when the block ends."""
    proxy = create_proxy(function)
    try:
        yield proxy
    finally:
        proxy.destroy()
