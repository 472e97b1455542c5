"""The PostgreSQL backend under test: the throwaway database that build.py starts.

Every storage of a test uses the same database (its own pool); tests keep apart by
their unique queue names.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import pwd
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pyjobqueue.storage import QueueStorage
from pyjobqueue.storage.base import RateLimiterStorage

from .backends import POSTGRES_DSN_VARIABLE, Backend, Location, postgres_dsn


def unavailable_reason() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None."""
    if importlib.util.find_spec("asyncpg") is None:
        return "asyncpg is not installed (pip install 'pyjobqueue[postgres]')"
    if postgres_dsn() is None:
        return f"{POSTGRES_DSN_VARIABLE} is not set (python build.py test starts a database)"
    return None


def require_dsn() -> str:
    """The test database's DSN (tests only ask once unavailable_reason() said None)."""
    dsn = postgres_dsn()
    assert dsn is not None, unavailable_reason()
    return dsn


async def _open_queue(location: Location, queue_name: str) -> QueueStorage:
    from pyjobqueue.storage.postgres import PostgresQueueStorage

    return PostgresQueueStorage(require_dsn(), queue_name)


async def _open_rate_limiter(location: Location) -> RateLimiterStorage:
    from pyjobqueue.storage.postgres import PostgresRateLimiterStorage

    return PostgresRateLimiterStorage(require_dsn())


async def _overwrite_input(
    location: Location, storage: QueueStorage, job_id: int, text: str
) -> None:
    import asyncpg

    connection = await asyncpg.connect(require_dsn())
    try:
        await connection.execute(
            "UPDATE pyjobqueue_jobs SET input = $1::json WHERE id = $2", text, job_id
        )
    finally:
        await connection.close()


BACKEND = Backend(
    "postgres",
    _open_queue,
    _open_rate_limiter,
    unavailable_reason,
    overwrite_input=_overwrite_input,
)


# -- helpers of the PostgreSQL tests ---------------------------------------------------------


def dsn_with_search_path(dsn: str, schema: str) -> str:
    """The DSN with its tables in `schema` (asyncpg passes search_path as a setting)."""
    return f"{dsn}{'&' if '?' in dsn else '?'}search_path={schema}"


@contextlib.asynccontextmanager
async def fresh_schema() -> AsyncIterator[str]:
    """A DSN whose pyjobqueue tables live in a new, empty schema (dropped afterwards)."""
    import asyncpg

    dsn = require_dsn()
    schema = f"pyjobqueue_test_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
        yield dsn_with_search_path(dsn, schema)
    finally:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()


SERVER_SCRIPT = Path(__file__).parent / "processes" / "postgres_server.py"
PROCESS_START_TIMEOUT = 60.0
PROCESS_STOP_TIMEOUT = 30.0


class ServerProcess:
    """tests/processes/postgres_server.py running as a child process."""

    def __init__(self, dsn: str, queue: str, name: str, directory: Path, **options: Any) -> None:
        self.name = name
        self.log = directory / f"{name}.runs"
        self.stderr_path = directory / f"{name}.stderr"
        self.args = ["--dsn", dsn, "--queue", queue, "--name", name, "--log", str(self.log)]
        for key, value in options.items():
            self.args += [f"--{key.replace('_', '-')}", str(value)]
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the process and wait until its server runs."""
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        with self.stderr_path.open("wb") as stderr:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(SERVER_SCRIPT),
                *self.args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=env,
            )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), PROCESS_START_TIMEOUT)
        assert line == b"ready\n", f"{self.name} did not start: {line!r}\n{self.stderr()}"

    def stderr(self) -> str:
        """What the process wrote to stderr so far (its logged errors)."""
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    async def stop(self) -> int:
        """Stop the server gracefully (close stdin); its exit code."""
        process = self.process
        assert process is not None and process.stdin is not None
        if process.returncode is None:
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), PROCESS_STOP_TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()
                raise AssertionError(f"{self.name} did not stop\n{self.stderr()}") from None
        assert process.returncode is not None
        return process.returncode

    async def kill(self) -> None:
        """SIGKILL: the process dies mid-whatever, leaving its jobs' leases behind."""
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    def runs(self) -> list[tuple[int, int, int]]:
        """(job id, attempt, pid) of every execution this process started."""
        if not self.log.exists():
            return []
        rows = [line.split() for line in self.log.read_text().splitlines() if line.strip()]
        return [(int(job_id), int(attempt), int(pid)) for job_id, attempt, pid in rows]


def restart_command(mode: str = "fast") -> list[str] | None:
    """`pg_ctl restart -m MODE` of the test cluster, as its owner; None when not known here.

    "fast" ends sessions cleanly; "immediate" kills the server processes, as a crash does
    (the restart then recovers from the WAL)."""
    pg_ctl = os.environ.get("PYJOBQUEUE_TEST_PG_CTL")
    pgdata = os.environ.get("PYJOBQUEUE_TEST_PGDATA")
    if not pg_ctl or not pgdata:
        return None
    command = [pg_ctl, "-D", pgdata, "-w", "-t", "60", "-m", mode, "restart"]
    log = os.environ.get("PYJOBQUEUE_TEST_PG_LOG")
    if log:
        command += ["-l", log]  # else the new server would write into our pipes
    user = os.environ.get("PYJOBQUEUE_TEST_PG_USER")
    if user and user != pwd.getpwuid(os.geteuid()).pw_name:
        command = ["runuser", "-u", user, "--", *command]
    return command


def restart_postgres(command: list[str]) -> None:
    """Restart the server (blocking: run it in a thread)."""
    result = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=120,
        start_new_session=True,
        check=False,
    )
    assert result.returncode == 0, f"pg_ctl restart failed: {result.stderr!r}"


class CuttableProxy:
    """A TCP proxy to the test database that a test can cut: a real network outage.

    While cut, open connections are dropped and new ones are closed at once; restore()
    lets connections through again.
    """

    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._dsn = dsn
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.cut_off = False

    async def start(self) -> str:
        """Listen on a free local port; the DSN that goes through the proxy."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        parts = urlsplit(self._dsn)
        netloc = parts.netloc.rsplit("@", 1)[0] + f"@127.0.0.1:{port}"
        return urlunsplit(parts._replace(netloc=netloc))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()
        self._writers.discard(sink)

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        self.cut_off = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        """Let connections through again."""
        self.cut_off = False

    async def close(self) -> None:
        """Stop listening and drop everything."""
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
