"""Which process is the active one of a role: one dispatcher and one bot at a time, the rest standbys.

Two processes matching the same stories would queue every alert twice, and Telegram lets one
`getUpdates` poller in at a time, so `newswatch dispatch` and `newswatch bot` each take their
role's lock before starting their loops, and a standby takes it when the active process dies.
Both kinds of lock die with their process, a `kill -9` included:

- `FileLeadership` (SQLite, one machine): an exclusive `flock` on `<database>.<role>.lock`,
  which names the holder's pid. Workers take one too (`<database>.worker.lock`): SQLite is one
  machine's store, written by one crawler at a time.
- `PostgresLeadership`: a session-level advisory lock (`pg_try_advisory_lock`) held on a
  connection of its own, so it is released when that connection ends. `held()` asks the server
  that the connection is still there; when it is not, the process stops its role's work and
  stands by again (the server went away, restarted or was cut off: it works again once it holds
  the lock, or another process does).

`newswatch run` on PostgreSQL takes the dispatcher's and the bot's locks together
(`JointLeadership`, from `run_leadership`) and stands by like a role process while another
`run`, `dispatch` or `bot` holds either: a lock file means nothing to another machine.
The key of an advisory lock names the schema of the tables when it is not `public`.

`SharedDatabaseLock` keeps role processes and `newswatch run` (which holds `<database>.lock`
exclusively, `InstanceLock`) off one SQLite database at the same time: every role process holds
it shared. `await lead(leadership, stop)` waits as a standby, trying again every `RETRY`
seconds, and logs when the process becomes active.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import Any, Protocol, TextIO

from newswatch.alerts.config import NewswatchConfig
from newswatch.crawler.store import DatabaseFileError
from newswatch.storage import is_postgres

log = logging.getLogger("newswatch.leadership")

RETRY = 2.0  # seconds between a standby's tries
WORKER, DISPATCH, BOT = "worker", "dispatch", "bot"
ROLES = (WORKER, DISPATCH, BOT)


class Leadership(Protocol):
    """A role's lock: at most one process holds it; it is released when its holder ends."""

    role: str

    def try_acquire(self) -> bool:
        """Take the lock when nobody holds it; True when this process holds it now."""

    def held(self) -> bool:
        """Whether this process still holds the lock (False once its holder's connection is gone)."""

    def release(self) -> None:
        """Give the lock up (a standby may take it at its next try)."""

    def describe(self) -> str:
        """Where the lock lives, for the log."""


def _flocked(path: Path, mode: int) -> TextIO | None:
    """`path` opened and locked with `flock(mode)` without waiting; None when another holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    file = path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(file, mode | fcntl.LOCK_NB)
    except OSError:
        file.close()
        return None
    return file


class FileLeadership:
    """The role's lock as an exclusive `flock` on `<database>.<role>.lock` (SQLite, one machine)."""

    def __init__(self, database: str | Path, role: str) -> None:
        self.role = role
        self.path = Path(f"{database}.{role}.lock")
        self.file: TextIO | None = None

    def try_acquire(self) -> bool:
        if self.file is not None:
            return True
        file = _flocked(self.path, fcntl.LOCK_EX)
        if file is None:
            return False
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        self.file = file
        return True

    def held(self) -> bool:
        return self.file is not None

    def release(self) -> None:
        if self.file is not None:
            self.file.close()  # closing the file releases the flock
            self.file = None

    def holder(self) -> str:
        """The pid written by the process that holds the lock (or held it last)."""
        try:
            return self.path.read_text("utf-8").strip()
        except OSError:
            return ""

    def describe(self) -> str:
        return str(self.path)


