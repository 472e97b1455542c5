"""Running a server until the process is told to stop: the signal rules of SPEC section 9.

The first SIGINT or SIGTERM stops the server gracefully (it claims nothing more, and
its running jobs get `stop_timeout_ms` to finish before they go back to the queue); a
second one stops it at once (`stop(timeout_ms=0)`: running jobs are cancelled and go
back to the queue, no attempt charged). `pyjobqueue worker` and `server.serve()` both
follow them through `serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import JobQueueServer

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Called with the signal's number when it arrives: the first one, then the second.
SignalHook = Callable[[int], object]


class SignalWatcher:
    """Queues SIGINT/SIGTERM for the event loop instead of letting them end the process."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[int] = asyncio.Queue()

    @contextlib.contextmanager
    def installed(self) -> Iterator[SignalWatcher]:
        """Handle the stop signals inside the block; restore the previous handlers after."""
        loop = asyncio.get_running_loop()
        previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
        try:
            for number in STOP_SIGNALS:
                loop.add_signal_handler(number, self.received.put_nowait, number)
        except NotImplementedError:  # Windows: no loop signal handlers, plain ones work
            with self._plain_handlers(loop):
                yield self
            return
        except RuntimeError as error:  # not the main thread: signals cannot reach it
            raise RuntimeError(
                "serve() handles SIGINT and SIGTERM, which only the main thread can; "
                "call server.start() and server.stop() yourself in other threads"
            ) from error
        try:
            yield self
        finally:
            for number in STOP_SIGNALS:
                loop.remove_signal_handler(number)
                # remove_signal_handler leaves SIG_DFL; give back what was there before.
                with contextlib.suppress(TypeError, ValueError):
                    signal.signal(number, previous[number])

    @contextlib.contextmanager
    def _plain_handlers(self, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        def handler(number: int, _frame: object) -> None:
            loop.call_soon_threadsafe(self.received.put_nowait, number)

        previous = {number: signal.signal(number, handler) for number in STOP_SIGNALS}
        try:
            yield
        finally:
            for number, old in previous.items():
                signal.signal(number, old)

    async def next(self) -> int:
        """Wait for the next stop signal; its number."""
        return await self.received.get()


async def wait_for_signal_or_stop(server: JobQueueServer[Any, Any], watcher: SignalWatcher) -> int:
    """The number of the first stop signal, or 0 when the server stopped by itself first
    (a permanent storage failure: see `server.error`)."""
    signalled = asyncio.ensure_future(watcher.next())
    stopped = asyncio.ensure_future(server.wait_stopped())
    try:
        await asyncio.wait({signalled, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not stopped.done():
            stopped.cancel()
        if not signalled.done():
            signalled.cancel()
    if signalled.done() and not signalled.cancelled():
        return signalled.result()
    return 0


async def stop_on_signals(
    server: JobQueueServer[Any, Any],
    watcher: SignalWatcher,
    *,
    hurried_after: float | None = None,
    on_second: SignalHook | None = None,
) -> bool:
    """Stop gracefully; a second signal meanwhile cuts the stop short. Whether the stop
    finished gracefully (False: it was hurried by a second signal).

    `hurried_after` bounds the hurried stop (seconds; None: wait for it), and
    `on_second` hears of the second signal before the stop is cut short.
    """
    stopping = asyncio.ensure_future(server.stop())
    second = asyncio.ensure_future(watcher.next())
    done, _pending = await asyncio.wait({stopping, second}, return_when=asyncio.FIRST_COMPLETED)
    if stopping in done:
        second.cancel()
        stopping.result()
        return True
    number = second.result()
    if on_second is not None:
        on_second(number)
    logger.info(
        "server %s: %s again: stopping running jobs now (they go back to the queue)",
        server.server_id,
        signal.Signals(number).name,
    )
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(hurried_after):
            await server.stop(timeout_ms=0)
    return False


async def serve(server: JobQueueServer[Any, Any]) -> None:
    """Start `server` (unless it runs), run until SIGINT/SIGTERM, then stop it by the
    signal rules. Raises the permanent storage failure that stopped it, if one did."""
    watcher = SignalWatcher()
    with watcher.installed():
        await server.start()
        first = await wait_for_signal_or_stop(server, watcher)
        if first:
            logger.info(
                "server %s of queue %r: %s: stopping; running jobs get up to %g s to finish "
                "(send it again to stop them now)",
                server.server_id,
                server.queue_name,
                signal.Signals(first).name,
                server.stop_timeout_ms / 1000,
            )
            await stop_on_signals(server, watcher)
    await server.wait_stopped()  # raises the failure that stopped it, if any


def run(server: JobQueueServer[Any, Any]) -> None:
    """Set up the server's storage and serve until SIGINT/SIGTERM (`asyncio.run`)."""

    async def main() -> None:
        async with server.get_storage():
            await serve(server)

    asyncio.run(main())
