"""The database heartbeat: the daemon writes the time into the `meta` table every few seconds.

A successful write proves that the database takes writes; a read-only file, a full disk or a
lock held by another process makes it fail. /healthz reports the last successful write (read
back from the database) and, while writes fail, since when and why, and fails when they fail
or when the heartbeat is older than `STALE_AFTER`. A failure is logged once when it starts
and once when writes work again.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from newswatch.crawler.clock import Clock
from newswatch.crawler.store import DatabaseUnreachable, StorageError, StoryStore

log = logging.getLogger("newswatch.database")

EVERY = 5.0  # seconds between two heartbeats
STALE_AFTER = 30.0  # seconds without a successful write before /healthz fails


class Heartbeat:
    def __init__(self, store: StoryStore, clock: Clock, *, every: float = EVERY,
                 stale_after: float = STALE_AFTER) -> None:
        self.store = store
        self.clock = clock
        self.every = every
        self.stale_after = stale_after
        self.failing_since: datetime | None = None
        self.unreachable = False  # the failure is a server that does not answer (not a refused write)
        self.error = ""

    def beat(self) -> bool:
        """Write the heartbeat; False (and the reason kept) when the database refuses it."""
        now = self.clock.now()
        try:
            self.store.beat(now)
        except StorageError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            if self.failing_since is None:
                self.failing_since = now
                self.unreachable = isinstance(exc, DatabaseUnreachable)
                if self.unreachable:
                    log.error("the database does not answer (%s); the work waits for it and resumes when it "
                              "answers, nothing is lost (/healthz reports it)", exc)
                else:
                    log.error("the database refuses writes (%s); stories and alerts wait until it takes them "
                              "again (/healthz reports it)", self.error)
            return False
        if self.failing_since is not None:
            seconds = (now - self.failing_since).total_seconds()
            if self.unreachable:
                log.warning("the database answers again, after %.0fs; the work resumes", seconds)
            else:
                log.warning("the database takes writes again, after %.0fs", seconds)
        self.failing_since, self.error = None, ""
        return True

    async def run(self) -> None:
        """Beat every `every` seconds until cancelled."""
        while True:
            self.beat()
            await asyncio.sleep(self.every)

    def check(self) -> dict[str, Any]:
        """The heartbeat part of /healthz's database check ("problem" when it fails).
        Raises `StorageError` when the database cannot even be read."""
        now = self.clock.now()
        last = self.store.last_beat()
        age = (now - last).total_seconds() if last else None
        out: dict[str, Any] = {"last_write": last.isoformat(timespec="seconds") if last else None,
                               "last_write_seconds_ago": round(age, 1) if age is not None else None}
        if self.failing_since is not None:
            out["problem"] = (f"database writes fail since {self.failing_since.isoformat(timespec='seconds')}: "
                              f"{self.error}")
        elif age is None or age > self.stale_after:
            out["problem"] = (f"no database write for {age:.0f}s (the heartbeat is written every {self.every:g}s)"
                              if age is not None else "no database write yet")
        return out
