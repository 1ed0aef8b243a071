"""The database heartbeat and what /healthz makes of it and of the outbox's backlog."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime

from newswatch.heartbeat import Heartbeat
from newswatch.alerts.deliver.outbox import Outbox
from newswatch.crawler.clock import ManualClock
from newswatch.crawler.store import StoryStore, open_database

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_heartbeat_is_read_back_and_goes_stale(tmp_path) -> None:
    clock = ManualClock(T0)
    heartbeat = Heartbeat(StoryStore(open_database(tmp_path / "db.sqlite")), clock, every=5, stale_after=30)
    assert heartbeat.check()["problem"] == "no database write yet"
    assert heartbeat.beat()
    clock.advance(30)
    assert heartbeat.check() == {"last_write": "2026-03-01T12:00:00+00:00", "last_write_seconds_ago": 30.0}
    clock.advance(1)
    assert "no database write for 31s" in heartbeat.check()["problem"]


def test_refused_writes_are_reported_with_their_reason_and_logged_once(tmp_path, caplog) -> None:
    path = tmp_path / "db.sqlite"
    clock = ManualClock(T0)
    Heartbeat(StoryStore(open_database(path)), clock).beat()
    read_only = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    heartbeat = Heartbeat(StoryStore(read_only), clock)
    with caplog.at_level(logging.INFO, logger="newswatch.database"):
        for _ in range(5):
            clock.advance(5)
            assert not heartbeat.beat()
    check = heartbeat.check()
    assert check["problem"] == ("database writes fail since 2026-03-01T12:00:05+00:00: "
                                "OperationalError: attempt to write a readonly database")
    assert check["last_write"] == "2026-03-01T12:00:00+00:00"
    assert len(caplog.records) == 1, [r.getMessage() for r in caplog.records]


def test_outbox_backlog_counts_chats_whose_next_alert_is_overdue(tmp_path) -> None:
    outbox = Outbox(open_database(tmp_path / "db.sqlite"))
    assert outbox.backlog(T0) == (0, None, 0)
    outbox.enqueue(1, "a", [("summit", 8.0)], [], T0)
    outbox.enqueue(1, "b", [("summit", 8.0)], [], T0.replace(minute=1))
    outbox.enqueue(2, "c", [("summit", 8.0)], [], T0.replace(minute=5))
    assert outbox.backlog(T0.replace(minute=3)) == (3, T0, 1)  # chat 1's head waits since 12:00
    assert outbox.backlog(T0.replace(minute=6)) == (3, T0, 2)
