"""Child Python processes for the tests: this checkout first on their import path, so a
child runs the code under test (not whatever the virtualenv's editable install names)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0


def child_environment() -> dict[str, str]:
    """Our environment, with this checkout first on the import path."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), path]))}


class Child:
    """A Python child process that prints "ready" and runs until its stdin closes."""

    def __init__(self, name: str, directory: Path, *arguments: str) -> None:
        self.name = name
        self.arguments = arguments
        self.stderr_path = directory / f"{name}.stderr"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.stderr_path.open("wb") as stderr:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                *self.arguments,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=child_environment(),
                cwd=ROOT,
            )
        line = await self.read_line(START_TIMEOUT)
        assert line == "ready", f"{self.name} did not start: {line!r}\n{self.stderr()}"

    async def read_line(self, timeout: float) -> str:
        assert self.process is not None and self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        return line.decode().strip()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    async def stop(self) -> None:
        """Close stdin (the child stops gracefully) and check that it exited cleanly."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.close()
        code = await asyncio.wait_for(self.process.wait(), START_TIMEOUT)
        assert code == 0, f"{self.name} exited with {code}\n{self.stderr()}"

    async def kill(self) -> None:
        """SIGKILL: no cleanup, no lease handed back."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(self.process.wait(), START_TIMEOUT) == -signal.SIGKILL

    async def ensure_ended(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


def signal_once_started(
    arguments: list[str], started: str, signum: int, timeout: float, **popen: Any
) -> tuple[int, str, str]:
    """Run a command until its stderr has a line containing `started`, then send it
    `signum`; its exit code, stdout and the rest of its stderr (it is killed if it has
    not ended `timeout` seconds later, and the test then fails on its code)."""
    process = subprocess.Popen(
        arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if started in line:
                break
        process.send_signal(signum)
        out, rest = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, out, rest
