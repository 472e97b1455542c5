#!/usr/bin/env python3
"""Single entry point for developers and CI: ``python build.py {test,serve,wheel,bench}``.

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

from buildtasks import bench, bundle, environment, jupyterlite, steps, webserver
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


def cmd_bench(args: argparse.Namespace) -> int:
    """``build.py bench``: every benchmark in one run, one table, docs/benchmarks.md's section."""
    only = tuple(name for name in (args.only or "").split(",") if name)
    options = bench.BenchOptions(
        quick=args.quick,
        jobs=args.jobs,
        depth=args.depth,
        repeat=args.repeat,
        only=only,
        postgres_dsn=args.postgres_dsn,
    )
    return bench.run_bench(options)


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


def positive_int(text: str) -> int:
    """argparse type of counts: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_bench_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The options of ``build.py bench``."""
    names = ", ".join(bench.BENCHMARKS)
    parser = sub.add_parser(
        "bench", help="run every benchmark, print one table of ratios, record it in docs/"
    )
    parser.add_argument("--quick", action="store_true", help="small counts: about 2 minutes")
    parser.add_argument("--jobs", type=positive_int, help="jobs per drain (default 2000)")
    parser.add_argument("--depth", type=positive_int, help="jobs in the deep queue (200000)")
    parser.add_argument("--repeat", type=positive_int, help="drain rounds (default 3)")
    parser.add_argument("--only", metavar="NAMES", help=f"comma-separated subset of: {names}")
    parser.add_argument(
        "--postgres-dsn", help="use this PostgreSQL database instead of a throwaway cluster"
    )


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Parse the command line; unknown args of ``test`` go to pytest."""
    parser = argparse.ArgumentParser(description="pyjobqueue developer and CI entry point")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("test", help="lint, type-check and run the tests (extra args go to pytest)")
    serve = sub.add_parser("serve", help="build the wheel and serve web/ on 127.0.0.1")
    serve.add_argument("--port", type=tcp_port, default=8000, help="default 8000")
    sub.add_parser("wheel", help="build the wheel and the sdist into dist/ (PyPA's build)")
    add_bench_parser(sub)
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
    if args.command == "bench":
        return cmd_bench(args)
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
