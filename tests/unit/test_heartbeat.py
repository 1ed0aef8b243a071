"""The database heartbeat and what /healthz makes of it and of the outbox's backlog."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from newswatch.heartbeat import Heartbeat
from newswatch.alerts.deliver.outbox import Outbox
from newswatch.crawler.clock import ManualClock
from newswatch.storage import open_storage

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_heartbeat_is_read_back_and_goes_stale(tmp_path) -> None:
    clock = ManualClock(T0)
    heartbeat = Heartbeat(open_storage(tmp_path / "db.sqlite").stories, clock, every=5, stale_after=30)
    assert heartbeat.check()["problem"] == "no database write yet"
    assert heartbeat.beat()
    clock.advance(30)
    assert heartbeat.check() == {"last_write": "2026-03-01T12:00:00+00:00", "last_write_seconds_ago": 30.0}
    clock.advance(1)
    assert "no database write for 31s" in heartbeat.check()["problem"]


def test_refused_writes_are_reported_with_their_reason_and_logged_once(tmp_path, caplog) -> None:
    path = tmp_path / "db.sqlite"
    clock = ManualClock(T0)
    Heartbeat(open_storage(path).stories, clock).beat()
    heartbeat = Heartbeat(open_storage(path, read_only=True).stories, clock)
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
    outbox = Outbox(open_storage(tmp_path / "db.sqlite").alerts)
    assert outbox.backlog(T0) == (0, None, 0)
    outbox.enqueue(1, "a", [("summit", 8.0)], [], T0)
    outbox.enqueue(1, "b", [("summit", 8.0)], [], T0.replace(minute=1))
    outbox.enqueue(2, "c", [("summit", 8.0)], [], T0.replace(minute=5))
    assert outbox.backlog(T0.replace(minute=3)) == (3, T0, 1)  # chat 1's head waits since 12:00
    assert outbox.backlog(T0.replace(minute=6)) == (3, T0, 2)
