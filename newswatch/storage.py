"""Opening the storage: one database, one store per package, its schema brought up to date first.

`open_storage(location)` is where the daemon and the commands open the database, once, at
startup: it opens the file (`newswatch.crawler.store.open_database`), applies the missing
migrations of both parts (`PARTS`, by `newswatch.crawler.migrations.migrate`), and returns a
`Storage` holding the crawler's `StoryStore` and the `AlertsStore`, which every other object is
built on. A database written by a newer release is refused (`SchemaTooNew`, a
`DatabaseFileError`). `read_only` opens keep the file read-only (stats, export): a database of
an earlier release is upgraded in place first, once; `upgrade=False` leaves it as it is and
lists what it lacks (`Storage.pending`, for `newswatch doctor`).

The location is a file path (or `sqlite:///path`), or a `postgresql://` URL (`storage.url`):
then the same stores run on one PostgreSQL connection (`newswatch.crawler.postgres`, which
needs the `postgres` extra), the same migrations record themselves in the same
`schema_migrations` table, and a server that does not answer raises `StorageUnavailable`
naming host:port.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass, field
from pathlib import Path

from newswatch.alerts import store as alerts_store
from newswatch.alerts.store import AlertsStore
from newswatch.crawler import store as crawler_store
from newswatch.crawler.migrations import (
    Migration,
    SchemaTooNew,
    migrate,
    pending,
    versions,
)
from newswatch.crawler.store import (
    DatabaseFileError,
    StorageError,
    StorageUnavailable,
    StoryStore,
    integrity,
    open_database,
    set_busy_timeout,
)

# each part's migrations, applied in this order (the alerts' tables are read with the stories)
PARTS = {"crawler": crawler_store.MIGRATIONS, "alerts": alerts_store.MIGRATIONS}
SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")

__all__ = ["PARTS", "SchemaTooNew", "Storage", "database_file", "is_postgres", "open_storage", "storage_exists"]


@dataclass
class Storage:
    stories: StoryStore
    alerts: AlertsStore
    path: Path | str  # the database file, or the PostgreSQL URL
    pending: list[tuple[str, Migration]] = field(default_factory=list)  # left unapplied (upgrade=False)

    def versions(self) -> dict[str, int]:
        """part -> the schema version the database is at."""
        return versions(self.stories.conn)

    def integrity(self) -> str:
        """SQLite's quick check of the whole file: "ok", or what is damaged."""
        return integrity(self.stories.conn)

    def set_busy_timeout(self, seconds: float) -> None:
        set_busy_timeout(self.stories.conn, seconds)

    def close(self) -> None:
        self.stories.conn.close()


def is_postgres(location: str | Path) -> bool:
    return str(location).startswith(POSTGRES_PREFIXES)


def database_file(location: str | Path) -> Path:
    """The file of a location: a path, or a `sqlite:///` URL."""
    text = str(location)
    if text.startswith(SQLITE_PREFIX):
        return Path(text[len(SQLITE_PREFIX):])
    if "://" in text:
        raise DatabaseFileError(f"{text}: not a database newswatch knows (a path, sqlite:///path, or "
                                "postgresql://user@host:port/database)")
    return Path(location)


def storage_exists(location: str | Path) -> bool:
    """Whether there is a database to read at `location` (a PostgreSQL server is taken to have one)."""
    return is_postgres(location) or database_file(location).exists()


def open_storage(location: str | Path, *, read_only: bool = False, upgrade: bool = True,
                 busy_timeout: float = 30.0) -> Storage:
    """The stores on the database at `location`, its schema up to date (see the module's docstring)."""
    if is_postgres(location):
        return _open_postgres(str(location), read_only=read_only, upgrade=upgrade, busy_timeout=busy_timeout)
    path = database_file(location)
    storage = _open(path, read_only=read_only, upgrade=upgrade and not read_only, busy_timeout=busy_timeout)
    if read_only and upgrade and storage.pending:  # written by an earlier release: upgraded once, then read
        storage.close()
        _open(path, read_only=False, upgrade=True, busy_timeout=busy_timeout).close()
        storage = _open(path, read_only=True, upgrade=False, busy_timeout=busy_timeout)
    return storage


def _open(path: Path, *, read_only: bool, upgrade: bool, busy_timeout: float) -> Storage:
    conn = open_database(path, busy_timeout=busy_timeout, read_only=read_only)
    return Storage(StoryStore(conn), AlertsStore(conn), path, _schema(conn, str(path), upgrade=upgrade))


def _schema(conn: Any, where: str, *, upgrade: bool, then: Callable[[], None] = lambda: None,
            passed_on: tuple[type[Exception], ...] = (DatabaseFileError,)) -> list:
    """Bring the schema on `conn` up to date (or, without `upgrade`, list what it lacks), then
    run `then`; the connection is closed when that fails. The errors of `passed_on` go up as
    they are; any other failure is a `DatabaseFileError` naming `where`."""
    try:
        if upgrade:
            migrate(conn, PARTS, where=where)
            missing = []
        else:
            missing = pending(conn, PARTS, where=where)
        then()
        return missing
    except passed_on:
        conn.close()
        raise
    except StorageError as exc:
        conn.close()
        raise DatabaseFileError(f"{where}: its schema cannot be brought up to date: {type(exc).__name__}: {exc}") from None


def _open_postgres(url: str, *, read_only: bool, upgrade: bool, busy_timeout: float) -> Storage:
    """The stores on a PostgreSQL database, its schema brought up to date unless `upgrade` is
    False (a read-only open upgrades too: the server, not a file mode, keeps it read-only)."""
    try:
        from newswatch.crawler.postgres import PostgresConnection
    except ImportError:
        raise DatabaseFileError(f"{_safe(url)}: PostgreSQL needs the driver: pip install 'newswatch[postgres]'") from None
    conn = PostgresConnection(url)  # StorageUnavailable (naming host:port) while the server does not answer

    def settle() -> None:
        if read_only:
            conn.set("default_transaction_read_only", "on")
        set_busy_timeout(conn, busy_timeout)

    # a server that does not answer stays StorageUnavailable: the caller waits for it
    missing = _schema(conn, conn.where, upgrade=upgrade, then=settle, passed_on=(DatabaseFileError, StorageUnavailable))
    return Storage(StoryStore(conn), AlertsStore(conn), url, missing)


def _safe(url: str) -> str:
    """A URL without its password, for messages."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
