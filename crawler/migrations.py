"""Numbered schema migrations: each package lists its own, one runner applies the missing ones.

One database file holds the tables of two packages, the crawler's and the alerts'; each keeps
its ordered list of migrations beside its SQL (`newswatch.crawler.store.MIGRATIONS`,
`newswatch.alerts.store.MIGRATIONS`) as `Migration(version, name, step)`, where a step is a
script of SQL statements or a function of the connection. The versions applied are recorded
per part, in `schema_migrations(part, version, name, applied_at)`, not in one
`PRAGMA user_version`: each package numbers its migrations on its own (a change to the alerts'
tables never renumbers the crawler's), the record names what made the schema and when, and a
PostgreSQL store can keep the same table (`user_version` is SQLite's alone).

Migration 1 of each part is its baseline: it turns a database written by any earlier release
(which kept no versions: tables made in place by constructors, some without the columns added
later) into this release's schema, so each of its statements holds on such a database as on an
empty one. Later changes are later migrations. `migrate()` applies each missing migration in
its own transaction, together with the row that records it; a database that records a part or
a version this code does not know was written by a newer release and is refused
(`SchemaTooNew`), never used. Nothing is written when nothing is missing.

On PostgreSQL (`newswatch.crawler.postgres`) the same list is applied and recorded in the
same table: each migration carries its PostgreSQL step beside SQLite's (`Migration.postgres`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from newswatch.crawler.store import POSTGRESQL, DatabaseFileError, dialect, run_script, table_exists, transaction


class Migration(NamedTuple):
    version: int
    name: str
    step: str | Callable[[sqlite3.Connection], None]  # SQL statements, or a function that runs them
    postgres: str | Callable[[sqlite3.Connection], None] | None = None  # the same on PostgreSQL


# part ("crawler", "alerts") -> its migrations in order, as Migration or (version, name, step)
Parts = Mapping[str, Sequence[tuple]]

_RECORD = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    part        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    name        TEXT NOT NULL,
    applied_at  TEXT NOT NULL,
    PRIMARY KEY (part, version)
)
"""


class SchemaTooNew(DatabaseFileError):
    """The database was written by a newer release of newswatch; this one does not use it."""


def applied(conn: sqlite3.Connection) -> dict[str, dict[int, str]]:
    """part -> {version: name} of the migrations the database records ({} before the first)."""
    if not table_exists(conn, "schema_migrations"):
        return {}
    found: dict[str, dict[int, str]] = {}
    for part, version, name in conn.execute("SELECT part, version, name FROM schema_migrations"):
        found.setdefault(part, {})[version] = name
    return found


def pending(conn: sqlite3.Connection, parts: Parts, *, where: str = "the database") -> list[tuple[str, Migration]]:
    """The migrations `conn` lacks, in order; raises `SchemaTooNew` when it records one (or a part)
    this code does not know."""
    done = applied(conn)
    for part, versions in done.items():
        known = {m[0] for m in parts.get(part, ())}
        unknown = sorted(set(versions) - known)
        if part not in parts or unknown:
            newest = max(versions)
            raise SchemaTooNew(
                f"{where}: was written by a newer release of newswatch (its {part} schema is at version "
                f"{newest}, {versions[newest]!r}; this release knows "
                f"{'no such part' if part not in parts else f'versions up to {max(known, default=0)}'}); "
                "run that release, or restore a backup made for this one")
    return [(part, Migration(*m)) for part, migrations in parts.items() for m in sorted(migrations, key=lambda m: m[0])
            if m[0] not in done.get(part, {})]


def versions(conn: sqlite3.Connection) -> dict[str, int]:
    """part -> the highest version applied."""
    return {part: max(found) for part, found in applied(conn).items()}


def migrate(conn: sqlite3.Connection, parts: Parts, *, where: str = "the database",
            now: datetime | None = None) -> list[tuple[str, Migration]]:
    """Apply the missing migrations, each in its own transaction; return those applied.

    Several processes may start together on a new database: on PostgreSQL they take turns
    under an advisory lock; on SQLite each migration's write transaction (`BEGIN IMMEDIATE`)
    checks again that no other process recorded it meanwhile."""
    if not pending(conn, parts, where=where):
        return []
    done = []
    with _one_at_a_time(conn):
        missing = pending(conn, parts, where=where)
        if missing:
            conn.execute(_RECORD)
        for part, migration in missing:
            step = migration.postgres if dialect(conn) == POSTGRESQL else migration.step
            if step is None:
                raise DatabaseFileError(f"{where}: {part} migration {migration.version} has no PostgreSQL step")
            with transaction(conn):
                if conn.execute("SELECT 1 FROM schema_migrations WHERE part = ? AND version = ?",
                                (part, migration.version)).fetchone():
                    continue  # another process applied it first
                if callable(step):
                    step(conn)
                else:
                    run_script(conn, step)
                conn.execute("INSERT INTO schema_migrations (part, version, name, applied_at) VALUES (?,?,?,?)",
                             (part, migration.version, migration.name, (now or datetime.now(UTC)).isoformat()))
            done.append((part, migration))
    return done


def _one_at_a_time(conn) -> contextlib.AbstractContextManager:
    """PostgreSQL: the schema's migration lock, held for the whole run; SQLite: nothing more
    (its write transactions already take turns)."""
    return conn.advisory_lock("migrations") if dialect(conn) == POSTGRESQL else contextlib.nullcontext()
