"""Notices in the outbox: an earlier database migrated in place, a chat's queue of notices
beside its alerts (never held by mute, quiet hours or digests), the error map applied to
notices, and the report of a broadcast queued once."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, time, timedelta

import pytest

from newswatch.alerts.deliver.notifier import ChatGone, ConsoleSink, Notifier, RetryLater
from newswatch.alerts.deliver.outbox import Outbox
from newswatch.alerts.subscriptions import Subscriptions
from newswatch.crawler.clock import ManualClock
from newswatch.storage import open_storage

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

OLD_OUTBOX = """
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, chat_id INTEGER NOT NULL, story_id TEXT NOT NULL,
    topics TEXT NOT NULL, terms TEXT NOT NULL, created TEXT NOT NULL, not_before TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'pending', sent_at TEXT,
    message_id INTEGER, last_error TEXT NOT NULL DEFAULT '', UNIQUE (chat_id, story_id)
);
INSERT INTO outbox (chat_id, story_id, topics, terms, created, not_before)
VALUES (7, 'story-1', '[]', '[]', '2026-03-01T00:00:00+00:00', '2026-03-01T00:00:00+00:00');
"""


class Telegram:
    """A sink that records what it is asked to send, and fails chats as told."""

    available = True

    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []
        self.errors: dict[int, list[Exception]] = {}

    def _take(self, chat_id: int, text: str) -> int:
        if self.errors.get(chat_id):
            raise self.errors[chat_id].pop(0)
        self.sent.append((chat_id, text))
        return len(self.sent)

    async def send(self, chat_id, thread_id, view, tz) -> int:
        return self._take(chat_id, f"alert: {view.title}")

    async def send_digest(self, chat_id, thread_id, views, tz, title) -> int:
        return self._take(chat_id, f"digest: {title}")

    async def send_notice(self, chat_id, thread_id, text) -> int:
        return self._take(chat_id, text)


@pytest.fixture
def parts(database):
    db = open_storage(database)
    clock = ManualClock(NOW)
    outbox, subscriptions, sink = Outbox(db.alerts), Subscriptions(db.alerts), Telegram()
    notifier = Notifier(outbox, db.stories, subscriptions, clock, sink, ConsoleSink())
    return outbox, subscriptions, sink, notifier, clock


def _deliver(notifier: Notifier):
    return asyncio.run(notifier.deliver_due())


def test_an_earlier_database_is_migrated_in_place(tmp_path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(OLD_OUTBOX)
    old.close()
    db = open_storage(path)
    outbox = Outbox(db.alerts)
    [item] = outbox.due_heads(NOW)
    assert (item.kind, item.notice_id, item.story_id) == ("alert", None, "story-1")
    assert not outbox.enqueue(7, "story-1", [], [], NOW), "an alert is still queued once per chat"
    assert outbox.queue_notice([7, 8, 7], "hello", NOW) == 2
    assert sorted((i.chat_id, i.kind) for i in outbox.due_heads(NOW)) == [(7, "alert"), (7, "notice"), (8, "notice")]
    again = open_storage(path)  # opening it again changes nothing
    assert again.versions() == db.versions()
    assert sorted((i.chat_id, i.kind) for i in Outbox(again.alerts).due_heads(NOW)) == [(7, "alert"), (7, "notice"), (8, "notice")]


@pytest.mark.parametrize("setting", ["muted", "quiet", "digest"])
def test_a_notice_is_not_held_behind_alerts(parts, setting) -> None:
    outbox, subscriptions, sink, notifier, clock = parts
    subscriptions.start(7, ["summit"])
    if setting == "muted":
        subscriptions.set_muted_until(7, NOW + timedelta(hours=1))
    elif setting == "quiet":
        subscriptions.set_quiet(7, (time(11, 0), time(13, 0)))
    else:
        subscriptions.set_digest(7, "daily", time(18, 0))
    outbox.enqueue(7, "story-1", [("summit", 7.0)], ["summit"], NOW)
    outbox.queue_notice([7], "Source wire was disabled <after> 3 failures", NOW)
    _deliver(notifier)
    assert sink.sent == [(7, "Source wire was disabled <after> 3 failures")]
    states = dict(outbox.store.conn.execute("SELECT kind, state FROM outbox").fetchall())
    assert states == {"alert": "muted" if setting == "muted" else "pending", "notice": "sent"}


def test_notices_keep_their_order_through_a_retry(parts) -> None:
    outbox, subscriptions, sink, notifier, clock = parts
    sink.errors[7] = [RetryLater(5, "Telegram flood control: retry after 5", count_attempt=False, flood=True)]
    outbox.queue_notice([7], "first", NOW)
    outbox.queue_notice([7], "second", NOW)
    _deliver(notifier)
    assert sink.sent == []
    clock.advance(5)
    _deliver(notifier)
    assert sink.sent == [(7, "first"), (7, "second")]


def test_a_notice_goes_to_a_chat_never_started_not_to_a_stopped_one(parts) -> None:
    outbox, subscriptions, sink, notifier, clock = parts
    subscriptions.start(8, ["summit"])
    subscriptions.stop(8)
    outbox.queue_notice([7, 8], "notice", NOW)
    summary = _deliver(notifier)
    assert sink.sent == [(7, "notice")]
    assert (summary.sent, summary.dropped) == (1, 1)


def test_a_broadcast_is_reported_once_every_copy_has_an_outcome(parts) -> None:
    outbox, subscriptions, sink, notifier, clock = parts
    for chat in (7, 8, 9):
        subscriptions.start(chat, ["summit"])
    sink.errors[8] = [ChatGone("Telegram: Forbidden: bot was blocked by the user")]
    sink.errors[9] = [RetryLater(30, "Telegram unreachable")]
    assert outbox.queue_notice([7, 8, 9], "Maintenance at 22:00", NOW, report_to=7) == 3
    _deliver(notifier)
    assert sink.sent == [(7, "Maintenance at 22:00")]  # 9 waits: no report yet
    assert not subscriptions.chat(8).active
    clock.advance(30)
    _deliver(notifier)
    _deliver(notifier)
    assert sink.sent[1:] == [(9, "Maintenance at 22:00"), (7, "Broadcast delivered to 2 of 3 chats. 1 failed: "
                                                              "8: Telegram: Forbidden: bot was blocked by the user")]
    assert outbox.finished_broadcasts() == []


def test_a_message_sent_while_the_database_refused_its_record_is_not_sent_again(parts, monkeypatch) -> None:
    """The send worked but the outbox could not mark it sent (the database went away): the
    record is made once the database takes it, before anything else is sent, and never a second
    message."""
    from newswatch.crawler.store import DatabaseUnreachable

    outbox, subscriptions, sink, notifier, clock = parts
    outbox.queue_notice([7], "first", NOW)
    outbox.queue_notice([7], "second", NOW)
    record = outbox.mark_many_sent

    def unreachable(*args, **kwargs):
        raise DatabaseUnreachable("PostgreSQL at 127.0.0.1:5432/test: the connection was lost")

    monkeypatch.setattr(outbox, "mark_many_sent", unreachable)
    with pytest.raises(DatabaseUnreachable):
        _deliver(notifier)
    assert sink.sent == [(7, "first")]
    with pytest.raises(DatabaseUnreachable):  # still away: nothing else is sent
        _deliver(notifier)
    assert sink.sent == [(7, "first")]
    monkeypatch.setattr(outbox, "mark_many_sent", record)
    _deliver(notifier)
    assert sink.sent == [(7, "first"), (7, "second")]
    states = [r[0] for r in outbox.store.conn.execute("SELECT state FROM outbox ORDER BY id").fetchall()]
    assert states == ["sent", "sent"]
