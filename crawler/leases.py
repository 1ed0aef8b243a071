"""Which worker polls a source: leases by host, so that two workers never fetch one source at
once nor together hit one host harder than `crawler.per_host` allows.

A worker `claim`s the sources its schedule found due, given with their hosts, and crawls only
the ones it got; a source whose host another worker was crawling stays due and is asked for
again `BUSY_RETRY` seconds later (that worker may have been crawling other sources of the
host, and this one would otherwise wait a whole interval). One claim takes whole hosts up to
about `CLAIM_SHARE` due sources, so that a worker that starts first does not take every host
of a large configuration and leave the others idle; its remaining due sources wait for its
next claim (when a crawl of its own ends, or `BUSY_RETRY` later). When the crawl of a source is over
the worker `finish`es it, which keeps the source from every worker for a rest (a share of its
interval, `REST_SHARE`), so that the workers' schedules together poll a source about once per
interval.

- `SingleWorkerLeases`: SQLite, where one worker runs at a time (its lock file): every source
  is granted.
- `PostgresLeases`: the tables `host_leases (host, holder, session, session_start, until)` and
  `source_leases (source, holder, until)` (crawler migration 3), claimed with
  `SELECT … FOR UPDATE SKIP LOCKED` in one transaction, as workers sharing one database do
  (Miniflux): a row another worker is claiming is skipped, not waited for.

A host goes to one worker at a time, with all of its due sources: that worker's own per-host
limits (`per_host` requests at once, `delay` between them) then hold across every worker. It
keeps the host while it crawls any of them, and gives it up when the last one is finished.

A lease names the holder's database session (its backend pid and start time). A session the
server no longer lists is a dead worker's, and its hosts are free at once: a worker killed with
`kill -9` has its connection closed by the kernel, so its sources are taken by another worker
at that worker's next due time of each (at most one interval later). A worker whose machine
vanished without closing its connection is noticed by the server's TCP keepalives, which this
connection sets to about 25 s (`SESSION_KEEPALIVES`). A live session keeps a host at most
`ttl` seconds without claiming again (a crawl that hangs longer).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

from newswatch.crawler.store import DatabaseUnreachable, StorageError

log = logging.getLogger("newswatch.leases")

LEASE_TTL = 600.0  # seconds a live worker keeps a host it never finishes
BUSY_RETRY = 2.0  # seconds before a worker asks again for a host another worker was crawling
CLAIM_SHARE = 500  # due sources one claim takes at most (whole hosts): the rest are left to other workers
REST_SHARE = 0.8  # after a crawl, a source rests for this share of its interval
CONNECT_TIMEOUT = 10  # seconds to wait for the server to answer
# the server closes a session whose worker's machine is gone after idle + interval × count seconds
SESSION_KEEPALIVES = {"tcp_keepalives_idle": 10, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 3}

_LIVE_SESSION = ("EXISTS (SELECT 1 FROM pg_stat_activity a "
                 "WHERE a.pid = host_leases.session AND a.backend_start = host_leases.session_start)")


def host_of(url: str) -> str:
    """The host a source's URL names: the key its lease and the per-host limits share."""
    return (urlsplit(url).hostname or "").rstrip(".").lower()


class Claim(NamedTuple):
    granted: list[str]  # the sources this worker crawls now
    waiting: list[str]  # sources whose host another worker crawls now: ask again in BUSY_RETRY


class SourceLeases(Protocol):
    def claim(self, hosts: Mapping[str, str]) -> Claim:
        """Of the sources `hosts` names (source -> its host), those this worker may crawl now,
        and those whose host is another worker's now; the rest are resting (another worker
        crawled them lately)."""

    def finish(self, rests: dict[str, float]) -> None:
        """The crawl of these sources is over: each rests for its seconds, then is free."""

    def close(self) -> None: ...


