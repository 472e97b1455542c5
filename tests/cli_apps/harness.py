"""Runs the real `pyjobqueue` command in subprocesses and watches what it prints."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import pty
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from ..backends import postgres_dsn

ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent
# Generous: a loaded 2-core CI machine starts Python slowly. Waits end as soon as the
# awaited line or state shows up; these only bound a broken run.
WAIT_SECONDS = 60.0
# Fast polling makes the tests quicker; it changes no behaviour under test.
POLL = ("--poll-interval", "20ms")


def storage_url(kind: str, tmp_path: Path) -> str:
    """A fresh SQLite file in `tmp_path` ("sqlite"), or the suites' PostgreSQL database
    ("postgres"); the test is skipped when that storage cannot run here."""
    if kind == "sqlite":
        if importlib.util.find_spec("aiosqlite") is None:
            pytest.skip("aiosqlite is not installed (pip install 'pyjobqueue[sqlite]')")
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    dsn = postgres_dsn()
    if dsn is None:
        pytest.skip("PYJOBQUEUE_TEST_POSTGRES_DSN is not set (python build.py test sets it)")
    if importlib.util.find_spec("asyncpg") is None:
        pytest.skip("asyncpg is not installed (pip install 'pyjobqueue[postgres]')")
    return dsn


@contextlib.contextmanager
def cli_on(kind: str, tmp_path: Path, prefix: str) -> Iterator[Cli]:
    """Commands on a fresh queue (named `prefix`-random) of a storage (see storage_url);
    what they leave running is killed afterwards."""
    commands = Cli(storage_url(kind, tmp_path), f"{prefix}-{uuid.uuid4().hex[:12]}", tmp_path)
    try:
        yield commands
    finally:
        commands.close()


def module_command() -> list[str]:
    """`python -m pyjobqueue` with this interpreter."""
    return [sys.executable, "-m", "pyjobqueue"]


def script_command() -> list[str] | None:
    """The installed `pyjobqueue` console script next to this interpreter, if any."""
    found = shutil.which("pyjobqueue", path=str(Path(sys.executable).parent))
    return None if found is None else [found]


@dataclasses.dataclass
class Result:
    """A finished command."""

    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout parsed as JSON (it must be nothing but JSON)."""
        return json.loads(self.stdout)


