"""The console's ASGI app (Starlette): the page, its JSON API, the live stream, the gate.

Routes:
  GET  /                      the page (static/index.html)
  GET  /static/...            its scripts, styles and icon
  GET  /api/state             the queue, whether actions are allowed, the summary
  GET  /api/jobs              a page of jobs (?status, ?kind, ?before, ?limit), or ?id / ?run
  POST /api/actions/{name}    abort, abort_run, retry, disable, delete, pause, resume, purge
  GET  /api/events            server-sent events: job, progress, paused, summary, deleted

Every request, the live stream included, passes `TokenGate` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from .._listing import MAX_PAGE, PAGE_SIZE, PageQuery, read_page
from ..client import JobQueueClient
from ..errors import JobNotFoundError
from ..job import FINISHED_STATUSES, JobStatus, utcnow
from ._hosts import is_loopback
from ._live import LiveFeed, job_json

STATIC = Path(__file__).resolve().parent / "static"
TOKEN_COOKIE = "pyjobqueue_console_token"
# POSTs must carry this header: a form or an image on another site cannot send it, and a
# script there could only after a CORS preflight, which this app never answers.
ACTION_HEADER = "x-pyjobqueue-console"
KEEPALIVE_SECONDS = 15.0
ACTIONS = ("abort", "abort_run", "retry", "disable", "delete", "pause", "resume", "purge")


class PageFiles(StaticFiles):
    """The page's files, revalidated on every load: a new release's view.js is picked up."""

    def file_response(
        self, full_path: Any, stat_result: Any, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        return response


class HttpError(Exception):
    """A request the API refuses, with its status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _tokens_match(given: str | None, token: str) -> bool:
    """Constant-time comparison, so the answer's timing does not reveal the token."""
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


