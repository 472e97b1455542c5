"""The throwaway PostgreSQL cluster of ``build.py test``: one temp dir, trust auth, any port.

The tests get its DSN (and how to stop and start it) from ``PgCluster.env``. A cluster
left behind by a run that was killed is stopped and removed by the next run.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .commands import BuildError, current_user, header, root_prefix, run, signals_deferred

PG_DATABASE = "pyjobqueue_test"
PG_SUPERUSER = "postgres"  # database role created by initdb
PG_OS_USER = "postgres"  # OS user that owns the cluster when build.py runs as root
PG_TMP_PREFIX = "pyjobqueue-pg-"
PG_OWNER_FILE = "build-py.pid"  # pid of the build.py run that owns a temp cluster
PG_START_ATTEMPTS = 3
PG_SETTINGS: Mapping[str, str] = {"max_connections": "200"}
# Tests do not need commits to survive a power cut; benchmarks keep PostgreSQL's defaults,
# which a user's server has (a commit waits for its fsync).
PG_TEST_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


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


def init_cluster(cluster: PgCluster, durable: bool = False) -> None:
    """initdb with trust auth, UTF-8, and settings tuned for tests (`durable`: commits
    are flushed to disk, as PostgreSQL does by default)."""
    initdb = [str(cluster.bindir / "initdb"), "-A", "trust", "-U", PG_SUPERUSER]
    initdb += ["-E", "UTF8", "--no-locale", "--no-sync", "-D", str(cluster.pgdata)]
    result = run(as_user(cluster.user, initdb), check=False, cwd=cluster.base, capture=True)
    if result.returncode != 0:
        print(result.stdout, end="", file=sys.stderr)
        raise subprocess.CalledProcessError(result.returncode, result.args, result.stdout)
    chosen = {**PG_SETTINGS, **({} if durable else PG_TEST_SETTINGS)}
    settings = "".join(f"{key} = {value}\n" for key, value in chosen.items())
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
def postgres_cluster(bindir: Path, durable: bool = False) -> Iterator[PgCluster]:
    """Run a throwaway cluster for the duration of the block; always stop and delete it
    (`durable`: see init_cluster)."""
    header("postgres")
    user = cluster_os_user()
    reap_stale_clusters(bindir)
    cluster = PgCluster(bindir=bindir, base=make_cluster_dir(user), user=user)
    try:
        init_cluster(cluster, durable)
        start_cluster(cluster)
        create_database(cluster)
        print(f"==> postgres ready: {cluster.dsn}", flush=True)
        yield cluster
    finally:
        with signals_deferred():
            header("stop postgres")
            stop_cluster(cluster)
            shutil.rmtree(cluster.base, ignore_errors=True)
