#!/usr/bin/env python3
"""Single entry point for developers and CI: ``python build.py {test,serve,wheel}``.

Standard library only. ``test`` provisions everything it needs on a fresh Debian machine
(virtualenv, PostgreSQL server binaries), starts a throwaway PostgreSQL cluster and runs
ruff, ruff format, mypy and pytest, stopping at the first failure. This file parses the
command line and dispatches; the tasks themselves live in ``buildtasks/``.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from buildtasks import bundle, environment, jupyterlite, steps, webserver
from buildtasks.commands import BuildError, Terminated, raise_terminated
from buildtasks.paths import ROOT, WEB_MOUNTS

# --------------------------------------------------------------------------- commands


def cmd_test(pytest_args: Sequence[str]) -> int:
    """``build.py test``: venv, lint, type-check, then pytest against a throwaway PostgreSQL."""
    environment.ensure_venv(dev=True)
    return steps.run_steps(steps.build_steps(pytest_args))


def cmd_wheel() -> int:
    """``build.py wheel``: build the wheel and the sdist into dist/ with PyPA's build."""
    environment.ensure_venv(dev=True)
    for built in bundle.build_distributions():
        print(f"==> built {built.relative_to(ROOT)}")
    return 0


def cmd_serve(port: int) -> int:
    """``build.py serve``: build the wheel, assemble web/ with Pyodide and serve the console,
    and the JupyterLite site under /jupyterlite/."""
    bundle.check_web_app()
    environment.ensure_venv(dev=True)  # the jupyter tools that build the notebook site
    wheel = bundle.build_wheel()
    web_root = bundle.prepare_web_root(wheel)
    site = jupyterlite.build_site(wheel)
    print(f"==> notebooks: http://127.0.0.1:{port}{jupyterlite.NOTEBOOK_PATH}", flush=True)
    mounts = {**WEB_MOUNTS, "/": web_root, jupyterlite.SITE_PREFIX: site}
    webserver.serve_forever(webserver.Site(mounts, unisolated=jupyterlite.NOT_ISOLATED), port)
    return 0


# --------------------------------------------------------------------------- main


def tcp_port(text: str) -> int:
    """argparse type of --port: an integer from 1 to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be from 1 to 65535, got {port}")
    return port


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Parse the command line; unknown args of ``test`` go to pytest."""
    parser = argparse.ArgumentParser(description="pyjobqueue developer and CI entry point")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("test", help="lint, type-check and run the tests (extra args go to pytest)")
    serve = sub.add_parser("serve", help="build the wheel and serve web/ on 127.0.0.1")
    serve.add_argument("--port", type=tcp_port, default=8000, help="default 8000")
    sub.add_parser("wheel", help="build the wheel and the sdist into dist/ (PyPA's build)")
    args, extra = parser.parse_known_args(argv)
    if extra and extra[0] == "--":
        extra = extra[1:]
    if extra and args.command != "test":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args, extra


def dispatch(args: argparse.Namespace, extra: list[str]) -> int:
    """Run the chosen subcommand."""
    if args.command == "test":
        return cmd_test(extra)
    if args.command == "serve":
        return cmd_serve(args.port)
    return cmd_wheel()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args, extra = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_terminated)
    started = time.monotonic()
    status = dispatch_reporting_errors(args, extra)
    verdict = "done" if status == 0 else f"FAILED (exit code {status})"
    print(f"==> {args.command}: {verdict} in {time.monotonic() - started:.1f}s", flush=True)
    return status


def dispatch_reporting_errors(args: argparse.Namespace, extra: list[str]) -> int:
    """Run the subcommand, turning failures and interrupts into exit codes."""
    try:
        return dispatch(args, extra)
    except subprocess.CalledProcessError as exc:
        print(f"==> FAILED: {shlex.join(exc.cmd)} exited with {exc.returncode}", file=sys.stderr)
        return exc.returncode if exc.returncode > 0 else 1
    except BuildError as exc:
        print(f"==> ERROR: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print("==> interrupted", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
