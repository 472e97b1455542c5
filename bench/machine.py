"""What a benchmark run ran on, as JSON: CPUs, load, Python, SQLite, PostgreSQL, the peers.

    .venv-bench/bin/python bench/machine.py [--postgres-dsn postgresql://...]

`python build.py bench` writes these facts above its table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

PACKAGES = ("pyjobqueue", "aiosqlite", "asyncpg", "pgqueuer", "procrastinate", "psycopg", "huey")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_versions() -> str:
    """The versions of pyjobqueue, its drivers and the peers installed here."""
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


async def postgres_facts(dsn: str) -> str:
    """The server's version and the settings that decide what a commit costs."""
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        version = await connection.fetchval("SHOW server_version")
        settings = [
            f"{name} {await connection.fetchval(f'SHOW {name}')}"
            for name in ("fsync", "synchronous_commit", "shared_buffers")
        ]
        address = await connection.fetchval("SELECT host(inet_server_addr())")
        local = address is None or address in ("127.0.0.1", "::1")  # None: a Unix socket
        where = "on this machine" if local else "on another machine"
        return f"{version} ({', '.join(settings)}), {where}"
    finally:
        await connection.close()


def facts(dsn: str | None) -> dict[str, str]:
    """Every fact of the machine and the software, by name."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": f"{os.cpu_count()} x {cpu_model()}",
        "load average at start (1, 5, 15 min)": load,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "packages": package_versions(),
    }
    if dsn:
        result["postgresql"] = asyncio.run(postgres_facts(dsn))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--postgres-dsn", default=os.environ.get("PYJOBQUEUE_TEST_POSTGRES_DSN"))
    parser.add_argument("--json", type=Path, help="write the facts to this file, not stdout")
    args = parser.parse_args()
    text = json.dumps(facts(args.postgres_dsn), indent=1)
    if args.json is None:
        print(text)
    else:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
