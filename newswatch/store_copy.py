"""`newswatch store copy`: every table of one database into another, SQLite or PostgreSQL.

Both databases are opened with `open_storage`, so both have this release's schema (the
source's is brought up to date first, the target's made). Each table's rows are copied with
their ids and rowids (what `cluster_keys` and the dispatch cursor in `meta` point at), then the
target's id counters are moved past the source's, so no id is handed out twice. The copy is
one transaction on the target. A target that already holds rows is refused unless `force`,
which empties it first. The search index is derived, not copied: an SQLite target indexes the
stories on its first search (its cursor in `meta` starts again), a PostgreSQL one keeps its
`pg_trgm` indexes up to date itself.

These are the only statements outside the stores: they are the same for every table, named
by the stores' schemas.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import IO

from newswatch.alerts.store import ROWID_TABLES
from newswatch.crawler.store import FTS_CURSOR_KEY, POSTGRESQL, dialect
from newswatch.storage import Storage, is_postgres, open_storage

# in an order that keeps every reference whole (subscriptions and watches name a chat)
TABLES = ("stories", "fetch_state", "meta", "matches", "chats", "subscriptions", "watches", "notices", "outbox",
          "story_clusters", "cluster_keys", "runtime_sources", "votes")
# table -> the column its counter numbers (AUTOINCREMENT in SQLite, a sequence in PostgreSQL)
COUNTERS = {"stories": "seq", "outbox": "id", "notices": "id", "watches": "id",
            "story_clusters": "rowid", "runtime_sources": "rowid", "votes": "rowid"}
BATCH = 1000


class TargetNotEmpty(Exception):
    """The target database holds rows already (and `force` was not given)."""


def copy_database(source: str | Path, target: str | Path, *, force: bool = False) -> dict[str, int]:
    """Copy every table of `source` into `target`; return table -> rows copied."""
    src = open_storage(source, read_only=True)
    try:
        dst = open_storage(target)
        try:
            return _copy(src, dst, force=force)
        finally:
            dst.close()
    finally:
        src.close()


def _copy(src: Storage, dst: Storage, *, force: bool) -> dict[str, int]:
    source, target = src.stories.conn, dst.stories.conn
    held = {table: _count(target, table) for table in TABLES}
    if any(held.values()) and not force:
        filled = ", ".join(f"{table} ({count})" for table, count in held.items() if count)
        raise TargetNotEmpty(f"the target already holds rows: {filled}; add --force to replace them")
    counts: dict[str, int] = {}
    with dst.stories.transaction():
        for table in reversed(TABLES):
            target.execute(f"DELETE FROM {table}")
        for table in TABLES:
            counts[table] = _copy_table(source, target, table)
        for table, column in COUNTERS.items():
            _move_counter(target, table, column, _counter(source, table, column))
    return counts


def _count(conn, table: str) -> int:
    return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def _rows(conn, table: str) -> Iterable:
    rowid = "rowid, " if table in ROWID_TABLES and dialect(conn) != POSTGRESQL else ""
    where = f" WHERE key != '{FTS_CURSOR_KEY}'" if table == "meta" else ""
    return conn.execute(f"SELECT {rowid}* FROM {table}{where}")


def _copy_table(source, target, table: str) -> int:
    copied, batch, sql = 0, [], ""
    for row in _rows(source, table):
        if not sql:
            columns = row.keys()
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        batch.append(tuple(row))
        if len(batch) == BATCH:
            target.executemany(sql, batch)
            copied, batch = copied + len(batch), []
    if batch:
        target.executemany(sql, batch)
    return copied + len(batch)


def _counter(conn, table: str, column: str) -> int:
    """The last value the table's counter gave (0 before the first)."""
    if dialect(conn) == POSTGRESQL:
        return conn.execute(f"SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence('{table}', '{column}')"
                            f"::regclass), 0)").fetchone()[0]
    if column != "rowid":
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        if row is not None:
            return row[0]
    return conn.execute(f"SELECT COALESCE(MAX({column}), 0) FROM {table}").fetchone()[0]


def _move_counter(conn, table: str, column: str, at_least: int) -> None:
    """Make the target's counter give ids past the copied rows and past the source's counter."""
    last = max(at_least, conn.execute(f"SELECT COALESCE(MAX({column}), 0) FROM {table}").fetchone()[0])
    if dialect(conn) == POSTGRESQL:
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), ?, ?)", (max(last, 1), last > 0))
    elif column != "rowid" and last and not conn.execute(
            "UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (last, table)).rowcount:
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, last))


def show_copy(source: str, target: str, out: IO[str], *, force: bool = False) -> int:
    """`newswatch store copy`: copy, print the rows per table; 0, or 1 when the target was refused."""
    try:
        counts = copy_database(_location(source), _location(target), force=force)
    except TargetNotEmpty as exc:
        print(f"newswatch store copy: {exc}", file=out)
        return 1
    width = max(map(len, counts))
    for table, count in counts.items():
        print(f"{table:<{width}}  {count:>9,}", file=out)
    print(f"{'total':<{width}}  {sum(counts.values()):>9,}", file=out)
    return 0


def _location(text: str) -> str | Path:
    return text if is_postgres(text) or text.startswith("sqlite:///") else Path(text)
