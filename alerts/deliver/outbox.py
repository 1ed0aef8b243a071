"""The durable outbox: one row per (chat, story) alert or per (chat, notice), from decision to delivery.

A row is written in the same transaction that records a story's matches, so a crash can
neither lose an alert nor create it twice (`UNIQUE(chat_id, story_id)`). The notifier takes
the oldest pending row of each chat (per-chat order), and marks it `sent`, or reschedules it
(`not_before`) after a 429 or a network error, or ends it as `dropped`/`failed` when the chat
is gone, or Telegram refuses the message for good, or it cannot be formatted. `backlog()`
tells /healthz what waits, and which chats' next alerts are overdue (stuck).

Admin notices (a source disabled after failures) and broadcasts take the same path: a row of
kind `notice` whose text is kept once in `notices` (the row's `story_id` is `notice:<id>`, so
`UNIQUE(chat_id, story_id)` still means "once per chat"). A chat has two queues, each in
order: its alerts, and its notices, so a notice is not held behind alerts waiting for quiet
hours or a digest. A broadcast names the chat to report to; once every copy has an outcome,
`finished_broadcasts()` lists it and `queue_notice(..., reports=...)` queues the report once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from newswatch.crawler.store import add_missing_columns, db_time, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS matches (
    story_id    TEXT NOT NULL,
    topic       TEXT NOT NULL,
    score       REAL NOT NULL,
    terms       TEXT NOT NULL,
    matched_at  TEXT NOT NULL,
    PRIMARY KEY (story_id, topic)
);
CREATE INDEX IF NOT EXISTS matches_topic_time ON matches(topic, matched_at);
CREATE TABLE IF NOT EXISTS outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id     INTEGER NOT NULL,
    story_id    TEXT NOT NULL,
    topics      TEXT NOT NULL,
    terms       TEXT NOT NULL,
    created     TEXT NOT NULL,
    not_before  TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    state       TEXT NOT NULL DEFAULT 'pending',
    sent_at     TEXT,
    message_id  INTEGER,
    last_error  TEXT NOT NULL DEFAULT '',
    kind        TEXT NOT NULL DEFAULT 'alert',
    notice_id   INTEGER,
    UNIQUE (chat_id, story_id)
);
CREATE TABLE IF NOT EXISTS notices (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    text        TEXT NOT NULL,
    created     TEXT NOT NULL,
    report_to   INTEGER,
    reported    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS notices_unreported ON notices(id) WHERE report_to IS NOT NULL AND reported = 0;
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(state, chat_id, id);
CREATE INDEX IF NOT EXISTS outbox_story ON outbox(story_id);
"""
# after the columns a database of an earlier release lacks are added
_INDEXES = """
CREATE INDEX IF NOT EXISTS outbox_notice ON outbox(notice_id) WHERE notice_id IS NOT NULL;
"""
# the oldest pending row of each chat's queue (alerts, notices)
_HEADS = ("SELECT chat_id, kind, MIN(id) AS id FROM outbox WHERE state = 'pending' GROUP BY chat_id, kind")

PENDING, SENT, DROPPED, FAILED, MUTED = "pending", "sent", "dropped", "failed", "muted"
ALERT, NOTICE = "alert", "notice"


@dataclass(frozen=True)
class OutboxItem:
    id: int
    chat_id: int
    story_id: str
    topics: tuple[tuple[str, float], ...]
    terms: tuple[str, ...]
    attempts: int
    not_before: datetime
    created: datetime
    kind: str = ALERT
    notice_id: int | None = None


@dataclass(frozen=True)
class BroadcastOutcome:
    """A broadcast whose every copy has an outcome: what to tell the chat that sent it."""
    notice_id: int
    report_to: int
    counts: dict[str, int]  # state -> copies
    problems: tuple[str, ...]  # "<chat>: <why>" for the copies not sent


