"""The outbox's batched writes and reads, on SQLite and PostgreSQL: a message of more rows
than one statement takes is marked whole, the queue heads come from the pending rows only,
and a batch of matches is recorded at once."""

from __future__ import annotations

from datetime import UTC, datetime

from newswatch.alerts.deliver.outbox import Outbox

from newswatch.storage import open_storage

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_many_rows_are_marked_sent_and_finished_whole(database) -> None:
    storage = open_storage(database)
    outbox = Outbox(storage.alerts)
    with storage.stories.transaction():
        for n in range(1203):
            outbox.enqueue(7, f"s{n}", [("summit", 9.0)], ["summit"], NOW)
    ids = sorted(item.id for item in storage.alerts.pending_for_chat(7, NOW, limit=2000))
    outbox.mark_many_sent(ids[:1100], 42, NOW)
    outbox.finish_many(ids[1100:1202], "failed", "gone")
    assert storage.alerts.outbox_counts() == {"sent": 1100, "failed": 102, "pending": 1}
    [head] = outbox.due_heads(NOW)
    assert head.id == ids[-1] and outbox.head(7, NOW).id == ids[-1]
    assert tuple(storage.alerts.conn.execute("SELECT state, attempts, message_id FROM outbox WHERE id = ?",
                                             (ids[0],)).fetchone()) == ("sent", 1, 42)
    storage.close()


def test_the_heads_are_each_queue_s_oldest_pending_row(database) -> None:
    storage = open_storage(database)
    outbox = Outbox(storage.alerts)
    for chat in (5, 6):
        for n in range(3):
            outbox.enqueue(chat, f"s{chat}-{n}", [("summit", 9.0)], [], NOW)
    first_of_5 = outbox.head(5, NOW)
    outbox.mark_sent(first_of_5.id, 1, NOW)
    heads = {(h.chat_id, h.story_id) for h in outbox.due_heads(NOW)}
    assert heads == {(5, "s5-1"), (6, "s6-0")}
    storage.close()


def test_a_batch_of_matches_is_recorded_at_once(database) -> None:
    storage = open_storage(database)
    storage.alerts.record_matches([("a", "summit", 9.0, ["Kim"], NOW), ("b", "summit", 7.0, [], NOW)])
    storage.alerts.record_matches([("a", "summit", 9.5, ["Kim", "Xi"], NOW), ("a", "sanctions", 6.0, [], NOW)])
    storage.alerts.record_matches([])
    rows = storage.alerts.conn.execute("SELECT story_id, topic, score, terms FROM matches ORDER BY story_id, topic").fetchall()
    assert [tuple(r) for r in rows] == [("a", "sanctions", 6.0, "[]"), ("a", "summit", 9.5, '["Kim", "Xi"]'),
                                        ("b", "summit", 7.0, "[]")]
    storage.close()
