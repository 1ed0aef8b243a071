"""The SQLite database file, and every statement on the crawler's tables in it: stories, their
full-text search index, per-source fetch state and `meta`.

`open_database()` opens (and creates) the file in WAL mode, and refuses a file that is no
usable database (empty, not SQLite, truncated, damaged) with a `DatabaseFileError` instead of
replacing it; it makes no table: the crawler's schema is `MIGRATIONS`, applied with the alerts'
by `newswatch.crawler.migrations` when the application opens its storage
(`newswatch.storage.open_storage`). `InstanceLock` keeps a second daemon off the same file.
`StorageError` and `StorageUnavailable` are what a store raises when the database fails; other
modules catch those names, never the driver's.
`StoryStore` deduplicates each source's stories by id, canonical URL and GUID, so a story that
is re-published, re-dated or re-linked with tracking parameters is stored once. Two sources
that give the same canonical URL both keep their story (the second under `claimant_id`): one
source cannot keep another's story out, and clustering decides whether they are one event. A
story stored with a `held` reason (too old, or an undated item of a source's first fetch) is
kept, searchable and counted, but never alerts. The `meta` table holds cursors, states and the
daemon's heartbeat (`HEARTBEAT_KEY`, the time of its last successful write).
Search candidates come from an FTS5 table with the trigram tokenizer (`stories_fts`) when the
SQLite library has it, or from LIKE; the index follows the stories table through a cursor kept
in `meta` (`FTS_CURSOR_KEY`), caught up by the next search, so fetching never waits on it.
All methods run on the daemon's event-loop thread; each write is one short transaction.
A feed pass reads the fetch states of all its sources at once (`fetch_states`) and records
the successes that stored no stories (`QuietSuccess`: 304s, feeds without items) many to a
transaction (`record_quiet_successes`), the same row per source as `record_success` writes.

The same statements run on PostgreSQL when `storage.url` names one
(`newswatch.crawler.postgres`, which translates them): there the schema is each migration's
PostgreSQL DDL, and search reads the stories with ILIKE on `pg_trgm` indexes instead of FTS5.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from newswatch.crawler.story import Story, claimant_id

log = logging.getLogger("newswatch.store")

MAX_TEXT_CHARS = 50_000
CACHE_KIB = 256 * 1024  # page cache per connection, at most: the look-up indexes of recent stories stay in memory
HELD_TOO_OLD = "too old"          # published longer ago than the source's alert_max_age
HELD_BASELINE = "first fetch"     # an undated item of a source's first successful fetch
HEARTBEAT_KEY = "heartbeat"       # meta: when the daemon last wrote to the database
MAX_TITLE_CHARS = 1_000  # a headline is a line; a feed can put a whole page in one
FTS_CURSOR_KEY = "search_index_cursor"  # meta: the last story seq in the search index
INDEX_BATCH = 2000
STATES_CHUNK = 500  # sources per query of their fetch states, on SQLite

# what the other modules catch, never the drivers' names (the PostgreSQL connection raises these too)
StorageError = sqlite3.Error  # the database failed: locked, full, read-only, damaged
StorageUnavailable = sqlite3.OperationalError  # locked, full, read-only, unreachable: the same write may work later


class DatabaseUnreachable(StorageUnavailable):
    """The database server does not answer (refused, cut, restarting): the work waits for it."""
POSTGRESQL = "postgresql"

# -- schema -------------------------------------------------------------------------------------
_TABLES = """
CREATE TABLE IF NOT EXISTS stories (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    source     TEXT NOT NULL,
    guid       TEXT NOT NULL,
    url        TEXT NOT NULL,
    title      TEXT NOT NULL,
    text       TEXT NOT NULL,
    published  TEXT NOT NULL,
    fetched    TEXT NOT NULL,
    language   TEXT NOT NULL DEFAULT '',
    author     TEXT NOT NULL DEFAULT '',
    held       TEXT NOT NULL DEFAULT '', -- why it may not alert: HELD_TOO_OLD, HELD_BASELINE, or ''
    from_page  INTEGER NOT NULL DEFAULT 0 -- 1: read from the article page at `url` (not a feed's item)
);
CREATE TABLE IF NOT EXISTS fetch_state (
    source         TEXT PRIMARY KEY,
    etag           TEXT,
    last_modified  TEXT,
    last_attempt   TEXT,
    last_success   TEXT,
    last_status    INTEGER,
    last_error     TEXT NOT NULL DEFAULT '',
    failures       INTEGER NOT NULL DEFAULT 0,
    not_before     TEXT,
    stories_total  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
# after the columns a table of an earlier release lacks are added
_INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS stories_source_url ON stories(source, url) WHERE url != '';
CREATE INDEX IF NOT EXISTS stories_by_url ON stories(url) WHERE url != '';
CREATE UNIQUE INDEX IF NOT EXISTS stories_source_guid ON stories(source, guid) WHERE guid != '';
CREATE INDEX IF NOT EXISTS stories_published ON stories(published);
CREATE INDEX IF NOT EXISTS stories_held ON stories(fetched) WHERE held != '';
"""


def _baseline(conn: sqlite3.Connection) -> None:
    """The crawler's tables as this release has them, made, or brought up to date when an earlier
    release made them: `held` and `from_page` came later, and a canonical URL was unique across
    sources (`stories_url`), so the first source to claim one kept every other source's story
    out; it is unique per source now (`stories_source_url`)."""
    run_script(conn, _TABLES)
    add_columns(conn, "stories", {"held": "TEXT NOT NULL DEFAULT ''", "from_page": "INTEGER NOT NULL DEFAULT 0"})
    conn.execute("DROP INDEX IF EXISTS stories_url")
    run_script(conn, _INDEXES)


_PG_TABLES = """
CREATE TABLE IF NOT EXISTS stories (
    seq        BIGSERIAL PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    source     TEXT NOT NULL,
    guid       TEXT NOT NULL,
    url        TEXT NOT NULL,
    title      TEXT NOT NULL,
    text       TEXT NOT NULL,
    published  TEXT NOT NULL,
    fetched    TEXT NOT NULL,
    language   TEXT NOT NULL DEFAULT '',
    author     TEXT NOT NULL DEFAULT '',
    held       TEXT NOT NULL DEFAULT '',
    from_page  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS fetch_state (
    source         TEXT PRIMARY KEY,
    etag           TEXT,
    last_modified  TEXT,
    last_attempt   TEXT,
    last_success   TEXT,
    last_status    INTEGER,
    last_error     TEXT NOT NULL DEFAULT '',
    failures       INTEGER NOT NULL DEFAULT 0,
    not_before     TEXT,
    stories_total  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
_PG_SEARCH_INDEXES = ("stories_title_trgm", "stories_text_trgm")


def _pg_search_index(conn) -> None:
    """PostgreSQL's search index: `pg_trgm` GIN indexes of titles and texts, which serve the
    ILIKE of each searched word (without the extension, /search reads the stories unindexed)."""
    conn.execute("SAVEPOINT search_index")
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, column in zip(_PG_SEARCH_INDEXES, ("title", "text")):
            conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON stories USING gin ({column} gin_trgm_ops)")
    except StorageError as exc:
        conn.execute("ROLLBACK TO SAVEPOINT search_index")
        log.info("the pg_trgm extension is unavailable (%s); /search reads the stories unindexed",
                 str(exc).strip().splitlines()[0])
    conn.execute("RELEASE SAVEPOINT search_index")


def _search_index(conn: sqlite3.Connection) -> None:
    """The full-text index of titles and texts, when the SQLite library has FTS5 with the trigram
    tokenizer (otherwise /search reads the stories with LIKE)."""
    try:
        conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS stories_fts USING fts5("
                     "title, text, content='stories', content_rowid='seq', tokenize='trigram')")
    except sqlite3.OperationalError as exc:
        log.info("full-text search unavailable (%s); /search uses LIKE", exc)


# Which worker crawls a host's sources and when a source is free again (newswatch.crawler.leases).
# PostgreSQL only: on SQLite one worker runs at a time (its lock file) and takes every source, so
# its step is empty (recorded all the same, so both databases count the same versions).
_PG_LEASES = """
CREATE TABLE IF NOT EXISTS source_leases (
    source TEXT PRIMARY KEY,
    holder TEXT NOT NULL DEFAULT '',
    until TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
);
CREATE TABLE IF NOT EXISTS host_leases (
    host TEXT PRIMARY KEY,
    holder TEXT NOT NULL DEFAULT '',
    session INTEGER NOT NULL DEFAULT 0,
    session_start TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    until TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
)
"""


# (version, name, SQL or function): applied in order by newswatch.crawler.migrations; never edit
# one that a release has shipped, add the next
# the fourth item is the migration's PostgreSQL step
MIGRATIONS = [
    (1, "baseline: stories, fetch_state, meta", _baseline, _PG_TABLES + _INDEXES),
    (2, "stories_fts: the full-text search index", _search_index, _pg_search_index),
    (3, "source_leases, host_leases: the sources shared by workers", "", _PG_LEASES),
]


class DatabaseFileError(Exception):
    """The database file cannot be used (empty, not SQLite, truncated, damaged, written by a newer
    release, or in use by another newswatch); the message names the file and says what to do."""


SQLITE_HEADER = b"SQLite format 3\x00"
START_FRESH = "to start with a new, empty database, move it away (or delete it) and start again"


def open_database(path: str | Path, *, busy_timeout: float = 30.0, read_only: bool = False) -> sqlite3.Connection:
    """Open the database file, creating it if needed (its tables are made by the migrations). A
    file that is there but is no usable database raises `DatabaseFileError` (it is never
    replaced). A write waits at most `busy_timeout` seconds for another connection's lock.
    `read_only`: the file must exist, and nothing is written to it."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            _create_database_file(path)
    check_database_file(path)
    try:
        if read_only:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                                   check_same_thread=False, timeout=10)
        else:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.row_factory = sqlite3.Row
        if not read_only:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # reads the header: a damaged file fails here
    except sqlite3.OperationalError as exc:
        raise DatabaseFileError(f"{path}: cannot be opened: {exc}") from None
    except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
        raise DatabaseFileError(f"{path}: is damaged ({exc}); restore it from a backup, or {START_FRESH}") from None
    set_busy_timeout(conn, busy_timeout)
    return conn


def _create_database_file(path: Path) -> None:
    """A new, empty database (in WAL mode), made aside and linked into place in one step: a
    process starting beside this one finds no file or a whole one, never an empty file (which
    `check_database_file` refuses as a lost database)."""
    aside = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
    try:
        conn = sqlite3.connect(aside)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
        try:
            os.link(aside, path)
        except FileExistsError:
            pass  # another process made it first
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(aside, path)
    except (OSError, sqlite3.Error) as exc:
        raise DatabaseFileError(f"{path}: cannot be created: {exc}") from None
    finally:
        aside.unlink(missing_ok=True)


def dialect(conn) -> str:
    """"sqlite" or "postgresql": which database a connection is on."""
    return getattr(conn, "dialect", "sqlite")


def table_exists(conn, name: str) -> bool:
    if dialect(conn) == POSTGRESQL:
        return conn.execute("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()[0]
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


def set_busy_timeout(conn: sqlite3.Connection, seconds: float) -> None:
    """How long a statement waits for another connection's lock before failing with "locked"."""
    if dialect(conn) == POSTGRESQL:
        conn.set("lock_timeout", str(int(seconds * 1000)))
        return
    conn.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")


def check_database_file(path: Path) -> None:
    """Refuse a file that cannot be the database: empty, not SQLite, or shorter than its header says."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return  # a new database
    if size == 0:
        raise DatabaseFileError(f"{path}: the database file is empty (0 bytes); it is left as it is. "
                                f"If it was lost, restore it from a backup; {START_FRESH}")
    with path.open("rb") as file:
        header = file.read(100)
    if len(header) < 100 or not header.startswith(SQLITE_HEADER):
        raise DatabaseFileError(f"{path}: is not an SQLite database (it starts with {header[:16]!r}); "
                                f"check storage.path, or {START_FRESH}")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    counted = header[24:28] == header[92:96]  # the page count is valid (SQLite file format, 1.3.7)
    wal = Path(f"{path}-wal")
    if counted and size < pages * page_size and not (wal.exists() and wal.stat().st_size):
        raise DatabaseFileError(f"{path}: is truncated ({size} bytes of the {pages * page_size} it should have); "
                                f"restore it from a backup, or {START_FRESH}")


def integrity(conn: sqlite3.Connection) -> str:
    """SQLite's quick check of the whole file: "ok", or what is damaged (PostgreSQL checks its own
    pages: "ok" once it answers)."""
    if dialect(conn) == POSTGRESQL:
        conn.execute("SELECT 1").fetchone()
        return "ok"
    return conn.execute("PRAGMA quick_check").fetchone()[0]


def run_script(conn: sqlite3.Connection, script: str) -> None:
    """Each statement of `script` in turn, inside the caller's transaction (`executescript` would
    commit it first)."""
    if dialect(conn) == POSTGRESQL:
        conn.run_script(script)
        return
    statement = ""
    for piece in script.split(";"):
        statement += piece + ";"
        if sqlite3.complete_statement(statement):
            if statement.strip(" \n;"):
                conn.execute(statement)
            statement = ""


def add_columns(conn: sqlite3.Connection, table: str, columns: Mapping[str, str]) -> None:
    """Add those of `columns` (name -> declaration) that `table` lacks: how a baseline migration
    brings a table made by an earlier release up to date."""
    have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    for name, declaration in columns.items():
        if name not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")


class InstanceLock:
    """One daemon per database file: an exclusive `flock` on `<database>.lock`, which names the
    holder's pid, held until `release()` or the process ends (a crash releases it too)."""

    def __init__(self, database: str | Path) -> None:
        self.database = Path(database)
        self.path = Path(f"{database}.lock")
        self.file: TextIO | None = None

    def acquire(self) -> None:
        """Take the lock, or raise `DatabaseFileError` naming the process that has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.seek(0)
            holder = file.read().strip()
            file.close()
            who = f"pid {holder}" if holder.isdigit() else f"see {self.path}"
            raise DatabaseFileError(f"{self.database}: another newswatch ({who}) is already running on this "
                                    "database; stop it first (two would send every alert and answer every "
                                    "command twice)") from None
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        self.file = file

    def release(self) -> None:
        if self.file is not None:
            self.file.close()  # closing the file releases the flock
            self.file = None


class transaction:
    """`with transaction(conn):` — BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


@dataclass(frozen=True)
class FetchState:
    source: str
    etag: str | None = None
    last_modified: str | None = None
    last_attempt: datetime | None = None
    last_success: datetime | None = None
    last_status: int | None = None
    last_error: str = ""
    failures: int = 0
    not_before: datetime | None = None
    stories_total: int = 0

    def conditional_headers(self) -> dict[str, str]:
        """If-None-Match / If-Modified-Since for the next request, from the stored validators."""
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


_RECORD_SUCCESS = (
    "INSERT INTO fetch_state (source, etag, last_modified, last_attempt, last_success,"
    " last_status, last_error, failures, not_before, stories_total)"
    " VALUES (?,?,?,?,?,?,?,0,?,?)"
    " ON CONFLICT(source) DO UPDATE SET"
    " etag = COALESCE(excluded.etag, fetch_state.etag),"
    " last_modified = COALESCE(excluded.last_modified, fetch_state.last_modified),"
    " last_attempt = excluded.last_attempt, last_success = excluded.last_success,"
    " last_status = excluded.last_status, last_error = excluded.last_error, failures = 0,"
    " not_before = excluded.not_before, stories_total = fetch_state.stories_total + ?"
)
"""A successful fetch's row of `fetch_state`: new validators (the stored ones are kept when the
response had none), the failures reset, and the count of its new stories added."""


@dataclass(frozen=True)
class QuietSuccess:
    """A successful fetch of a source that stored no stories (a 304, a feed without items): what
    `StoryStore.record_success` writes to its fetch state."""

    source: str
    at: datetime
    status: int
    etag: str | None = None
    last_modified: str | None = None
    not_before: datetime | None = None
    note: str = ""

    def row(self, new: int) -> tuple:
        """The parameters of `_RECORD_SUCCESS`, with `new` stories stored."""
        at = db_time(self.at)
        return (self.source, self.etag, self.last_modified, at, at, self.status, self.note,
                db_time(self.not_before), new, new)


def db_time(dt: datetime | None) -> str | None:
    """How times are stored: ISO 8601 in UTC, so that text order is time order."""
    return dt.astimezone(UTC).isoformat() if dt else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class StoredStory:
    seq: int
    story: Story
    fetched: datetime
    held: str = ""  # why it may not alert ('' when it may)


class StoryStore:
    """Stories and fetch state, on a connection from `open_database()`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def transaction(self) -> transaction:
        """`with store.transaction():` — the writes inside, of any store on this connection, as one."""
        return transaction(self.conn)

    # -- stories ---------------------------------------------------------------------------
    def add_stories(self, stories: Iterable[Story], fetched: datetime, held: Mapping[str, str] = {}, *,
                    from_page: bool = False) -> list[Story]:
        """Insert the stories not seen before (in one transaction); return the new ones.
        `held` maps a story id to the reason it may not alert; `from_page`: each was read from
        the article page at its URL."""
        with transaction(self.conn) as conn:
            return _insert_new(conn, stories, fetched, held, from_page)

    def known_urls(self, urls: Iterable[str], source: str | None = None) -> set[str]:
        """Those of `urls` already stored; with `source`, those stored by that source or read from
        their article page by any source (the article pages a site source need not fetch)."""
        urls = list(urls)
        found: set[str] = set()
        for i in range(0, len(urls), 500):
            chunk = urls[i : i + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT url FROM stories WHERE url != '' AND url IN ({marks})"
            if source is not None:
                sql, chunk = sql + " AND (source = ? OR from_page = 1)", [*chunk, source]
            found.update(r[0] for r in self.conn.execute(sql, chunk))
        return found

    def stories_after(self, seq: int, limit: int = 500) -> list[StoredStory]:
        rows = self.conn.execute(
            "SELECT * FROM stories WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ).fetchall()
        return [_row_story(r) for r in rows]

    def get(self, story_id: str) -> StoredStory | None:
        row = self.conn.execute("SELECT * FROM stories WHERE id = ?", (story_id,)).fetchone()
        return _row_story(row) if row else None

    def find(self, key: str) -> StoredStory | None:
        """A story by id or URL."""
        row = self.conn.execute("SELECT * FROM stories WHERE id = ?", (key,)).fetchone()
        if row is None and key:  # url != '' lets SQLite use the partial index on url
            row = self.conn.execute("SELECT * FROM stories WHERE url != '' AND url = ?", (key,)).fetchone()
        return _row_story(row) if row else None

    def count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM stories").fetchone()[0]

    def latest_seq(self) -> int:
        """The sequence number of the last story stored (0 before the first)."""
        return self.conn.execute("SELECT MAX(seq) FROM stories").fetchone()[0] or 0

    def stored_per_day(self, since: datetime) -> dict[str, int]:
        """"YYYY-MM-DD" (UTC) -> stories stored that day, since `since`."""
        rows = self.conn.execute(
            "SELECT substr(fetched, 1, 10), COUNT(*) FROM stories WHERE fetched >= ? GROUP BY 1", (db_time(since),))
        return {day: count for day, count in rows}

    def held_per_day(self, since: datetime) -> dict[str, dict[str, int]]:
        """reason -> "YYYY-MM-DD" -> stories stored that day that may not alert, since `since`."""
        held: dict[str, dict[str, int]] = {}
        for reason, day, count in self.conn.execute(
                "SELECT held, substr(fetched, 1, 10), COUNT(*) FROM stories WHERE held != '' AND fetched >= ?"
                " GROUP BY 1, 2", (db_time(since),)):
            held.setdefault(reason, {})[day] = count
        return held

    # -- search ----------------------------------------------------------------------------
    def has_search_index(self) -> bool:
        """Whether the full-text index exists (the SQLite library that made the schema had FTS5;
        the PostgreSQL server had `pg_trgm`)."""
        if dialect(self.conn) == POSTGRESQL:
            return table_exists(self.conn, _PG_SEARCH_INDEXES[0])
        return self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stories_fts'").fetchone() is not None

    def search_candidates(self, indexed: list[str], scanned: list[str], limit: int) -> Iterator[tuple[str, str, str]]:
        """(id, title, text) of the stories holding every word as a substring, newest published
        first: `indexed` words found through the full-text index (three characters or more),
        `scanned` ones with LIKE. On PostgreSQL every word is read with ILIKE (case-insensitive
        substrings, as FTS5's trigram tokenizer finds them), served by the `pg_trgm` indexes."""
        if dialect(self.conn) == POSTGRESQL:
            indexed, scanned = [], [*indexed, *scanned]
        operator = "ILIKE" if dialect(self.conn) == POSTGRESQL else "LIKE"
        like = " AND ".join(f"(s.title {operator} ? ESCAPE '\\' OR s.text {operator} ? ESCAPE '\\')" for _ in scanned)
        like_args = [arg for w in scanned for arg in (_like(w), _like(w))]
        order = " ORDER BY s.published DESC, s.seq DESC LIMIT ?"
        if indexed:
            self._catch_up_index()
            query = " AND ".join('"' + w.replace('"', '""') + '"' for w in indexed)
            sql = ("SELECT s.id, s.title, s.text FROM stories_fts f JOIN stories s ON s.seq = f.rowid"
                   " WHERE stories_fts MATCH ?" + (f" AND {like}" if like else "") + order)
            return iter(self.conn.execute(sql, [query, *like_args, limit]))
        return iter(self.conn.execute(f"SELECT s.id, s.title, s.text FROM stories s WHERE {like}" + order,
                                      [*like_args, limit]))

    def _catch_up_index(self) -> None:
        """Index the stories stored since the last search."""
        while True:
            cursor = int(self.get_meta(FTS_CURSOR_KEY, "0"))
            last = self.conn.execute(
                "SELECT MAX(seq) FROM (SELECT seq FROM stories WHERE seq > ? ORDER BY seq LIMIT ?)",
                (cursor, INDEX_BATCH),
            ).fetchone()[0]
            if last is None:
                return
            with transaction(self.conn):
                self.conn.execute(
                    "INSERT INTO stories_fts (rowid, title, text)"
                    " SELECT seq, title, text FROM stories WHERE seq > ? AND seq <= ?", (cursor, last),
                )
                self.set_meta(FTS_CURSOR_KEY, str(last))

    def held_since(self, since: datetime) -> dict[str, int]:
        """Stories stored since `since` that may not alert, counted by reason."""
        rows = self.conn.execute(
            "SELECT held, COUNT(*) FROM stories WHERE held != '' AND fetched >= ? GROUP BY held", (db_time(since),)
        )
        return {r[0]: r[1] for r in rows}

    # -- fetch state -------------------------------------------------------------------------
    def fetch_state(self, source: str) -> FetchState:
        row = self.conn.execute("SELECT * FROM fetch_state WHERE source = ?", (source,)).fetchone()
        return _row_state(row) if row is not None else FetchState(source)

    def fetch_states(self, sources: Iterable[str]) -> dict[str, FetchState]:
        """The fetch states of those of `sources` that have one (a source never fetched has none),
        in one query on PostgreSQL (an array parameter) and one per `STATES_CHUNK` sources on
        SQLite (whose statements take a bounded number of parameters, and cost no round trip)."""
        names = list(dict.fromkeys(sources))
        if dialect(self.conn) == POSTGRESQL:
            rows = self.conn.execute("SELECT * FROM fetch_state WHERE source = ANY(?)", (names,)).fetchall()
            return {row["source"]: _row_state(row) for row in rows}
        states: dict[str, FetchState] = {}
        for i in range(0, len(names), STATES_CHUNK):
            chunk = names[i : i + STATES_CHUNK]
            sql = f"SELECT * FROM fetch_state WHERE source IN ({','.join('?' * len(chunk))})"
            states.update((row["source"], _row_state(row)) for row in self.conn.execute(sql, chunk))
        return states

    def blocked_until(self, now: datetime) -> dict[str, datetime]:
        """Sources that may not be fetched before a later time (backoff, Retry-After, TTL)."""
        rows = self.conn.execute("SELECT source, not_before FROM fetch_state WHERE not_before > ?", (db_time(now),))
        return {r[0]: datetime.fromisoformat(r[1]) for r in rows}

    def clear_backoff(self, source: str) -> None:
        """Let a source be fetched at once (an admin re-enabled it)."""
        self.conn.execute("UPDATE fetch_state SET not_before = NULL, failures = 0 WHERE source = ?", (source,))

    def all_fetch_states(self) -> dict[str, FetchState]:
        return {row["source"]: _row_state(row) for row in self.conn.execute("SELECT * FROM fetch_state")}

    def last_attempt(self) -> datetime | None:
        """When any source was last fetched."""
        return _dt(self.conn.execute("SELECT MAX(last_attempt) FROM fetch_state").fetchone()[0])

    def record_success(
        self, source: str, *, at: datetime, status: int, etag: str | None, last_modified: str | None,
        stories: Iterable[Story], not_before: datetime | None = None, note: str = "",
        held: Mapping[str, str] = {},
    ) -> list[Story]:
        """Store a successful fetch's stories and its validators in one transaction."""
        with transaction(self.conn) as conn:
            new = _insert_new(conn, stories, at, held)
            success = QuietSuccess(source, at=at, status=status, etag=etag, last_modified=last_modified,
                                   not_before=not_before, note=note)
            conn.execute(_RECORD_SUCCESS, success.row(len(new)))
        return new

    def record_quiet_successes(self, successes: Sequence[QuietSuccess]) -> None:
        """Record successful fetches that brought no stories (304s, feeds without items) in one
        transaction, one statement for the lot (on PostgreSQL, one round trip): each source's row
        is what `record_success` writes for it with no stories. All are kept, or none."""
        if not successes:
            return
        with transaction(self.conn) as conn:
            conn.executemany(_RECORD_SUCCESS, [success.row(0) for success in successes])

    def record_failure(self, source: str, *, at: datetime, status: int | None, error: str, not_before: datetime | None) -> int:
        """Count one more consecutive failure; return the new count."""
        with transaction(self.conn) as conn:
            conn.execute(
                "INSERT INTO fetch_state (source, last_attempt, last_status, last_error, failures, not_before)"
                " VALUES (?,?,?,?,1,?)"
                " ON CONFLICT(source) DO UPDATE SET last_attempt = excluded.last_attempt,"
                " last_status = excluded.last_status, last_error = excluded.last_error,"
                " failures = fetch_state.failures + 1, not_before = excluded.not_before",
                (source, db_time(at), status, error[:500], db_time(not_before)),
            )
            return conn.execute("SELECT failures FROM fetch_state WHERE source = ?", (source,)).fetchone()[0]

    # -- meta --------------------------------------------------------------------------------
    def beat(self, at: datetime) -> None:
        """Record the heartbeat: a write that succeeds only while the database takes writes."""
        self.set_meta(HEARTBEAT_KEY, db_time(at) or "")

    def last_beat(self) -> datetime | None:
        return _dt(self.get_meta(HEARTBEAT_KEY)) or None

    def get_meta(self, key: str, default: str = "") -> str:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def _row_story(row: sqlite3.Row) -> StoredStory:
    story = Story(
        id=row["id"], source=row["source"], url=row["url"], title=row["title"], text=row["text"],
        published=datetime.fromisoformat(row["published"]), guid=row["guid"],
        language=row["language"], author=row["author"],
    )
    return StoredStory(seq=row["seq"], story=story, fetched=datetime.fromisoformat(row["fetched"]), held=row["held"])


def _row_state(row: sqlite3.Row) -> FetchState:
    return FetchState(
        source=row["source"], etag=row["etag"], last_modified=row["last_modified"],
        last_attempt=_dt(row["last_attempt"]), last_success=_dt(row["last_success"]),
        last_status=row["last_status"], last_error=row["last_error"], failures=row["failures"],
        not_before=_dt(row["not_before"]), stories_total=row["stories_total"],
    )


def _insert_new(conn: sqlite3.Connection, stories: Iterable[Story], fetched: datetime,
                held: Mapping[str, str], from_page: bool = False) -> list[Story]:
    """Insert each story unless its source has it already (same id, URL or GUID). A story whose
    canonical URL another source claimed first is stored too, under `claimant_id`.

    The dispatcher reads stories in `seq` order and keeps a cursor. On PostgreSQL several
    workers insert at once, and a transaction that drew a lower seq could commit after one that
    drew a higher seq, behind the cursor: its stories would never be dispatched. So the
    transactions that insert stories take one lock (`stories`) first and hold it until they
    commit: seqs become visible in order."""
    stories = list(stories)
    if stories and dialect(conn) == POSTGRESQL:  # a 304 inserts nothing and takes no lock
        conn.transaction_lock("stories")
    new: list[Story] = []
    for story in stories:
        reason = held.get(story.id, "")
        if _insert(conn, story, fetched, reason, from_page):
            new.append(story)
        elif story.url:
            # the id is taken: by this source's own copy (then the source's unique URL or GUID
            # index ignores this insert too), or by another source's story with the same URL
            second = replace(story, id=claimant_id(story.source, story.url))
            if _insert(conn, second, fetched, reason, from_page):
                new.append(second)
    return new


def _insert(conn: sqlite3.Connection, story: Story, fetched: datetime, held: str, from_page: bool) -> bool:
    cur = conn.execute(
        "INSERT OR IGNORE INTO stories (id, source, guid, url, title, text, published,"
        " fetched, language, author, held, from_page) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            story.id, story.source, story.guid, story.url, story.title[:MAX_TITLE_CHARS],
            story.text[:MAX_TEXT_CHARS], db_time(story.published), db_time(fetched),
            story.language, story.author, held, int(from_page),
        ),
    )
    return bool(cur.rowcount)


def _like(word: str) -> str:
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
