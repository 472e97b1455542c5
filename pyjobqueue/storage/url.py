"""open_storage / default_storage: pick a backend from a URL or from the runtime."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from .._platform import IN_PYODIDE
from .base import QueueStorage, check_queue_name

DEFAULT_SQLITE_PATH = "./pyjobqueue.db"
SCHEMES = ("memory://", "sqlite:///path", "postgresql://user@host/db", "indexeddb://name")


def open_storage(url: str, queue_name: str) -> QueueStorage:
    """A storage for `url` (memory://, sqlite:///path, postgresql://..., indexeddb://name).

    The storage still needs `await storage.setup_database()` (or `async with`).
    """
    check_queue_name(queue_name)
    if not isinstance(url, str):
        raise TypeError(f"storage url must be a str, got {type(url).__name__}")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        from .memory import InMemoryQueueStorage

        return InMemoryQueueStorage(queue_name)
    if scheme == "sqlite":
        from .sqlite import SqliteQueueStorage

        return SqliteQueueStorage(sqlite_path(url), queue_name)
    if scheme in ("postgres", "postgresql"):
        from .postgres import PostgresQueueStorage

        return PostgresQueueStorage(url, queue_name)
    if scheme == "indexeddb":
        from .indexeddb import IndexedDbQueueStorage

        database = unquote(url[len("indexeddb://") :]) or "pyjobqueue"
        return IndexedDbQueueStorage(queue_name, database)
    raise ValueError(f"unknown storage url {url!r}; expected one of: {', '.join(SCHEMES)}")


def sqlite_path(url: str) -> str:
    """The file path in sqlite:///relative.db, sqlite:////absolute.db or sqlite://:memory:."""
    rest = url[len("sqlite://") :]
    if rest in (":memory:", "/:memory:"):
        return ":memory:"
    path = unquote(urlsplit(url).path)
    if not rest.startswith("/") or not path.lstrip("/"):
        raise ValueError(f"sqlite url {url!r} needs a path: sqlite:///jobs.db or sqlite://:memory:")
    # Like SQLAlchemy: sqlite:///rel.db is relative, sqlite:////abs.db absolute.
    return path[1:]


def default_storage(queue_name: str) -> QueueStorage:
    """The embedded storage of this runtime: IndexedDB in a browser, ./pyjobqueue.db else."""
    check_queue_name(queue_name)
    if IN_PYODIDE:
        from .indexeddb import IndexedDbQueueStorage

        return IndexedDbQueueStorage(queue_name)
    from .sqlite import SqliteQueueStorage

    return SqliteQueueStorage(DEFAULT_SQLITE_PATH, queue_name)
