"""The PostgreSQL connection the stores use when `storage.url` names a PostgreSQL database.

The stores keep one text per statement, written for SQLite; `PostgresConnection` gives a
psycopg connection the surface of the `sqlite3` connection they use (`execute`,
`executemany`, rows read by position or by name, `rowcount`, `lastrowid`, `close`) and
`translate()` turns each statement into PostgreSQL's dialect: `?` placeholders become `%s`,
`INSERT OR IGNORE` becomes `INSERT … ON CONFLICT DO NOTHING`, `BEGIN IMMEDIATE` becomes
`BEGIN`, and an insert into a table whose new key the store reads (`lastrowid`) returns it
(`RETURNING`). Everything else in the stores' SQL is written so that both databases read it
the same way. A statement with parameters binds them on the
server (text as `unknown`, so that PostgreSQL reads it as the column's type, as SQLite compares
a value with a column), and psycopg prepares it once it has run `PREPARE_AFTER` times on the
connection: the stores' few hot statements are parsed and planned once per process. Scripts
and statements without parameters are sent as text (client-side), as a script of several
statements must be. `executemany` sends its rows in psycopg's pipeline, one round trip for
the lot. The connection stays in autocommit, as SQLite's does with `isolation_level=None`:
each statement commits alone, and `BEGIN … COMMIT` (the stores' `transaction()`) makes one
transaction of several.

One connection per process. A connection that broke (the server restarted) is opened again
by the next statement outside a transaction; while the server does not answer (or when the
connection breaks under a statement), every statement raises `DatabaseUnreachable` (a
`StorageUnavailable`: the daemon's loops wait and try again), with a message naming
host:port: the connection raises the stores' error types, never psycopg's, so the modules that
catch `StorageError` and `StorageUnavailable` need not know which database failed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from newswatch.crawler.store import DatabaseUnreachable, StorageError, StorageUnavailable

DIALECT = "postgresql"
CONNECT_TIMEOUT = 10  # seconds to wait for the server to answer
PREPARE_AFTER = 5  # executions of one statement with parameters before the server keeps its plan
# TCP keepalives on the connection: a server that vanished without closing it (a cut network)
# fails the statement waiting on it within about 25 s, instead of the system's two hours
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
# tables whose new row's key a store reads after an insert (cursor.lastrowid in SQLite)
RETURNED_KEYS = {"notices": "id", "watches": "id", "story_clusters": "rowid"}

_LITERAL_OR_MARK = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%")
_INSERT_INTO = re.compile(r"^\s*INSERT\s+(?:OR\s+IGNORE\s+)?INTO\s+(\w+)", re.IGNORECASE)


@functools.lru_cache(maxsize=2048)  # the stores' statements are a few hundred constant texts
def translate(sql: str, *, with_params: bool = True) -> str:
    """The SQLite-dialect statement `sql` as PostgreSQL reads it (see the module's docstring);
    a `%` is doubled only for a statement run with parameters."""
    if re.match(r"^\s*BEGIN\s+IMMEDIATE\s*$", sql, re.IGNORECASE):
        return "BEGIN"
    ignore = re.match(r"^\s*INSERT\s+OR\s+IGNORE\s+", sql, re.IGNORECASE)
    text = _LITERAL_OR_MARK.sub(lambda m: {"?": "%s", "%": "%%" if with_params else "%"}.get(m.group(0), m.group(0)), sql)
    insert = _INSERT_INTO.match(text)
    if ignore:
        text = re.sub(r"^\s*INSERT\s+OR\s+IGNORE\s+", "INSERT ", text, flags=re.IGNORECASE) + " ON CONFLICT DO NOTHING"
    if insert and insert.group(1) in RETURNED_KEYS and " VALUES " in text.upper() and "RETURNING" not in text.upper():
        text += f" RETURNING {RETURNED_KEYS[insert.group(1)]}"
    return text


class Row(tuple):
    """A row read by position or by column name, like `sqlite3.Row` (`dict(row)` works too)."""

    names: tuple[str, ...] = ()

    def __new__(cls, values: Sequence[Any], names: tuple[str, ...]) -> Row:  # noqa: PYI034
        row = super().__new__(cls, values)
        row.names = names
        return row

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names.index(key))
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self.names)


def _row_factory(cursor: psycopg.Cursor) -> Any:
    names = tuple(column.name for column in cursor.description or ())
    return lambda values: Row(values, names)


class Result:
    """What `execute()` returns: the rows, `rowcount` and `lastrowid` of one statement."""

    def __init__(self, rows: list[Row], rowcount: int, lastrowid: int | None) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def fetchone(self) -> Row | None:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[Row]:
        rows, self._rows = self._rows, []
        return rows

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())


def advisory_key(name: str, schema: str = "public") -> int:
    """A stable signed 64-bit key for the advisory lock `name` (the same in every process).
    Advisory locks are per database, so the schema holding the tables is part of the key when it
    is not the default `public`: two installations in one database do not exclude each other."""
    label = f"newswatch:{name}" if schema == "public" else f"newswatch:{name}:{schema}"
    digest = hashlib.blake2b(label.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresConnection:
    """A psycopg connection with the surface of the `sqlite3` connection the stores use."""

    dialect = DIALECT

    def __init__(self, url: str) -> None:
        self.url = url
        self.settings: dict[str, str] = {}  # SET statements, made again on a new connection
        self.where = _where(url)
        self._conn: psycopg.Connection | None = None
        self._schema: str | None = None  # of the tables, for advisory lock keys
        self._connect()

    def _connect(self) -> None:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                   prepare_threshold=PREPARE_AFTER, **KEEPALIVES)
        except psycopg.Error as exc:
            raise DatabaseUnreachable(f"PostgreSQL at {self.where} does not answer: {_first_line(exc)}") from None
        conn.row_factory = _row_factory
        for name, value in self.settings.items():
            conn.execute(f"SET {name} = {value}")
        self._conn = conn

    def set(self, name: str, value: str) -> None:
        """A setting of the session (`SET name = value`), kept when the connection is made again."""
        self.settings[name] = value
        self._ready().execute(f"SET {name} = {value}")

    def _ready(self) -> psycopg.Connection:
        if self._conn is None or self._conn.broken or self._conn.closed:
            self._connect()
        assert self._conn is not None
        return self._conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        conn = self._ready()
        try:
            params = tuple(params)
            cursor = (conn.cursor() if params else psycopg.ClientCursor(conn)).execute(
                translate(sql, with_params=bool(params)), params or None)
        except psycopg.Error as exc:
            raise self._error(exc) from None
        rows = cursor.fetchall() if cursor.description else []
        lastrowid = rows[0][0] if rows and _INSERT_INTO.match(sql) else None
        return Result(rows, cursor.rowcount, lastrowid)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(row) for row in rows]
        if rows:
            try:
                self._ready().cursor().executemany(translate(sql), rows)
            except psycopg.Error as exc:
                raise self._error(exc) from None

    def run_script(self, script: str) -> None:
        """Statements separated by `;` (no placeholders), inside the caller's transaction."""
        try:
            psycopg.ClientCursor(self._ready()).execute(script)
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def _key(self, name: str) -> int:
        if self._schema is None:
            row = self.execute("SELECT current_schema()").fetchone()
            self._schema = (row[0] if row else None) or "public"
        return advisory_key(name, self._schema)

    @contextlib.contextmanager
    def advisory_lock(self, name: str) -> Iterator[None]:
        """Hold the session-level advisory lock `name` (of this schema) while the block runs,
        waiting for a process that holds it (e.g. migrating the schema) to let it go."""
        key = self._key(name)
        self.execute("SELECT pg_advisory_lock(?)", (key,))
        try:
            yield
        finally:
            with contextlib.suppress(StorageError):  # a lost connection let the lock go with it
                self.execute("SELECT pg_advisory_unlock(?)", (key,))

    def transaction_lock(self, name: str) -> None:
        """Take the advisory lock `name` (of this schema) until the current transaction ends:
        the transactions that take it commit one after another, in the order they took it."""
        self.execute("SELECT pg_advisory_xact_lock(?)", (self._key(name),))

    def _error(self, exc: psycopg.Error) -> StorageError:
        """The stores' error for a driver's: unreachable (the connection broke), unavailable (locks,
        resources) or failed."""
        if self._conn is not None and self._conn.broken:
            return DatabaseUnreachable(f"PostgreSQL at {self.where}: the connection was lost: {_first_line(exc)}")
        kind = StorageUnavailable if isinstance(exc, psycopg.OperationalError) else StorageError
        return kind(f"PostgreSQL at {self.where}: {exc}")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def _first_line(exc: Exception) -> str:
    """The line of a driver's message that says what failed (its first one)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _where(url: str) -> str:
    """host:port/database of a URL (never its password)."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"

