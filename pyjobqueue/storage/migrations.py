"""One migration scheme for every backend: numbered steps, applied in order, never edited.

A backend lists its schema as `MIGRATIONS`, a tuple of `Migration(version, summary,
steps)` numbered 1, 2, 3... Its `steps` are what the backend applies (SQL statements,
or a function that edits IndexedDB object stores). A database records the versions it
has applied (PostgreSQL: the table `pyjobqueue_schema_migrations`; SQLite:
`pyjobqueue_schema_version`, its first release's name; IndexedDB: the database
version); setting up applies the steps it lacks, and refuses a database that a newer
pyjobqueue has migrated further than this one knows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Generic, TypeVar

from ..errors import SchemaVersionError

StepsT = TypeVar("StepsT")


@dataclasses.dataclass(frozen=True)
class Migration(Generic[StepsT]):
    """One step of a backend's schema: from version - 1 to version."""

    version: int
    summary: str
    steps: StepsT


def check_numbering(migrations: Sequence[Migration[StepsT]]) -> int:
    """Check that versions run 1, 2, 3... without a gap; the latest version."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise AssertionError(f"migration {migration.version} should be numbered {expected}")
    return len(migrations)


def pending(
    migrations: Sequence[Migration[StepsT]], current: int, where: str
) -> list[Migration[StepsT]]:
    """The migrations a database at version `current` lacks, oldest first.

    Raises SchemaVersionError when `current` is newer than every migration known here.
    """
    latest = check_numbering(migrations)
    if current > latest:
        raise SchemaVersionError(
            f"{where} has schema version {current}, newer than this pyjobqueue knows "
            f"({latest}): upgrade pyjobqueue"
        )
    return [migration for migration in migrations if migration.version > current]
