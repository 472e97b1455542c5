"""The operations console of a queue, served over HTTP (CPython; `pyjobqueue[console]`).

`pyjobqueue console --storage URL` serves it; `create_app(client)` is the same console as
an ASGI app to mount in an application of your own. The page is the browser console's
(`static/view.js` draws both), fed by the JSON API and the server-sent events of
`_app.py`, which follow the storage's change feed through `_live.LiveFeed`.
"""

from __future__ import annotations

from ._app import create_app

__all__ = ["create_app"]