class SingleWorkerLeases:
    """One worker on the database: it gets every source."""

    def claim(self, hosts: Mapping[str, str]) -> Claim:
        return Claim(sorted(hosts), [])

    def finish(self, rests: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class PostgresLeases:
    """Leases kept in PostgreSQL's `host_leases` and `source_leases` tables, shared by every worker."""

    def __init__(self, url: str, *, holder: str | None = None, ttl: float = LEASE_TTL,
                 share: int = CLAIM_SHARE) -> None:
        self.url = url
        self.holder = holder or worker_name()
        self.ttl = ttl
        self.share = share
        self.conn: Any = None
        self.session: tuple[int, Any] | None = None  # (backend pid, backend start) of `conn`
        self.crawling: dict[str, set[str]] = {}  # host -> its sources this worker crawls now
        self.host: dict[str, str] = {}  # source -> its host, for the sources being crawled
        self._connection()

    def _connection(self) -> Any:
        """The connection, made again (and the hosts being crawled taken back) after it broke."""
        import psycopg

        if self.conn is not None and not self.conn.broken and not self.conn.closed:
            return self.conn
        lost = self.session
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                   application_name="newswatch worker leases")
            for name, value in SESSION_KEEPALIVES.items():
                conn.execute(f"SET {name} = {value}")
            self.session = conn.execute("SELECT pid, backend_start FROM pg_stat_activity "
                                        "WHERE pid = pg_backend_pid()").fetchone()
        except psycopg.Error as exc:
            raise DatabaseUnreachable(f"source leases: PostgreSQL does not answer: {exc}".strip()) from None
        self.conn = conn
        if lost is not None and self.crawling:  # unless another worker took them meanwhile
            self._run("UPDATE host_leases SET session = %s, session_start = %s "
                      "WHERE host = ANY(%s) AND session = %s AND session_start = %s",
                      (*self.session, list(self.crawling), *lost))
        return conn

    def _run(self, sql: str, params: tuple = ()) -> list[tuple]:
        import psycopg

        conn = self._connection()
        try:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
        except psycopg.Error as exc:
            kind = DatabaseUnreachable if conn.broken else StorageError
            raise kind(f"source leases: {exc}".strip()) from None

    def claim(self, hosts: Mapping[str, str]) -> Claim:
        if not hosts:
            return Claim([], [])
        import psycopg

        sources, wanted_hosts = sorted(hosts), sorted(set(hosts.values()))
        conn = self._connection()
        try:
            with conn.transaction():
                free = self._within_share(self._free_hosts(wanted_hosts), hosts)
                candidates = [s for s in sources if hosts[s] in free]
                granted = self._rested(candidates)
                taken = sorted({hosts[s] for s in granted})
                if taken:
                    self._run("UPDATE host_leases SET holder = %s, session = %s, session_start = %s, "
                              "until = now() + make_interval(secs => %s) WHERE host = ANY(%s)",
                              (self.holder, *self.session, self.ttl, taken))
        except psycopg.Error as exc:
            raise (DatabaseUnreachable if conn.broken else StorageError)(f"source leases: {exc}".strip()) from None
        for source in granted:
            self.crawling.setdefault(hosts[source], set()).add(source)
            self.host[source] = hosts[source]
        return Claim(granted, [s for s in sources if hosts[s] not in free])  # busy, or beyond the share

    def _within_share(self, free: set[str], hosts: Mapping[str, str]) -> set[str]:
        """Of the `free` hosts, as many (in order) as carry `share` due sources: the rest stay
        free for the other workers, and wait here for this worker's next claim."""
        due: dict[str, int] = {}
        for host in hosts.values():
            due[host] = due.get(host, 0) + 1
        chosen, count = set(), 0
        for host in sorted(free):
            if count >= self.share:
                break
            chosen.add(host)
            count += due.get(host, 0)
        return chosen

    def _free_hosts(self, hosts: list[str]) -> set[str]:
        """Of `hosts`, those nobody else crawls now (locked until the claim's transaction ends)."""
        self._run("INSERT INTO host_leases (host) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING", (hosts,))
        rows = self._run(
            f"SELECT host FROM host_leases WHERE host = ANY(%s) AND ((session = %s AND session_start = %s) "
            f"OR until <= now() OR NOT {_LIVE_SESSION}) ORDER BY host FOR UPDATE SKIP LOCKED",
            (hosts, *self.session))
        return {r[0] for r in rows}

    def _rested(self, sources: list[str]) -> list[str]:
        """Of `sources`, those whose rest after their last crawl is over."""
        if not sources:
            return []
        self._run("INSERT INTO source_leases (source) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING", (sources,))
        rows = self._run("SELECT source FROM source_leases WHERE source = ANY(%s) AND until <= now() "
                         "ORDER BY source FOR UPDATE SKIP LOCKED", (sources,))
        return [r[0] for r in rows]

    def finish(self, rests: dict[str, float]) -> None:
        idle = []
        for source in rests:
            host = self.host.pop(source, None)
            crawling = self.crawling.get(host, set()) if host is not None else set()
            crawling.discard(source)
            if host is not None and not crawling:
                self.crawling.pop(host, None)
                idle.append(host)
        sources, seconds = list(rests), [rests[s] for s in rests]
        self._run("UPDATE source_leases SET holder = %s, until = now() + make_interval(secs => r.seconds) "
                  "FROM unnest(%s::text[], %s::float8[]) AS r(source, seconds) WHERE source_leases.source = r.source",
                  (self.holder, sources, seconds))
        if idle and self.session is not None:
            self._run("UPDATE host_leases SET session = 0, until = '-infinity' "
                      "WHERE host = ANY(%s) AND session = %s AND session_start = %s", (idle, *self.session))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