class PostgresLeadership:
    """The role's lock as a session-level advisory lock on a dedicated PostgreSQL connection."""

    def __init__(self, url: str, role: str, *, connect_timeout: float = 5.0) -> None:
        self.role = role
        self.url = url
        from newswatch.crawler.postgres import advisory_key

        self.key = advisory_key(role)  # of the schema `public`; the tables' schema once connected
        self.connect_timeout = connect_timeout
        self.conn: Any = None
        self.holding = False
        self.unanswered = False  # the last try found the server not answering

    def _connection(self) -> Any:
        import psycopg
        from newswatch.crawler.postgres import advisory_key

        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self.connect_timeout)),
                                        application_name=f"newswatch {self.role}")
            schema = self.conn.execute("SELECT current_schema()").fetchone()[0]
            self.key = advisory_key(self.role, schema or "public")
        return self.conn

    def try_acquire(self) -> bool:
        import psycopg

        if self.holding:
            return self.held()
        try:
            row = self._connection().execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        except psycopg.Error as exc:
            if not self.unanswered:  # said once per outage
                log.warning("%s lock: PostgreSQL does not answer (%s); trying again", self.role,
                            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            self.unanswered = True
            self._drop()
            return False
        self.unanswered = False
        self.holding = bool(row and row[0])
        return self.holding

    def held(self) -> bool:
        import psycopg

        if not self.holding or self.conn is None:
            return False
        try:
            self.conn.execute("SELECT 1").fetchone()
        except psycopg.Error:
            self._drop()
            return False
        return True

    def release(self) -> None:
        import psycopg

        if self.conn is not None and self.holding:
            with contextlib.suppress(psycopg.Error):  # the lock ends with the connection anyway
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        self._drop()

    def _drop(self) -> None:
        self.holding = False
        if self.conn is not None:
            self.conn.close()  # closing a broken connection raises nothing
            self.conn = None

    def describe(self) -> str:
        return f"PostgreSQL advisory lock {self.key}"


class JointLeadership:
    """Several roles' locks held together (`newswatch run` on PostgreSQL: the dispatcher's and the
    bot's). All or none: a try that gets only some of them gives those back, so two processes
    each holding a part never wait on each other forever."""

    def __init__(self, parts: list[Leadership], role: str = "run") -> None:
        self.parts = parts
        self.role = role

    def try_acquire(self) -> bool:
        for part in self.parts:
            if not part.try_acquire():
                self.release()
                return False
        return True

    def held(self) -> bool:
        return all(part.held() for part in self.parts)

    def release(self) -> None:
        for part in self.parts:
            part.release()

    def describe(self) -> str:
        return ", ".join(f"{part.role}: {part.describe()}" for part in self.parts)


def leadership_for(config: NewswatchConfig, role: str) -> Leadership | None:
    """The lock a `role` process takes before working; None when any number may run (workers on
    PostgreSQL share the sources by leases instead)."""
    location = str(config.database)
    if is_postgres(location):
        return None if role == WORKER else PostgresLeadership(location, role)
    return FileLeadership(config.database_path, role)


def run_leadership(config: NewswatchConfig) -> Leadership | None:
    """The locks `newswatch run` takes on PostgreSQL: the dispatcher's and the bot's, so that no
    `run` or role process on the same database dispatches or polls Telegram beside it; None on
    SQLite, where `run` holds the database file itself (`InstanceLock`)."""
    location = str(config.database)
    if not is_postgres(location):
        return None
    return JointLeadership([PostgresLeadership(location, DISPATCH), PostgresLeadership(location, BOT)])


class SharedDatabaseLock:
    """A shared `flock` on `<database>.lock`: role processes run side by side on one SQLite file,
    and none of them beside a `newswatch run`, which holds that lock exclusively."""

    def __init__(self, database: str | Path) -> None:
        self.database = Path(database)
        self.path = Path(f"{database}.lock")
        self.file: TextIO | None = None

    def acquire(self) -> None:
        """Take the lock, or raise `DatabaseFileError` when `newswatch run` has the database."""
        self.file = _flocked(self.path, fcntl.LOCK_SH)
        if self.file is None:
            holder = self.path.read_text("utf-8").strip()  # `newswatch run` writes its pid there
            who = f"pid {holder}" if holder.isdigit() else f"see {self.path}"
            raise DatabaseFileError(f"{self.database}: newswatch run ({who}) is using this database; stop it "
                                    "before starting role processes on it")

    def release(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


async def lead(leadership: Leadership, stop: asyncio.Event, *, retry: float = RETRY) -> bool:
    """Wait until this process holds the role's lock (True) or `stop` is set first (False)."""
    waited = False
    while not stop.is_set():
        if await asyncio.to_thread(leadership.try_acquire):
            if waited:
                log.info("%s: the active process is gone; this one is active now (%s)",
                         leadership.role, leadership.describe())
            else:
                log.info("%s: active (%s)", leadership.role, leadership.describe())
            return True
        if not waited:
            log.info("%s: another process is active; standing by, trying every %gs (%s)",
                     leadership.role, retry, leadership.describe())
            waited = True
        try:
            await asyncio.wait_for(stop.wait(), retry)
        except TimeoutError:
            pass
    return False


async def keep(leadership: Leadership, *, every: float = RETRY) -> None:
    """Return when the lock is lost (its connection ended): the process must stop working."""
    while True:
        await asyncio.sleep(every)
        if not await asyncio.to_thread(leadership.held):
            log.error("%s: the lock is lost (%s); this process stops its work, so that another one takes over",
                      leadership.role, leadership.describe())
            return