class Outbox:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        conn.executescript(_SCHEMA)
        # a database of an earlier release holds alerts only
        add_missing_columns(conn, "outbox", {"kind": "TEXT NOT NULL DEFAULT 'alert'", "notice_id": "INTEGER"})
        conn.executescript(_INDEXES)

    # -- writing decisions (called inside the dispatcher's transaction) -----------------------
    def record_match(self, story_id: str, topic: str, score: float, terms: Iterable[str], at: datetime) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO matches (story_id, topic, score, terms, matched_at) VALUES (?,?,?,?,?)",
            (story_id, topic, score, json.dumps(list(terms), ensure_ascii=False), db_time(at)),
        )

    def enqueue(self, chat_id: int, story_id: str, topics: Iterable[tuple[str, float]],
                terms: Iterable[str], at: datetime) -> bool:
        """Queue an alert; False when this chat already has (or had) this story."""
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO outbox (chat_id, story_id, topics, terms, created, not_before)"
            " VALUES (?,?,?,?,?,?)",
            (chat_id, story_id, json.dumps([[t, round(s, 2)] for t, s in topics]),
             json.dumps(list(terms), ensure_ascii=False), db_time(at), db_time(at)),
        )
        return bool(cur.rowcount)

    def queue_notice(self, chat_ids: Iterable[int], text: str, at: datetime, *, report_to: int | None = None,
                     reports: int | None = None) -> int:
        """Queue `text` once for each chat; return how many were queued. `report_to` (a broadcast)
        names the chat told when every copy has an outcome; `reports` is the broadcast this notice
        reports on: it is queued only if that report was not queued before."""
        with transaction(self.conn) as conn:
            if reports is not None and not conn.execute(
                    "UPDATE notices SET reported = 1 WHERE id = ? AND reported = 0", (reports,)).rowcount:
                return 0
            notice_id = conn.execute("INSERT INTO notices (text, created, report_to) VALUES (?,?,?)",
                                     (text, db_time(at), report_to)).lastrowid
            queued = 0
            for chat_id in dict.fromkeys(chat_ids):
                queued += conn.execute(
                    "INSERT OR IGNORE INTO outbox (chat_id, story_id, topics, terms, created, not_before, kind,"
                    " notice_id) VALUES (?,?,'[]','[]',?,?,?,?)",
                    (chat_id, f"notice:{notice_id}", db_time(at), db_time(at), NOTICE, notice_id),
                ).rowcount
        return queued

    def notice_text(self, notice_id: int | None) -> str | None:
        row = self.conn.execute("SELECT text FROM notices WHERE id = ?", (notice_id,)).fetchone()
        return row[0] if row else None

    def finished_broadcasts(self) -> list[BroadcastOutcome]:
        """Broadcasts not reported yet whose every copy has an outcome (sent, dropped, failed)."""
        outcomes = []
        for notice_id, report_to in self.conn.execute(
                "SELECT id, report_to FROM notices n WHERE report_to IS NOT NULL AND reported = 0 AND NOT EXISTS"
                " (SELECT 1 FROM outbox o WHERE o.notice_id = n.id AND o.state = 'pending')").fetchall():
            rows = self.conn.execute("SELECT chat_id, state, last_error FROM outbox WHERE notice_id = ? ORDER BY id",
                                     (notice_id,)).fetchall()
            counts: dict[str, int] = {}
            for row in rows:
                counts[row["state"]] = counts.get(row["state"], 0) + 1
            problems = tuple(f"{r['chat_id']}: {r['last_error'] or r['state']}" for r in rows if r["state"] != SENT)
            outcomes.append(BroadcastOutcome(notice_id, report_to, counts, problems))
        return outcomes

    def get(self, item_id: int) -> OutboxItem | None:
        row = self.conn.execute("SELECT * FROM outbox WHERE id = ?", (item_id,)).fetchone()
        return _item(row) if row else None

    # -- delivering -----------------------------------------------------------------------------
    def due_heads(self, now: datetime, limit: int = 200) -> list[OutboxItem]:
        """The oldest pending item of each chat's queues (alerts, notices), for those due now."""
        rows = self.conn.execute(
            f"SELECT o.* FROM outbox o JOIN ({_HEADS}) h ON o.id = h.id"
            " WHERE o.not_before <= ? ORDER BY o.id LIMIT ?",
            (db_time(now), limit),
        ).fetchall()
        return [_item(r) for r in rows]

    def head(self, chat_id: int, now: datetime, kind: str = ALERT) -> OutboxItem | None:
        """The oldest pending item of the chat's queue of `kind`, if it is due now."""
        row = self.conn.execute(
            "SELECT * FROM outbox WHERE chat_id = ? AND kind = ? AND state = 'pending' ORDER BY id LIMIT 1",
            (chat_id, kind),
        ).fetchone()
        if row is None or datetime.fromisoformat(row["not_before"]) > now:
            return None
        return _item(row)

    def pending_for_chat(self, chat_id: int, created_before: datetime, limit: int = 500) -> list[OutboxItem]:
        """The chat's pending alerts (for a digest)."""
        rows = self.conn.execute(
            "SELECT * FROM outbox WHERE chat_id = ? AND state = 'pending' AND kind = 'alert' AND created <= ?"
            " ORDER BY id LIMIT ?",
            (chat_id, db_time(created_before), limit),
        ).fetchall()
        return [_item(r) for r in rows]

    def mark_many_sent(self, item_ids: list[int], message_id: int | None, at: datetime) -> None:
        with transaction(self.conn):
            for item_id in item_ids:
                self.mark_sent(item_id, message_id, at)

    def finish_many(self, item_ids: list[int], state: str, error: str) -> None:
        with transaction(self.conn):
            for item_id in item_ids:
                self.finish(item_id, state, error)

    def next_due(self) -> datetime | None:
        row = self.conn.execute(f"SELECT MIN(o.not_before) FROM outbox o JOIN ({_HEADS}) h ON o.id = h.id").fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    def mark_sent(self, item_id: int, message_id: int | None, at: datetime) -> None:
        self.conn.execute(
            "UPDATE outbox SET state = 'sent', sent_at = ?, message_id = ?, attempts = attempts + 1,"
            " last_error = '' WHERE id = ?",
            (db_time(at), message_id, item_id),
        )

    def reschedule(self, item_id: int, not_before: datetime, error: str, *, count_attempt: bool = True) -> None:
        self.conn.execute(
            "UPDATE outbox SET not_before = ?, last_error = ?, attempts = attempts + ? WHERE id = ?",
            (db_time(not_before), error[:300], 1 if count_attempt else 0, item_id),
        )

    def finish(self, item_id: int, state: str, error: str) -> None:
        self.conn.execute(
            "UPDATE outbox SET state = ?, last_error = ?, attempts = attempts + 1 WHERE id = ?",
            (state, error[:300], item_id),
        )

    def drop_chat(self, chat_id: int, reason: str) -> int:
        """End every pending item of a chat that cannot receive any more."""
        cur = self.conn.execute(
            "UPDATE outbox SET state = 'dropped', last_error = ? WHERE chat_id = ? AND state = 'pending'",
            (reason[:300], chat_id),
        )
        return cur.rowcount

    def migrate_chat(self, old_id: int, new_id: int) -> None:
        self.conn.execute(
            "UPDATE OR IGNORE outbox SET chat_id = ? WHERE chat_id = ? AND state = 'pending'", (new_id, old_id)
        )

    def counts(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state")
        return {r[0]: r[1] for r in rows}

    def backlog(self, overdue_before: datetime) -> tuple[int, datetime | None, int]:
        """(pending rows, when the oldest of them was queued, chats whose next row was due before
        `overdue_before` and is still waiting: rows that are stuck)."""
        count, oldest = self.conn.execute(
            "SELECT COUNT(*), MIN(created) FROM outbox WHERE state = 'pending'").fetchone()
        stuck = self.conn.execute(
            f"SELECT COUNT(DISTINCT o.chat_id) FROM outbox o JOIN ({_HEADS}) h ON o.id = h.id WHERE o.not_before < ?",
            (db_time(overdue_before),),
        ).fetchone()[0]
        return count, datetime.fromisoformat(oldest) if oldest else None, stuck

    def pending_count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()[0]


def _item(row: sqlite3.Row) -> OutboxItem:
    return OutboxItem(
        id=row["id"], chat_id=row["chat_id"], story_id=row["story_id"],
        topics=tuple((t, float(s)) for t, s in json.loads(row["topics"])),
        terms=tuple(json.loads(row["terms"])), attempts=row["attempts"],
        not_before=datetime.fromisoformat(row["not_before"]),
        created=datetime.fromisoformat(row["created"]),
        kind=row["kind"], notice_id=row["notice_id"],
    )