class TokenGate:
    """Refuses every request without the console's token (when it has one), and requests
    for another host name on a loopback console (DNS rebinding); actions need a header
    that cross-site requests cannot send."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    def _refusal(self, request: Request) -> Response | None:
        if self.token is None:
            host = urllib.parse.urlsplit("//" + request.headers.get("host", "")).hostname or ""
            if not is_loopback(host):
                return Response(f"host {host!r} is not served", 403, media_type="text/plain")
        else:
            header = request.headers.get("authorization", "")
            bearer = header[7:] if header.lower().startswith("bearer ") else None
            given = [bearer, request.cookies.get(TOKEN_COOKIE), request.query_params.get("token")]
            if not any(_tokens_match(value, self.token) for value in given):
                message = "a token is required: open the URL that `pyjobqueue console` printed"
                return Response(message, 401, media_type="text/plain")
        if request.method not in ("GET", "HEAD") and request.headers.get(ACTION_HEADER) != "1":
            return Response(f"actions need the {ACTION_HEADER} header", 403)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(Request(scope))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ConsoleApi:
    """The handlers, over one client and its live feed."""

    def __init__(
        self, client: JobQueueClient[Any, Any], *, read_only: bool, token: str | None, label: str
    ) -> None:
        self.client = client
        self.storage = client.storage
        self.feed = LiveFeed(client)
        self.read_only = read_only
        self.token = token
        self.label = label

    async def page(self, request: Request) -> Response:
        """The console page; a `?token=` becomes a cookie, so the stream carries it."""
        response = FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})
        given = request.query_params.get("token")
        if self.token is not None and _tokens_match(given, self.token):
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
        return response

    async def state(self, request: Request) -> Response:
        """What the page needs first: the queue, the actions allowed, the summary."""
        return JSONResponse(
            {
                "queue": self.storage.queue_name,
                "storage": self.label,
                "read_only": self.read_only,
                "actions": [] if self.read_only else list(ACTIONS),
                "page_size": PAGE_SIZE,
                "summary": await self.feed.summary(),
            }
        )

    async def jobs(self, request: Request) -> Response:
        """One page of jobs, newest first (?status, ?kind, ?before, ?limit; or of one run,
        ?run=); or one job (?id=)."""
        query = request.query_params
        wanted = PageQuery(
            job_id=_whole(query["id"], "id") if query.get("id") else None,
            run_id=query.get("run") or None,
            status=_status(query.get("status")),
            kind=query.get("kind") or None,
            before_id=_whole(query["before"], "before") if query.get("before") else None,
            limit=_whole(query.get("limit", str(PAGE_SIZE)), "limit", 1, MAX_PAGE),
        )
        page = await read_page(self.storage, wanted)
        body: dict[str, Any] = {"jobs": [job_json(job) for job in page.jobs]}
        body["next"] = page.next_before_id
        if page.total is not None:
            body["total"] = page.total  # a run's pages: how many jobs it has
        return JSONResponse(body)

    async def action(self, request: Request) -> Response:
        """Run one action on the queue; 403 on a read-only console."""
        name = request.path_params["name"]
        if name not in ACTIONS:
            raise HttpError(404, f"no action {name!r}; there are {', '.join(ACTIONS)}")
        if self.read_only:
            raise HttpError(403, "this console is read-only (pyjobqueue console --read-only)")
        try:
            body = await request.json()
        except ValueError:
            raise HttpError(400, "the request body must be a JSON object") from None
        if not isinstance(body, dict):
            raise HttpError(400, "the request body must be a JSON object")
        run: Callable[[dict[str, Any]], Awaitable[Any]] = getattr(self, f"_{name}")
        return JSONResponse({"ok": True, "result": await run(body)})

    async def _abort(self, body: dict[str, Any]) -> None:
        job_id = _whole(body.get("id"), "id")
        await self.client.abort(job_id)
        self.feed.changed(job_id)

    async def _abort_run(self, body: dict[str, Any]) -> int:
        run_id = body.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            raise HttpError(400, "run_id must be a non-empty string")
        jobs = await self.storage.get_by_run_id(run_id)
        await self.client.abort_job_run(run_id)
        for job in jobs:
            self.feed.changed(job.id)
        return len(jobs)

    async def _retry(self, body: dict[str, Any]) -> None:
        job_id = _whole(body.get("id"), "id")
        if not await self.client.retry(job_id):
            raise HttpError(409, f"job {job_id} is not failed or disabled, or its key is held")
        self.feed.changed(job_id)

    async def _disable(self, body: dict[str, Any]) -> None:
        job_id = _whole(body.get("id"), "id")
        if not await self.client.disable(job_id):
            raise HttpError(409, f"job {job_id} is not pending")
        self.feed.changed(job_id)

    async def _delete(self, body: dict[str, Any]) -> None:
        job_id = _whole(body.get("id"), "id")
        if not await self.storage.delete(job_id):
            raise HttpError(404, f"no job {job_id} in queue {self.storage.queue_name!r}")
        self.feed.deleted([job_id])

    async def _pause(self, body: dict[str, Any]) -> bool:
        return await self.client.pause()

    async def _resume(self, body: dict[str, Any]) -> bool:
        return await self.client.resume()

    async def _purge(self, body: dict[str, Any]) -> int:
        statuses = body.get("statuses")
        if not isinstance(statuses, list) or not statuses:
            raise HttpError(400, "statuses must be a list of COMPLETED, FAILED, DISABLED")
        chosen = [_status(str(status)) for status in statuses]
        if any(status not in FINISHED_STATUSES for status in chosen):
            raise HttpError(400, "only finished jobs (COMPLETED, FAILED, DISABLED) are purged")
        age = body.get("older_than_seconds")
        if isinstance(age, bool) or not isinstance(age, int | float) or not 0 <= age <= 10**9:
            raise HttpError(400, "older_than_seconds must be a number of seconds, 0 or more")
        cutoff = utcnow() - timedelta(seconds=age)
        deleted = 0
        for status in chosen:
            if status is not None:
                deleted += await self.storage.delete_finished(status, cutoff)
        self.feed.deleted(None)
        return deleted

    async def events(self, request: Request) -> Response:
        """The live stream: what changes, as it changes, until the page goes away."""

        async def stream() -> AsyncIterator[str]:
            async with self.feed.subscription() as queue:
                yield "retry: 1000\n\n"
                summary = json.dumps(await self.feed.summary(), separators=(",", ":"))
                yield f"event: summary\ndata: {summary}\n\n"
                while True:
                    try:
                        message = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if message is None:
                        return
                    yield message

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def _whole(value: object, name: str, low: int = 1, high: int = 2**63 - 1) -> int:
    if isinstance(value, str) and value.strip().lstrip("#").isdigit():
        value = int(value.strip().lstrip("#"))
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise HttpError(400, f"{name} must be a whole number from {low} to {high}")
    return value


def _status(value: str | None) -> JobStatus | None:
    if not value:
        return None
    try:
        return JobStatus(value.upper())
    except ValueError:
        names = ", ".join(status.value for status in JobStatus)
        raise HttpError(400, f"unknown status {value!r}; expected one of {names}") from None


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HttpError)
    return JSONResponse({"ok": False, "error": str(error)}, error.status)


async def _not_found(request: Request, error: Exception) -> Response:
    return JSONResponse({"ok": False, "error": str(error)}, 404)


async def _bad_value(request: Request, error: Exception) -> Response:
    return JSONResponse({"ok": False, "error": str(error)}, 400)


def create_app(
    client: JobQueueClient[Any, Any],
    *,
    read_only: bool = False,
    token: str | None = None,
    label: str = "",
) -> ASGIApp:
    """The console for `client`'s queue as an ASGI app; its live feed runs in the app's
    lifespan. `token`: every request must carry it; `read_only`: no actions."""
    api = ConsoleApi(client, read_only=read_only, token=token, label=label)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with api.feed:
            yield

    app = Starlette(
        routes=[
            Route("/", api.page),
            Route("/api/state", api.state),
            Route("/api/jobs", api.jobs),
            Route("/api/actions/{name}", api.action, methods=["POST"]),
            Route("/api/events", api.events),
            Mount("/static", PageFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={
            HttpError: _http_error,
            JobNotFoundError: _not_found,
            ValueError: _bad_value,
        },
        lifespan=lifespan,
    )
    return TokenGate(app, token)