class Cli:
    """Runs commands against one storage and queue (given by environment variables)."""

    def __init__(self, storage_url: str | None, queue_name: str | None, cwd: Path) -> None:
        self.storage_url = storage_url
        self.queue_name = queue_name
        self.cwd = cwd
        self.processes: list[Running] = []

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a command: this test's storage and queue, the job modules."""
        env = dict(os.environ)
        env.pop("PYJOBQUEUE_STORAGE", None)
        env.pop("PYJOBQUEUE_QUEUE", None)
        paths = [str(APPS), str(ROOT), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
        if self.storage_url is not None:
            env["PYJOBQUEUE_STORAGE"] = self.storage_url
        if self.queue_name is not None:
            env["PYJOBQUEUE_QUEUE"] = self.queue_name
        env.update(extra or {})
        return env

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        command: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Result:
        """Run a command to its end."""
        completed = subprocess.run(
            [*(command or module_command()), *args],
            cwd=self.cwd,
            env=self.env(env),
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=WAIT_SECONDS,
            check=False,
        )
        return Result(completed.returncode, completed.stdout, completed.stderr)

    def ok(self, *args: str, stdin: str | None = None) -> Result:
        """Run a command that must succeed."""
        result = self.run(*args, stdin=stdin)
        assert result.returncode == 0, f"{args} failed ({result.returncode}): {result.stderr}"
        return result

    def json(self, *args: str) -> Any:
        """Run a command with --json; its parsed output."""
        return self.ok(*args, "--json").json()

    def job(self, job_id: int) -> dict[str, Any]:
        """The stored job, through `pyjobqueue show ID --json`."""
        found: dict[str, Any] = self.json("show", str(job_id))
        return found

    def start(self, *args: str, command: Sequence[str] | None = None) -> Running:
        """Start a long-running command (a worker); killed at the end of the test."""
        process = subprocess.Popen(
            [*(command or module_command()), *args],
            cwd=self.cwd,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        running = Running(process)
        self.processes.append(running)
        return running

    def worker(self, job: str, *args: str) -> Running:
        """Start `pyjobqueue worker JOB [MORE JOBS] [OPTIONS] --json` and wait until it runs."""
        running = self.start("worker", job, *args, "--json", *POLL)
        running.wait_for(lambda line: line.get("event") == "worker_start")
        return running

    def close(self) -> None:
        """Kill what is still running."""
        for running in self.processes:
            running.kill()


class Running:
    """A running command whose stdout lines (JSON when it can) are collected as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self.stderr_text: list[str] = []
        self._changed = threading.Condition()
        assert process.stdout is not None and process.stderr is not None
        self._threads = [
            threading.Thread(target=self._read_stdout, args=(process.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(process.stderr,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self, stream: IO[str]) -> None:
        for text in stream:
            try:
                line = json.loads(text)
            except ValueError:
                line = {"text": text.rstrip("\n")}
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _read_stderr(self, stream: IO[str]) -> None:
        for text in stream:
            self.stderr_text.append(text)

    @property
    def stderr(self) -> str:
        """What the command wrote to stderr so far."""
        return "".join(self.stderr_text)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = WAIT_SECONDS
    ) -> dict[str, Any]:
        """The first stdout line (so far or to come) that matches."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and self._stdout_done()):
                    raise AssertionError(
                        f"no matching line; exit {self.process.poll()}; lines {self.lines}; "
                        f"stderr {self.stderr}"
                    )
                self._changed.wait(min(remaining, 0.5))

    def _stdout_done(self) -> bool:
        return not self._threads[0].is_alive()

    def event(self, name: str, job_id: int | None = None) -> dict[str, Any]:
        """Wait for a worker event (of one job)."""
        return self.wait_for(
            lambda line: line.get("event") == name and (job_id is None or line["job_id"] == job_id)
        )

    def events(self) -> list[str]:
        """The names of the events seen so far, in order."""
        with self._changed:
            return [str(line.get("event")) for line in self.lines]

    def send(self, number: signal.Signals) -> None:
        """Send a signal."""
        self.process.send_signal(number)

    def wait(self, timeout: float = WAIT_SECONDS) -> int:
        """Wait for the command to exit; its status."""
        returncode = self.process.wait(timeout)
        for thread in self._threads:
            thread.join(timeout)
        return returncode

    def kill(self) -> None:
        """Kill it if it still runs, and wait until it is gone: no zombie, and no reader
        thread or pipe left open for the tests that follow."""
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(WAIT_SECONDS)
        for reader in self._threads:  # they end at the pipes' end
            reader.join(WAIT_SECONDS)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def run_in_terminal(cli: Cli, args: Sequence[str], terminal: str) -> tuple[int, str, str]:
    """Run a command with `terminal` ("stdout" or "stderr") on a pseudo-terminal.

    Returns (exit status, what the terminal showed, the other stream).
    """
    controller, attached = pty.openpty()
    env = cli.env({"COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"})
    env.pop("NO_COLOR", None)
    on_terminal = {terminal: attached}
    other = "stderr" if terminal == "stdout" else "stdout"
    process = subprocess.Popen(
        [*module_command(), *args],
        cwd=cli.cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        **{terminal: on_terminal[terminal], other: subprocess.PIPE},  # type: ignore[call-overload]
    )
    os.close(attached)
    shown = bytearray()
    other_output: queue.Queue[bytes] = queue.Queue()
    stream = process.stdout if other == "stdout" else process.stderr
    assert stream is not None
    reader = threading.Thread(target=lambda: other_output.put(stream.read()), daemon=True)
    reader.start()
    try:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the command closed its end
                break
            if not chunk:
                break
            shown.extend(chunk)
    finally:
        os.close(controller)
    returncode = process.wait(WAIT_SECONDS)
    reader.join(WAIT_SECONDS)
    stream.close()
    return returncode, shown.decode("utf-8", "replace"), other_output.get().decode()
