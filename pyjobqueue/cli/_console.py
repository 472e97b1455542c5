"""`pyjobqueue console`: serve the operations console of a queue with uvicorn."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import urllib.parse
from collections.abc import Iterator
from typing import Any

from ..client import JobQueueClient
from ..console._hosts import is_loopback
from ._target import opened_queue, target_from
from ._values import CliError

TOKEN_VARIABLE = "PYJOBQUEUE_CONSOLE_TOKEN"
# Open pages keep their live stream open; on Ctrl-C they get this long to let go.
SHUTDOWN_SECONDS = 2


def console_token(args: argparse.Namespace) -> str | None:
    """The token from --token or $PYJOBQUEUE_CONSOLE_TOKEN; required off loopback."""
    token: str | None = args.token or os.environ.get(TOKEN_VARIABLE) or None
    if token is not None and (len(token) < 8 or any(c.isspace() for c in token)):
        raise CliError("the console token must be 8 characters or more, without spaces", 2)
    if token is None and not is_loopback(args.host):
        raise CliError(
            f"--host {args.host} lets other machines in: give a --token (or ${TOKEN_VARIABLE}), "
            "which every request must carry",
            2,
        )
    return token


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    try:
        return socket.create_server((host.strip("[]"), port), family=family)
    except OSError as error:
        raise CliError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def _url(host: str, port: int, token: str | None) -> str:
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    query = "" if token is None else "?" + urllib.parse.urlencode({"token": token})
    return f"http://{shown}:{port}/{query}"


async def run_console(args: argparse.Namespace) -> int:
    """Serve the console until SIGINT or SIGTERM."""
    try:
        import uvicorn

        from ..console import create_app
    except ImportError as error:
        raise CliError(
            f"the console needs {error.name}: pip install 'pyjobqueue[console]'"
        ) from None
    token = console_token(args)
    target = target_from(args.storage, args.queue)
    async with opened_queue(target) as storage:
        client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage)
        app = create_app(client, read_only=args.read_only, token=token, label=target.describe())
        listener = _bind(args.host, args.port)
        port = listener.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=SHUTDOWN_SECONDS,
        )
        server = _server(config)
        url = _url(args.host, port, token)
        if args.json:
            line = {"event": "console_start", "url": url, "queue": target.queue, "port": port}
            print(json.dumps(line), flush=True)
        else:
            mode = " (read-only)" if args.read_only else ""
            print(f"pyjobqueue console{mode}: queue {target.queue!r} of {target.describe()}")
            print(f"open {url}  (Ctrl-C to stop)", flush=True)
        await server.serve(sockets=[listener])
        if not server.started:
            raise CliError("the console could not start: see the error above")
    return 0


def _server(config: Any) -> Any:
    """A uvicorn server that stops on the first SIGINT/SIGTERM (at once on a second one)
    and then returns, where uvicorn's own would raise the signal again on its way out."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            loop = asyncio.get_running_loop()

            def stop() -> None:
                self.force_exit = self.should_exit
                self.should_exit = True

            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop)
            try:
                yield
            finally:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(signum)

    return Server(config)
