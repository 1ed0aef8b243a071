"""Which worker polls a source: leases, so that two workers never fetch one source at once.

A worker `claim`s the sources its schedule found due and crawls only the ones it got; when the
crawl is over it `finish`es them, which keeps them from every worker for a rest (a share of
their interval, `REST_SHARE`), so that the workers' schedules together poll a source about once
per interval. A lease left by a worker that died runs out after `ttl` seconds.

- `SingleWorkerLeases`: SQLite, where one worker runs at a time (its lock file): every source
  is granted.
- `PostgresLeases`: a table of its own, `source_leases (source, holder, until)`, claimed with
  `SELECT … FOR UPDATE SKIP LOCKED` in one transaction, as workers sharing one database do
  (Miniflux): a row another worker is claiming is skipped, not waited for.

Per-host politeness across workers is not shared: each worker spaces the requests to a host on
its own.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable
from typing import Any, Protocol

log = logging.getLogger("newswatch.leases")

LEASE_TTL = 600.0  # seconds a claimed source stays with its worker when the worker never finishes it
REST_SHARE = 0.8  # after a crawl, a source rests for this share of its interval

SCHEMA = """
CREATE TABLE IF NOT EXISTS source_leases (
    source TEXT PRIMARY KEY,
    holder TEXT NOT NULL DEFAULT '',
    until TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
)
"""


class SourceLeases(Protocol):
    def claim(self, names: Iterable[str]) -> list[str]:
        """The sources of `names` this worker may crawl now (the others are another's)."""

    def finish(self, rests: dict[str, float]) -> None:
        """The crawl of these sources is over: each rests for its seconds, then is free."""

    def close(self) -> None: ...


class SingleWorkerLeases:
    """One worker on the database: it gets every source."""

    def claim(self, names: Iterable[str]) -> list[str]:
        return list(names)

    def finish(self, rests: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class PostgresLeases:
    """Leases kept in PostgreSQL's `source_leases` table, shared by every worker."""

    def __init__(self, url: str, *, holder: str | None = None, ttl: float = LEASE_TTL) -> None:
        import psycopg

        self.holder = holder or worker_name()
        self.ttl = ttl
        self.conn: Any = psycopg.connect(url, autocommit=True, application_name="newswatch worker leases")
        self.conn.execute(SCHEMA)

    def claim(self, names: Iterable[str]) -> list[str]:
        wanted = sorted(set(names))
        if not wanted:
            return []
        with self.conn.transaction():
            self.conn.execute("INSERT INTO source_leases (source) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
                              (wanted,))
            rows = self.conn.execute(
                "SELECT source FROM source_leases WHERE source = ANY(%s) AND until <= now() "
                "ORDER BY source FOR UPDATE SKIP LOCKED", (wanted,)).fetchall()
            granted = [r[0] for r in rows]
            if granted:
                self.conn.execute("UPDATE source_leases SET holder = %s, until = now() + make_interval(secs => %s) "
                                  "WHERE source = ANY(%s)", (self.holder, self.ttl, granted))
        return granted

    def finish(self, rests: dict[str, float]) -> None:
        with self.conn.transaction():
            for source, seconds in rests.items():
                self.conn.execute("UPDATE source_leases SET until = now() + make_interval(secs => %s) "
                                  "WHERE source = %s AND holder = %s", (seconds, source, self.holder))

    def close(self) -> None:
        self.conn.close()
