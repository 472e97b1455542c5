"""Running commands: echoed, Ctrl-C forwarded politely, SIGTERM unwound like Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType

CHILD_GRACE_SECONDS = 20.0  # how long an interrupted child may take to exit cleanly


class BuildError(Exception):
    """A provisioning problem that is not a failing check."""


class Terminated(KeyboardInterrupt):
    """Raised on SIGTERM so that cleanup runs exactly as for Ctrl-C."""


def header(title: str) -> None:
    """Print a short step header."""
    print(f"==> {title}", flush=True)


def current_user() -> str:
    """Name of the effective OS user."""
    return pwd.getpwuid(os.geteuid()).pw_name


def root_prefix() -> list[str]:
    """Command prefix that gives root rights: nothing as root, sudo otherwise."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        return ["sudo"]
    raise BuildError("installing system packages needs root (or sudo)")


def terminal_sent_sigint() -> bool:
    """Whether we are the terminal's foreground group, so Ctrl-C reached the child too."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (AttributeError, OSError, ValueError):
        return False


def stop_interrupted_child(proc: subprocess.Popen[str], exc: KeyboardInterrupt) -> None:
    """Give an interrupted child a chance to clean up (SIGINT), then kill it."""
    if proc.poll() is not None:
        return
    if isinstance(exc, Terminated) or not terminal_sent_sigint():
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=CHILD_GRACE_SECONDS)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        proc.kill()
        proc.wait()


def run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    capture: bool = False,
    new_session: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Echo and run a command like ``subprocess.run(check=True)``, forwarding Ctrl-C politely."""
    cmd = [str(part) for part in cmd]
    print(f"+ {shlex.join(cmd)}", flush=True)
    stdin = subprocess.DEVNULL if sys.stdin is None else None
    stdout = subprocess.PIPE if capture else None
    with subprocess.Popen(
        cmd, env=env, cwd=cwd, stdin=stdin, stdout=stdout, text=True, start_new_session=new_session
    ) as proc:
        try:
            out, _ = proc.communicate()
        except KeyboardInterrupt as exc:
            stop_interrupted_child(proc, exc)
            raise
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, out)
    return subprocess.CompletedProcess(cmd, proc.returncode, out)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while cleaning up, so a second press cannot strand a server."""

    def note(signum: int, frame: FrameType | None) -> None:
        print("==> still cleaning up, please wait", file=sys.stderr, flush=True)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def raise_terminated(signum: int, frame: FrameType | None) -> None:
    """SIGTERM handler: unwind like Ctrl-C so every ``finally`` runs."""
    raise Terminated
