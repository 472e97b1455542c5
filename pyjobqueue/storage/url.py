"""open_storage / default_storage: pick a backend from a URL or from the runtime."""

from __future__ import annotations

import re
from urllib.parse import unquote, unquote_plus, urlsplit

from .._platform import IN_PYODIDE
from .base import QueueStorage, check_queue_name

DEFAULT_SQLITE_PATH = "./pyjobqueue.db"
SCHEMES = ("memory://", "sqlite:///path", "postgresql://user@host/db", "indexeddb://name")
HIDDEN = "***"
# A `password=...` (or `sslpassword=...`) setting of a libpq keyword DSN, the value bare
# or in single quotes with backslash escapes.
_KEYWORD_PASSWORD = re.compile(r"(\b\w*password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)", re.IGNORECASE)


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
    raise ValueError(
        f"unknown storage url {redact_url(url)!r}; expected one of: {', '.join(SCHEMES)}"
    )


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


def redact_url(url: str) -> str:
    """The URL with its passwords hidden, for messages and logs; everything else as given.

    Hides the password of the user part (`user:secret@host` -> `user:***@host`) and the
    value of every query parameter whose name contains "password", in any case
    (`?password=`, `?sslpassword=`). Text that is not a URL (a libpq keyword DSN such as
    `host=db password=secret`) has its `password=` settings hidden. Never raises.
    """
    if not isinstance(url, str):
        return repr(url)
    scheme, separator, rest = url.partition("://")
    if not separator:
        return _KEYWORD_PASSWORD.sub(lambda match: match.group(1) + HIDDEN, url)
    end = _authority_end(rest)
    authority, tail = rest[:end], rest[end:]
    tail, hash_mark, fragment = tail.partition("#")
    path, question_mark, query = tail.partition("?")
    if question_mark:
        query = _redact_query(query)
    return (
        f"{scheme}://{_redact_userinfo(authority)}{path}{question_mark}{query}{hash_mark}{fragment}"
    )


def _first_delimiter(text: str, start: int = 0) -> int:
    """Index of the first "/", "?" or "#" of `text` from `start` (its length if none)."""
    found = [index for index in (text.find(char, start) for char in "/?#") if index >= 0]
    return min(found, default=len(text))


def _authority_end(rest: str) -> int:
    """Where the user:password@host:port part of `rest` (the URL after "//") ends."""
    end = _first_delimiter(rest)
    authority = rest[:end]
    at = rest.find("@", end)
    if "@" in authority or at < 0:
        return end
    # `user:pa/ss@host`: a password with an unescaped "/", "?" or "#" makes no valid URL
    # (a parser reads "pa" as the port), and must stay hidden all the same. When what
    # follows ":" is no port, the user part runs to the next "@".
    host, colon, port = authority.rpartition(":")
    if colon and host and not host.startswith("[") and port and not port.isdigit():
        return _first_delimiter(rest, at)
    return end


def _redact_userinfo(authority: str) -> str:
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return authority
    user, colon, password = userinfo.partition(":")
    if not colon or not password:
        return authority
    return f"{user}:{HIDDEN}@{host}"


def _redact_query(query: str) -> str:
    parameters = []
    for parameter in query.split("&"):
        key, equals, value = parameter.partition("=")
        if equals and value and "password" in unquote_plus(key).lower():
            parameter = f"{key}={HIDDEN}"
        parameters.append(parameter)
    return "&".join(parameters)
