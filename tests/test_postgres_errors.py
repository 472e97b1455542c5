"""Clear errors from the PostgreSQL storage: bad DSNs, unreachable servers, wrong
passwords, missing databases, a missing driver, misuse."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from pyjobqueue.errors import StorageConnectionError

from .backend_postgres import require_dsn, unavailable_reason

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))

if unavailable_reason() is None:
    import asyncpg

    from pyjobqueue.storage.postgres import PostgresQueueStorage, PostgresRateLimiterStorage


def with_parts(dsn: str, **parts: str) -> str:
    """The DSN with its netloc or path replaced."""
    return urlunsplit(urlsplit(dsn)._replace(**parts))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def setup_error(dsn: str) -> StorageConnectionError:
    """The error setup_database() raises for `dsn` (and that close() is fine after it)."""
    storage = PostgresQueueStorage(dsn, "q")
    with pytest.raises(StorageConnectionError) as raised:
        await storage.setup_database()
    await storage.close()
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    return raised.value


def test_bad_dsns_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"invalid PostgreSQL DSN.*postgresql://"):
        PostgresQueueStorage("mysql://user:secret@localhost/db", "q")
    with pytest.raises(ValueError, match="invalid PostgreSQL DSN") as raised:
        PostgresRateLimiterStorage("localhost:5432")
    assert "secret" not in str(raised.value)
    with pytest.raises(ValueError, match=r"password=\*\*\*") as raised:
        PostgresQueueStorage("mysql://db/app?user=me&password=secret", "q")
    assert "secret" not in str(raised.value)
    with pytest.raises(TypeError, match=r"DSN str or an asyncpg\.Pool"):
        PostgresQueueStorage(5432, "q")
    with pytest.raises(ValueError, match="NUL"):
        PostgresQueueStorage(require_dsn(), "a\x00b")


async def test_a_malformed_dsn_is_a_value_error() -> None:
    storage = PostgresQueueStorage(with_parts(require_dsn(), netloc="postgres@127.0.0.1:nope"), "q")
    with pytest.raises(ValueError, match="invalid PostgreSQL DSN"):
        await storage.setup_database()


async def test_nothing_listening_names_the_address() -> None:
    port = free_port()
    error = await setup_error(with_parts(require_dsn(), netloc=f"postgres@127.0.0.1:{port}"))
    assert f"127.0.0.1:{port}" in str(error) and "connection refused" in str(error)


async def test_an_unknown_host_is_named() -> None:
    error = await setup_error(with_parts(require_dsn(), netloc="postgres@no-such-host.invalid"))
    assert "unknown host 'no-such-host.invalid'" in str(error)


async def test_a_missing_database_is_named() -> None:
    error = await setup_error(with_parts(require_dsn(), path="/no_such_database"))
    assert "database 'no_such_database' does not exist" in str(error)


async def test_an_unknown_user_is_refused() -> None:
    netloc = urlsplit(require_dsn()).netloc.replace("postgres@", "no_such_role@", 1)
    error = await setup_error(with_parts(require_dsn(), netloc=netloc))
    assert "refused the user" in str(error) and "no_such_role" in str(error)


@contextlib.contextmanager
def password_required_for(role: str) -> Iterator[None]:
    """pg_hba.conf of the test cluster asks `role` (only) for its password, for a while."""
    pgdata = os.environ.get("PYJOBQUEUE_TEST_PGDATA")
    hba = Path(pgdata or "") / "pg_hba.conf"
    if not pgdata or not os.access(hba, os.W_OK):
        pytest.skip("needs PYJOBQUEUE_TEST_PGDATA with a writable pg_hba.conf")
    original = hba.read_text()
    rules = "".join(
        f"host all {role} {address} scram-sha-256\n" for address in ("127.0.0.1/32", "::1/128")
    )
    hba.write_text(rules + original)  # in place: owner and mode stay the server's
    try:
        yield
    finally:
        hba.write_text(original)


@contextlib.asynccontextmanager
async def role_with_password(password: str) -> AsyncIterator[str]:
    """A login role with a password (its name), dropped afterwards."""
    role = f"pyjobqueue_test_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(require_dsn())
    try:
        await admin.execute("SET password_encryption = 'scram-sha-256'")
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        try:
            with password_required_for(role):
                assert await admin.fetchval("SELECT pg_reload_conf()")
                yield role
        finally:
            await admin.fetchval("SELECT pg_reload_conf()")
            await admin.execute(f"DROP ROLE {role}")
    finally:
        await admin.close()


async def test_a_wrong_password_is_named_and_not_echoed() -> None:
    host = urlsplit(require_dsn()).netloc.split("@", 1)[1]
    async with role_with_password("right-secret") as role:
        wrong = with_parts(require_dsn(), netloc=f"{role}:wrong-secret@{host}")
        error = await _eventually_refused(wrong)
        assert f"password authentication failed for user '{role}'" in str(error)
        assert "wrong-secret" not in str(error) and f"{role}:***@" in str(error)
        # The same role with its password gets in: it was the password, nothing else.
        right = with_parts(require_dsn(), netloc=f"{role}:right-secret@{host}")
        connection = await asyncpg.connect(right)
        assert await connection.fetchval("SELECT current_user") == role
        await connection.close()


async def _eventually_refused(dsn: str) -> StorageConnectionError:
    # pg_reload_conf() only signals the server: its new rules apply moments later.
    for _ in range(100):
        storage = PostgresRateLimiterStorage(dsn)
        try:
            await storage.setup_database()
        except StorageConnectionError as error:
            return error
        await storage.close()
        await asyncio.sleep(0.05)
    raise AssertionError("the server never asked for the password")


async def test_using_a_storage_before_setup_says_so() -> None:
    storage = PostgresQueueStorage(require_dsn(), "q")
    with pytest.raises(RuntimeError, match="setup_database"):
        await storage.size()
    async with storage:
        assert await storage.size() >= 0
    with pytest.raises(RuntimeError, match="setup_database"):
        await storage.size()


def test_without_asyncpg_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # what `import asyncpg` sees uninstalled
    with pytest.raises(ImportError, match=r"pip install \"pyjobqueue\[postgres\]\""):
        PostgresQueueStorage(require_dsn(), "q")
    with pytest.raises(ImportError, match=r"pyjobqueue\[postgres\]"):
        PostgresRateLimiterStorage(require_dsn())
