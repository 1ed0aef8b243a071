"""Every statement on the alerts' tables, their numbered migrations, and the read models built on them.

The tables: `matches` (a story passed a topic), `outbox` and `notices` (what is sent to which
chat, see `newswatch.alerts.deliver.outbox`), `chats` and `subscriptions`
(`newswatch.alerts.subscriptions`), `watches` (`newswatch.alerts.match.watches`),
`story_clusters` and `cluster_keys` (`newswatch.alerts.story_clusters`), `runtime_sources`
(`newswatch.alerts.runtime_sources`) and `votes` (`newswatch.alerts.feedback`). Those modules
keep their logic and call an `AlertsStore`; the read models that join the crawler's `stories`
(/latest, /trend, /status, `newswatch stats` and `export`, the metrics, /healthz, labels made of
votes) are here too. `MIGRATIONS` is the alerts' part of the schema, applied with the crawler's
by `newswatch.crawler.migrations` when the application opens its storage; the store itself
never makes a table. Each write that must be whole is one transaction; the dispatcher wraps a
batch of `record_matches`/`enqueue` calls in one (`StoryStore.transaction`).
The statements are written so that PostgreSQL reads them as SQLite does, through
`newswatch.crawler.postgres`; there the tables are `_PG_TABLES`, with a `rowid` column where
SQLite's is read (story_clusters, runtime_sources, votes).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, time
from typing import Any

from newswatch.alerts.deliver.outbox import ALERT, NOTICE, OutboxItem
from newswatch.alerts.match.clustering import Sketch
from newswatch.alerts.match.watches import Watch
from newswatch.alerts.subscriptions import CONSOLE_CHAT, Chat
from newswatch.crawler.store import add_columns, db_time, run_script, transaction

# -- schema -------------------------------------------------------------------------------------
_TABLES = """
CREATE TABLE IF NOT EXISTS matches (
    story_id    TEXT NOT NULL,
    topic       TEXT NOT NULL,
    score       REAL NOT NULL,
    terms       TEXT NOT NULL,
    matched_at  TEXT NOT NULL,
    PRIMARY KEY (story_id, topic)
);
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
CREATE TABLE IF NOT EXISTS chats (
    chat_id     INTEGER PRIMARY KEY,
    active      INTEGER NOT NULL DEFAULT 1,
    kind        TEXT NOT NULL DEFAULT 'private',
    title       TEXT NOT NULL DEFAULT '',
    thread_id   INTEGER,
    timezone    TEXT NOT NULL DEFAULT 'UTC',
    created     TEXT NOT NULL,
    inactive_reason TEXT NOT NULL DEFAULT '',
    muted_until TEXT,
    quiet_from  TEXT,
    quiet_to    TEXT,
    digest      TEXT NOT NULL DEFAULT 'off',
    digest_at   TEXT
);
CREATE TABLE IF NOT EXISTS subscriptions (
    chat_id    INTEGER NOT NULL REFERENCES chats(chat_id) ON UPDATE CASCADE ON DELETE CASCADE,
    topic      TEXT NOT NULL,
    threshold  REAL,
    PRIMARY KEY (chat_id, topic)
);
CREATE TABLE IF NOT EXISTS watches (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id  INTEGER NOT NULL REFERENCES chats(chat_id) ON UPDATE CASCADE ON DELETE CASCADE,
    rule     TEXT NOT NULL,
    created  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS story_clusters (
    story_id   TEXT PRIMARY KEY,
    cluster_id TEXT NOT NULL,
    source     TEXT NOT NULL,
    signature  BLOB NOT NULL,
    seen       TEXT NOT NULL,
    title      BLOB NOT NULL DEFAULT x'00000000'
);
CREATE TABLE IF NOT EXISTS cluster_keys (
    key        INTEGER NOT NULL,
    story      INTEGER NOT NULL,  -- story_clusters.rowid
    PRIMARY KEY (key, story)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runtime_sources (
    name        TEXT PRIMARY KEY,
    url         TEXT,
    interval    INTEGER,
    enabled     INTEGER NOT NULL DEFAULT 1,
    changed_by  INTEGER,
    changed_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS votes (
    chat_id   INTEGER NOT NULL,
    story_id  TEXT NOT NULL,
    user_id   INTEGER NOT NULL,
    vote      INTEGER NOT NULL CHECK (vote IN (1, -1)),
    topics    TEXT NOT NULL,
    at        TEXT NOT NULL,
    UNIQUE (chat_id, story_id, user_id)
);
"""
# after the columns a table of an earlier release lacks are added
_INDEXES = """
CREATE INDEX IF NOT EXISTS matches_topic_time ON matches(topic, matched_at);
CREATE INDEX IF NOT EXISTS notices_unreported ON notices(id) WHERE report_to IS NOT NULL AND reported = 0;
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(state, chat_id, id);
CREATE INDEX IF NOT EXISTS outbox_story ON outbox(story_id);
CREATE INDEX IF NOT EXISTS outbox_notice ON outbox(notice_id) WHERE notice_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS subscriptions_topic ON subscriptions(topic);
CREATE INDEX IF NOT EXISTS watches_chat ON watches(chat_id, id);
CREATE INDEX IF NOT EXISTS story_clusters_seen ON story_clusters(seen);
CREATE INDEX IF NOT EXISTS story_clusters_cluster ON story_clusters(cluster_id);
CREATE INDEX IF NOT EXISTS cluster_keys_story ON cluster_keys(story);
CREATE INDEX IF NOT EXISTS votes_story ON votes(story_id);
"""


_PG_TABLES = """
CREATE TABLE IF NOT EXISTS matches (
    story_id    TEXT NOT NULL,
    topic       TEXT NOT NULL,
    score       DOUBLE PRECISION NOT NULL,
    terms       TEXT NOT NULL,
    matched_at  TEXT NOT NULL,
    PRIMARY KEY (story_id, topic)
);
CREATE TABLE IF NOT EXISTS outbox (
    id          BIGSERIAL PRIMARY KEY,
    chat_id     BIGINT NOT NULL,
    story_id    TEXT NOT NULL,
    topics      TEXT NOT NULL,
    terms       TEXT NOT NULL,
    created     TEXT NOT NULL,
    not_before  TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    state       TEXT NOT NULL DEFAULT 'pending',
    sent_at     TEXT,
    message_id  BIGINT,
    last_error  TEXT NOT NULL DEFAULT '',
    kind        TEXT NOT NULL DEFAULT 'alert',
    notice_id   BIGINT,
    UNIQUE (chat_id, story_id)
);
CREATE TABLE IF NOT EXISTS notices (
    id          BIGSERIAL PRIMARY KEY,
    text        TEXT NOT NULL,
    created     TEXT NOT NULL,
    report_to   BIGINT,
    reported    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS chats (
    chat_id     BIGINT PRIMARY KEY,
    active      INTEGER NOT NULL DEFAULT 1,
    kind        TEXT NOT NULL DEFAULT 'private',
    title       TEXT NOT NULL DEFAULT '',
    thread_id   BIGINT,
    timezone    TEXT NOT NULL DEFAULT 'UTC',
    created     TEXT NOT NULL,
    inactive_reason TEXT NOT NULL DEFAULT '',
    muted_until TEXT,
    quiet_from  TEXT,
    quiet_to    TEXT,
    digest      TEXT NOT NULL DEFAULT 'off',
    digest_at   TEXT
);
CREATE TABLE IF NOT EXISTS subscriptions (
    chat_id    BIGINT NOT NULL REFERENCES chats(chat_id) ON UPDATE CASCADE ON DELETE CASCADE,
    topic      TEXT NOT NULL,
    threshold  DOUBLE PRECISION,
    PRIMARY KEY (chat_id, topic)
);
CREATE TABLE IF NOT EXISTS watches (
    id       BIGSERIAL PRIMARY KEY,
    chat_id  BIGINT NOT NULL REFERENCES chats(chat_id) ON UPDATE CASCADE ON DELETE CASCADE,
    rule     TEXT NOT NULL,
    created  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS story_clusters (
    rowid      BIGSERIAL UNIQUE,
    story_id   TEXT PRIMARY KEY,
    cluster_id TEXT NOT NULL,
    source     TEXT NOT NULL,
    signature  BYTEA NOT NULL,
    seen       TEXT NOT NULL,
    title      BYTEA NOT NULL DEFAULT '\\x00000000'::bytea
);
CREATE TABLE IF NOT EXISTS cluster_keys (
    key        BIGINT NOT NULL,
    story      BIGINT NOT NULL,  -- story_clusters.rowid
    PRIMARY KEY (key, story)
);
CREATE TABLE IF NOT EXISTS runtime_sources (
    rowid       BIGSERIAL UNIQUE,
    name        TEXT PRIMARY KEY,
    url         TEXT,
    interval    INTEGER,
    enabled     INTEGER NOT NULL DEFAULT 1,
    changed_by  BIGINT,
    changed_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS votes (
    rowid     BIGSERIAL UNIQUE,
    chat_id   BIGINT NOT NULL,
    story_id  TEXT NOT NULL,
    user_id   BIGINT NOT NULL,
    vote      INTEGER NOT NULL CHECK (vote IN (1, -1)),
    topics    TEXT NOT NULL,
    at        TEXT NOT NULL,
    UNIQUE (chat_id, story_id, user_id)
);
"""
# the tables whose SQLite rowid is read, and so a column on PostgreSQL (kept by `newswatch store copy`)
ROWID_TABLES = ("story_clusters", "runtime_sources", "votes")


def _baseline(conn: sqlite3.Connection) -> None:
    """The alerts' tables as this release has them, made, or brought up to date when an earlier
    release made them: its outbox held alerts only (no `kind`, `notice_id`), and its clusters
    kept no title sketch (`story_clusters.title`); tables it did not have yet are made."""
    run_script(conn, _TABLES)
    add_columns(conn, "outbox", {"kind": "TEXT NOT NULL DEFAULT 'alert'", "notice_id": "INTEGER"})
    add_columns(conn, "story_clusters", {"title": "BLOB NOT NULL DEFAULT x'00000000'"})
    run_script(conn, _INDEXES)


# (version, name, SQL or function): applied in order by newswatch.crawler.migrations; never edit
# one that a release has shipped, add the next; the fourth item is the PostgreSQL step
# the pending rows by queue (chat, kind) in queue order: each queue's head is its first entry, so
# the heads are read from this small index alone, not from every row the outbox ever held
_QUEUE_INDEX = "CREATE INDEX IF NOT EXISTS outbox_queues ON outbox(chat_id, kind, id) WHERE state = 'pending'"

MIGRATIONS = [
    (1, ("baseline: matches, outbox, notices, chats, subscriptions, watches, story_clusters, cluster_keys, "
         "runtime_sources, votes"), _baseline, _PG_TABLES + _INDEXES),
    (2, "outbox_queues: the pending rows of each chat's queue, for the delivery's reads", _QUEUE_INDEX, _QUEUE_INDEX),
]

# the oldest pending row of each chat's queue (alerts, notices)
_HEADS = "SELECT chat_id, kind, MIN(id) AS id FROM outbox WHERE state = 'pending' GROUP BY chat_id, kind"
_PER_CHAT_TABLES = ("watches",)  # other tables keyed by chat_id, moved along by move_chat()


class AlertsStore:
    """The alerts' tables, on a connection whose schema `MIGRATIONS` made."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def transaction(self) -> transaction:
        return transaction(self.conn)

    # -- matches and the outbox ----------------------------------------------------------------
    def record_match(self, story_id: str, topic: str, score: float, terms: Iterable[str], at: datetime) -> None:
        self.record_matches([(story_id, topic, score, terms, at)])

    def record_matches(self, matches: Iterable[tuple[str, str, float, Iterable[str], datetime]]) -> None:
        """(story, topic, score, terms, when) of each match, in one `executemany` (a batch of the
        dispatcher's is one round trip to PostgreSQL, not one per match)."""
        self.conn.executemany(
            "INSERT INTO matches (story_id, topic, score, terms, matched_at) VALUES (?,?,?,?,?)"
            " ON CONFLICT (story_id, topic) DO UPDATE SET score = excluded.score, terms = excluded.terms,"
            " matched_at = excluded.matched_at",
            [(story_id, topic, score, json.dumps(list(terms), ensure_ascii=False), db_time(at))
             for story_id, topic, score, terms, at in matches],
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
        """Keep `text` once and queue it for each chat; return how many rows were queued (0, and
        nothing kept, when `reports` names a broadcast already reported)."""
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

    def finished_broadcasts(self) -> list[tuple[int, int, list[tuple[int, str, str]]]]:
        """(notice id, chat to report to, [(chat, state, last error)] of its copies) of each
        broadcast not reported yet whose every copy has an outcome."""
        finished = []
        for notice_id, report_to in self.conn.execute(
                "SELECT id, report_to FROM notices n WHERE report_to IS NOT NULL AND reported = 0 AND NOT EXISTS"
                " (SELECT 1 FROM outbox o WHERE o.notice_id = n.id AND o.state = 'pending')").fetchall():
            copies = self.conn.execute("SELECT chat_id, state, last_error FROM outbox WHERE notice_id = ? ORDER BY id",
                                       (notice_id,)).fetchall()
            finished.append((notice_id, report_to, [tuple(row) for row in copies]))
        return finished

    def outbox_item(self, item_id: int) -> OutboxItem | None:
        row = self.conn.execute("SELECT * FROM outbox WHERE id = ?", (item_id,)).fetchone()
        return _item(row) if row else None

    def due_heads(self, now: datetime, limit: int = 200) -> list[OutboxItem]:
        """The oldest pending item of each chat's queues (alerts, notices), for those due now."""
        rows = self.conn.execute(
            f"SELECT o.* FROM outbox o JOIN ({_HEADS}) h ON o.id = h.id"
            " WHERE o.state = 'pending' AND o.not_before <= ? ORDER BY o.id LIMIT ?",
            (db_time(now), limit),
        ).fetchall()
        return [_item(r) for r in rows]

    def queue_head(self, chat_id: int, kind: str = ALERT) -> OutboxItem | None:
        """The oldest pending item of the chat's queue of `kind`, due or not."""
        row = self.conn.execute(
            "SELECT * FROM outbox WHERE chat_id = ? AND kind = ? AND state = 'pending' ORDER BY id LIMIT 1",
            (chat_id, kind),
        ).fetchone()
        return _item(row) if row else None

    def pending_for_chat(self, chat_id: int, created_before: datetime, limit: int = 500) -> list[OutboxItem]:
        """The chat's pending alerts (for a digest)."""
        rows = self.conn.execute(
            "SELECT * FROM outbox WHERE chat_id = ? AND state = 'pending' AND kind = 'alert' AND created <= ?"
            " ORDER BY id LIMIT ?",
            (chat_id, db_time(created_before), limit),
        ).fetchall()
        return [_item(r) for r in rows]

    def next_due(self) -> datetime | None:
        row = self.conn.execute(f"SELECT MIN(o.not_before) FROM outbox o JOIN ({_HEADS}) h ON o.id = h.id").fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    def mark_sent(self, item_id: int, message_id: int | None, at: datetime) -> None:
        self.mark_many_sent([item_id], message_id, at)

    def mark_many_sent(self, item_ids: list[int], message_id: int | None, at: datetime) -> None:
        """The rows `item_ids` (one message: an alert, a digest, a notice) sent, all or none."""
        with _whole(self.conn, item_ids) as chunks:
            for chunk in chunks:
                self.conn.execute(
                    "UPDATE outbox SET state = 'sent', sent_at = ?, message_id = ?, attempts = attempts + 1,"
                    f" last_error = '' WHERE id IN ({_marks(chunk)})",
                    (db_time(at), message_id, *chunk),
                )

    def reschedule(self, item_id: int, not_before: datetime, error: str, *, count_attempt: bool = True) -> None:
        self.conn.execute(
            "UPDATE outbox SET not_before = ?, last_error = ?, attempts = attempts + ? WHERE id = ?",
            (db_time(not_before), error[:300], 1 if count_attempt else 0, item_id),
        )

    def finish(self, item_id: int, state: str, error: str) -> None:
        self.finish_many([item_id], state, error)

    def finish_many(self, item_ids: list[int], state: str, error: str) -> None:
        """The rows `item_ids` ended in `state`, all or none."""
        with _whole(self.conn, item_ids) as chunks:
            for chunk in chunks:
                self.conn.execute(
                    f"UPDATE outbox SET state = ?, last_error = ?, attempts = attempts + 1 WHERE id IN ({_marks(chunk)})",
                    (state, error[:300], *chunk),
                )

    def drop_chat_items(self, chat_id: int, reason: str) -> int:
        """End every pending item of a chat that cannot receive any more."""
        cur = self.conn.execute(
            "UPDATE outbox SET state = 'dropped', last_error = ? WHERE chat_id = ? AND state = 'pending'",
            (reason[:300], chat_id),
        )
        return cur.rowcount

    def move_chat_items(self, old_id: int, new_id: int) -> None:
        """Move the chat's pending items, each unless the new chat has (or had) that story."""
        self.conn.execute(
            "UPDATE outbox SET chat_id = ? WHERE chat_id = ? AND state = 'pending'"
            " AND story_id NOT IN (SELECT story_id FROM outbox WHERE chat_id = ?)", (new_id, old_id, new_id)
        )

    def outbox_counts(self) -> dict[str, int]:
        """state -> outbox rows."""
        rows = self.conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state")
        return {r[0]: r[1] for r in rows}

    def pending(self) -> tuple[int, datetime | None]:
        """(pending rows, when the oldest of them was queued)."""
        count, oldest = self.conn.execute(
            "SELECT COUNT(*), MIN(created) FROM outbox WHERE state = 'pending'").fetchone()
        return count, datetime.fromisoformat(oldest) if oldest else None

    def stuck_chats(self, overdue_before: datetime) -> int:
        """Chats whose next row was due before `overdue_before` and is still waiting."""
        return self.conn.execute(
            f"SELECT COUNT(DISTINCT o.chat_id) FROM outbox o JOIN ({_HEADS}) h ON o.id = h.id WHERE o.not_before < ?",
            (db_time(overdue_before),),
        ).fetchone()[0]

    def pending_count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()[0]

    def pending_due(self, now: datetime) -> tuple[int, int]:
        """(pending rows due now, pending rows waiting for a later time)."""
        due, waiting = self.conn.execute(
            "SELECT COALESCE(SUM(CASE WHEN not_before <= ? THEN 1 ELSE 0 END), 0),"
            " COALESCE(SUM(CASE WHEN not_before > ? THEN 1 ELSE 0 END), 0)"
            " FROM outbox WHERE state = 'pending'", (db_time(now),) * 2,
        ).fetchone()
        return due, waiting

    def delivery_problems(self, limit: int = 5) -> list[dict[str, Any]]:
        """The latest rows that failed, were dropped, or wait after an error, newest first."""
        rows = self.conn.execute(
            "SELECT chat_id, state, last_error, created FROM outbox WHERE state IN ('failed', 'dropped')"
            " OR (state = 'pending' AND last_error != '') ORDER BY id DESC LIMIT ?", (limit,))
        return [{"chat": r[0], "state": r[1], "error": r[2], "created": r[3]} for r in rows]

    # -- chats and subscriptions -----------------------------------------------------------------
    def start_chat(self, chat_id: int, topics: Iterable[str], *, kind: str, title: str, thread_id: int | None,
                   now: datetime) -> None:
        """Activate a chat and subscribe it to `topics` (keeping existing thresholds)."""
        with transaction(self.conn) as conn:
            conn.execute(
                "INSERT INTO chats (chat_id, active, kind, title, thread_id, created) VALUES (?,1,?,?,?,?)"
                " ON CONFLICT(chat_id) DO UPDATE SET active = 1, kind = excluded.kind,"
                " title = excluded.title, thread_id = excluded.thread_id, inactive_reason = ''",
                (chat_id, kind, title, thread_id, now.isoformat()),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO subscriptions (chat_id, topic) VALUES (?, ?)",
                [(chat_id, t) for t in topics],
            )

    def stop_chat(self, chat_id: int, reason: str) -> None:
        """Unsubscribe from everything and deactivate."""
        with transaction(self.conn) as conn:
            conn.execute("DELETE FROM subscriptions WHERE chat_id = ?", (chat_id,))
            conn.execute("UPDATE chats SET active = 0, inactive_reason = ? WHERE chat_id = ?", (reason, chat_id))

    def deactivate_chat(self, chat_id: int, reason: str) -> None:
        self.conn.execute("UPDATE chats SET active = 0, inactive_reason = ? WHERE chat_id = ?", (reason, chat_id))

    def move_chat(self, old_id: int, new_id: int) -> None:
        """Move a chat to its new id with its subscriptions, settings and watches."""
        with transaction(self.conn) as conn:
            exists = conn.execute("SELECT 1 FROM chats WHERE chat_id = ?", (new_id,)).fetchone()
            if exists:
                conn.execute(
                    "INSERT OR IGNORE INTO subscriptions (chat_id, topic, threshold)"
                    " SELECT ?, topic, threshold FROM subscriptions WHERE chat_id = ?", (new_id, old_id),
                )
                for table in _PER_CHAT_TABLES:
                    conn.execute(f"UPDATE {table} SET chat_id = ? WHERE chat_id = ?", (new_id, old_id))
                conn.execute("DELETE FROM chats WHERE chat_id = ?", (old_id,))
                conn.execute("UPDATE chats SET active = 1, kind = 'supergroup' WHERE chat_id = ?", (new_id,))
            else:
                conn.execute("UPDATE chats SET chat_id = ?, kind = 'supergroup' WHERE chat_id = ?", (new_id, old_id))

    def chat(self, chat_id: int) -> Chat | None:
        row = self.conn.execute("SELECT * FROM chats WHERE chat_id = ?", (chat_id,)).fetchone()
        if row is None:
            return None
        return Chat(
            chat_id=row["chat_id"], active=bool(row["active"]), kind=row["kind"], title=row["title"],
            thread_id=row["thread_id"], timezone=row["timezone"],
            muted_until=datetime.fromisoformat(row["muted_until"]) if row["muted_until"] else None,
            quiet=(time.fromisoformat(row["quiet_from"]), time.fromisoformat(row["quiet_to"]))
            if row["quiet_from"] and row["quiet_to"] else None,
            digest=row["digest"],
            digest_at=time.fromisoformat(row["digest_at"]) if row["digest_at"] else None,
        )

    def set_timezone(self, chat_id: int, zone: str) -> None:
        self.conn.execute("UPDATE chats SET timezone = ? WHERE chat_id = ?", (zone, chat_id))

    def set_muted_until(self, chat_id: int, until: datetime | None) -> None:
        self.conn.execute("UPDATE chats SET muted_until = ? WHERE chat_id = ?",
                          (until.astimezone(UTC).isoformat() if until else None, chat_id))

    def set_quiet(self, chat_id: int, quiet: tuple[time, time] | None) -> None:
        start, end = quiet if quiet else (None, None)
        self.conn.execute("UPDATE chats SET quiet_from = ?, quiet_to = ? WHERE chat_id = ?",
                          (start.isoformat("minutes") if start else None, end.isoformat("minutes") if end else None, chat_id))

    def set_digest(self, chat_id: int, mode: str, at: time | None) -> None:
        self.conn.execute("UPDATE chats SET digest = ?, digest_at = ? WHERE chat_id = ?",
                          (mode, at.isoformat("minutes") if at else None, chat_id))

    def ensure_chat(self, chat_id: int, *, kind: str, title: str, thread_id: int | None, now: datetime) -> bool:
        """Make sure the chat exists and is active; True when it was new or inactive."""
        row = self.conn.execute("SELECT active FROM chats WHERE chat_id = ?", (chat_id,)).fetchone()
        if row is None:
            self.conn.execute(
                "INSERT INTO chats (chat_id, active, kind, title, thread_id, created) VALUES (?,1,?,?,?,?)",
                (chat_id, kind, title, thread_id, now.isoformat()),
            )
            return True
        if not row["active"]:
            self.conn.execute("UPDATE chats SET active = 1, inactive_reason = '' WHERE chat_id = ?", (chat_id,))
            return True
        return False

    def subscribe(self, chat_id: int, topic: str) -> bool:
        cur = self.conn.execute("INSERT OR IGNORE INTO subscriptions (chat_id, topic) VALUES (?, ?)", (chat_id, topic))
        return bool(cur.rowcount)

    def unsubscribe(self, chat_id: int, topic: str) -> bool:
        cur = self.conn.execute("DELETE FROM subscriptions WHERE chat_id = ? AND topic = ?", (chat_id, topic))
        return bool(cur.rowcount)

    def set_threshold(self, chat_id: int, topic: str, threshold: float | None) -> bool:
        cur = self.conn.execute("UPDATE subscriptions SET threshold = ? WHERE chat_id = ? AND topic = ?",
                                (threshold, chat_id, topic))
        return bool(cur.rowcount)

    def active_ids(self, chat_ids: Iterable[int]) -> set[int]:
        """Those of `chat_ids` that are active chats."""
        ids = list(set(chat_ids))
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = self.conn.execute(f"SELECT chat_id FROM chats WHERE active = 1 AND chat_id IN ({marks})", ids)
        return {r[0] for r in rows}

    def active_chat_ids(self) -> list[int]:
        """Every active Telegram chat (not the console), oldest first."""
        return [r[0] for r in self.conn.execute(
            "SELECT chat_id FROM chats WHERE active = 1 AND chat_id != ? ORDER BY created", (CONSOLE_CHAT,))]

    def topics_of(self, chat_id: int) -> dict[str, float | None]:
        rows = self.conn.execute(
            "SELECT topic, threshold FROM subscriptions WHERE chat_id = ? ORDER BY topic", (chat_id,)
        )
        return {r["topic"]: r["threshold"] for r in rows}

    def subscribers(self, topics: Iterable[str]) -> dict[int, dict[str, float | None]]:
        """Active chats subscribed to any of `topics`: chat id -> {topic: own threshold or None}."""
        topics = list(topics)
        if not topics:
            return {}
        marks = ",".join("?" * len(topics))
        rows = self.conn.execute(
            f"SELECT s.chat_id, s.topic, s.threshold FROM subscriptions s JOIN chats c USING (chat_id)"
            f" WHERE c.active = 1 AND s.topic IN ({marks})",
            topics,
        )
        out: dict[int, dict[str, float | None]] = {}
        for r in rows:
            out.setdefault(r["chat_id"], {})[r["topic"]] = r["threshold"]
        return out

    def active_count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM chats WHERE active = 1").fetchone()[0]

    # -- watches ---------------------------------------------------------------------------------
    def add_watch(self, chat_id: int, rule: str, created: datetime) -> Watch:
        cur = self.conn.execute("INSERT INTO watches (chat_id, rule, created) VALUES (?, ?, ?)",
                                (chat_id, rule, created.astimezone(UTC).isoformat()))
        return Watch(int(cur.lastrowid or 0), chat_id, rule, created)

    def watches_of(self, chat_id: int) -> list[Watch]:
        """A chat's watches in the order they were made."""
        return [_watch(r) for r in self.conn.execute("SELECT * FROM watches WHERE chat_id = ? ORDER BY id", (chat_id,))]

    def delete_watch(self, watch_id: int) -> None:
        self.conn.execute("DELETE FROM watches WHERE id = ?", (watch_id,))

    def all_watches(self) -> list[Watch]:
        return [_watch(r) for r in self.conn.execute("SELECT * FROM watches ORDER BY id")]

    def watch_count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM watches").fetchone()[0]

    # -- story clusters --------------------------------------------------------------------------
    def stories_sharing_keys(self, keys: list[int], limit: int) -> dict[int, int]:
        """Indexed story -> how many of `keys` it shares, for the `limit` sharing most (an
        index-only scan of the keys)."""
        marks = ",".join("?" * len(keys))
        return dict(self.conn.execute(
            f"SELECT story, COUNT(*) AS n FROM cluster_keys WHERE key IN ({marks}) GROUP BY story"
            " ORDER BY n DESC LIMIT ?", (*keys, limit)).fetchall())

    def clustered_stories(self, stories: Iterable[int], since: datetime) -> list[tuple[int, str, Sketch, datetime]]:
        """(indexed story, cluster id, sketch without keys, seen) of those of `stories` seen since `since`."""
        stories = list(stories)
        rows = self.conn.execute(
            f"SELECT rowid, cluster_id, signature, title, seen FROM story_clusters WHERE rowid IN"
            f" ({','.join('?' * len(stories))}) AND seen >= ?", (*stories, db_time(since)))
        return [(rowid, cluster_id, Sketch(bytes(signature), bytes(title), ()), datetime.fromisoformat(seen))
                for rowid, cluster_id, signature, title, seen in rows]

    def exact_copy(self, content_key: int, since: datetime) -> tuple[str, Sketch] | None:
        """(cluster id, sketch without keys) of a story seen since `since` indexed under `content_key`."""
        row = self.conn.execute(
            "SELECT c.cluster_id, c.signature, c.title FROM cluster_keys k JOIN story_clusters c ON c.rowid = k.story"
            " WHERE k.key = ? AND c.seen >= ? LIMIT 1", (content_key, db_time(since)),
        ).fetchone()
        return None if row is None else (row[0], Sketch(bytes(row[1]), bytes(row[2]), ()))

    def add_to_cluster(self, story_id: str, cluster_id: str, source: str, sketch: Sketch, seen: datetime) -> None:
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO story_clusters (story_id, cluster_id, source, signature, title, seen)"
            " VALUES (?,?,?,?,?,?)",
            (story_id, cluster_id, source, sketch.signature, sketch.title, db_time(seen)),
        )
        if cur.rowcount:
            self.conn.executemany("INSERT OR IGNORE INTO cluster_keys (key, story) VALUES (?, ?)",
                                  [(key, cur.lastrowid) for key in sketch.keys])

    def forget_cluster_keys(self, seen_from: datetime | None, seen_before: datetime) -> int:
        """Drop the look-up keys of the stories seen from `seen_from` (None: ever) until `seen_before`."""
        return self.conn.execute(
            "DELETE FROM cluster_keys WHERE story IN"
            " (SELECT rowid FROM story_clusters WHERE seen >= ? AND seen < ?)",
            (db_time(seen_from) or "", db_time(seen_before)),
        ).rowcount

    def chats_alerted(self, cluster_id: str) -> set[int]:
        """Chats that already have an alert (sent or waiting) for a story of this cluster."""
        rows = self.conn.execute(
            "SELECT DISTINCT chat_id FROM outbox WHERE story_id IN"
            " (SELECT story_id FROM story_clusters WHERE cluster_id = ?)", (cluster_id,),
        )
        return {r[0] for r in rows}

    def other_sources(self, story_id: str) -> list[str]:
        """The other outlets that reported the event of `story_id`, in the order they came."""
        rows = self.conn.execute(
            "SELECT c.source FROM story_clusters c JOIN story_clusters me ON me.cluster_id = c.cluster_id"
            " WHERE me.story_id = ? AND c.story_id != me.story_id AND c.source != me.source ORDER BY c.seen",
            (story_id,),
        )
        return list(dict.fromkeys(r[0] for r in rows))

    # -- runtime sources -------------------------------------------------------------------------
    def runtime_sources(self) -> list[dict[str, Any]]:
        """Every row (name, url, interval, enabled, changed_by, changed_at) in the order they were
        made; `url` is None for an override of a config source."""
        return [dict(row) for row in self.conn.execute(
            "SELECT name, url, interval, enabled, changed_by, changed_at FROM runtime_sources ORDER BY rowid")]

    def add_runtime_source(self, name: str, url: str, interval: int, *, by: int, at: datetime) -> None:
        self.conn.execute(
            "INSERT INTO runtime_sources (name, url, interval, enabled, changed_by, changed_at)"
            " VALUES (?, ?, ?, 1, ?, ?)", (name, url, interval, by, db_time(at)),
        )

    def set_runtime_source_enabled(self, name: str, enabled: bool, *, by: int, at: datetime) -> None:
        """Enable or disable a source added at runtime."""
        self.conn.execute("UPDATE runtime_sources SET enabled = ?, changed_by = ?, changed_at = ? WHERE name = ?",
                          (int(enabled), by, db_time(at), name))

    def override_source_enabled(self, name: str, enabled: bool, *, by: int, at: datetime) -> None:
        """Record that a source of the config file is enabled or disabled."""
        self.conn.execute(
            "INSERT INTO runtime_sources (name, url, interval, enabled, changed_by, changed_at)"
            " VALUES (?, NULL, NULL, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET enabled = excluded.enabled,"
            " changed_by = excluded.changed_by, changed_at = excluded.changed_at",
            (name, int(enabled), by, db_time(at)),
        )

    # -- votes -----------------------------------------------------------------------------------
    def record_vote(self, chat_id: int, story_id: str, user_id: int, vote: int, topics: Iterable[str],
                    at: datetime) -> int | None:
        """Store the vote, replacing the user's earlier one on the story in this chat; return that one."""
        with transaction(self.conn) as conn:
            row = conn.execute("SELECT vote FROM votes WHERE chat_id = ? AND story_id = ? AND user_id = ?",
                               (chat_id, story_id, user_id)).fetchone()
            conn.execute(
                "INSERT INTO votes (chat_id, story_id, user_id, vote, topics, at) VALUES (?,?,?,?,?,?)"
                " ON CONFLICT (chat_id, story_id, user_id) DO UPDATE SET vote = excluded.vote,"
                " topics = excluded.topics, at = excluded.at",
                (chat_id, story_id, user_id, vote, json.dumps(list(topics), ensure_ascii=False), db_time(at)),
            )
        return row[0] if row else None

    def vote_counts(self, chat_id: int, story_id: str) -> tuple[int, int]:
        """(👍, 👎) on one story in one chat."""
        up, down = self.conn.execute(
            "SELECT COALESCE(SUM(CASE WHEN vote = 1 THEN 1 ELSE 0 END), 0),"
            " COALESCE(SUM(CASE WHEN vote = -1 THEN 1 ELSE 0 END), 0) FROM votes"
            " WHERE chat_id = ? AND story_id = ?", (chat_id, story_id)).fetchone()
        return up, down

    def votes_of_chat(self, chat_id: int) -> list[tuple[list[str], int]]:
        """(topics, vote) of every vote given in the chat."""
        return [(json.loads(topics), vote) for topics, vote in
                self.conn.execute("SELECT topics, vote FROM votes WHERE chat_id = ?", (chat_id,))]

    def votes_state(self) -> tuple[int, str | None]:
        """(votes, the latest vote's stored time)."""
        count, latest = self.conn.execute("SELECT COUNT(*), MAX(at) FROM votes").fetchone()
        return count, latest

    def votes_changed_since(self, at: datetime | None) -> int:
        """How many votes were given or changed after `at` (all of them when None)."""
        if at is None:
            return self.conn.execute("SELECT COUNT(*) FROM votes").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM votes WHERE at > ?", (db_time(at),)).fetchone()[0]

    def voted_alerts(self, chat_id: int | None = None) -> list[tuple[int, int, list[tuple[str, float]]]]:
        """(chat, sum of the votes, [(topic, score)] the outbox kept with the alert) per story voted
        on in a chat (of one chat, or of all)."""
        where, args = ("WHERE v.chat_id = ?", (chat_id,)) if chat_id is not None else ("", ())
        rows = self.conn.execute(
            "SELECT v.chat_id, SUM(v.vote), o.topics FROM votes v JOIN outbox o"
            f" ON o.chat_id = v.chat_id AND o.story_id = v.story_id {where} GROUP BY v.chat_id, v.story_id, o.topics",
            args)
        return [(chat, total, [(topic, score) for topic, score in json.loads(topics)]) for chat, total, topics in rows]

    def recent_down(self, chat_id: int, limit: int) -> list[str]:
        """Titles of the stories most recently marked 👎 in the chat (newest first)."""
        rows = self.conn.execute(
            "SELECT s.title, MAX(v.at) AS last FROM votes v JOIN stories s ON s.id = v.story_id"
            " WHERE v.chat_id = ? AND v.vote = -1 GROUP BY v.story_id, s.title ORDER BY last DESC LIMIT ?",
            (chat_id, limit)).fetchall()
        return [row[0] for row in rows]

    def move_votes(self, old_id: int, new_id: int) -> None:
        """Move the chat's votes, each unless its voter voted on that story in the new chat too."""
        self.conn.execute(
            "UPDATE votes SET chat_id = ? WHERE chat_id = ? AND NOT EXISTS (SELECT 1 FROM votes w"
            " WHERE w.chat_id = ? AND w.story_id = votes.story_id AND w.user_id = votes.user_id)",
            (new_id, old_id, new_id))

    def voted_stories(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Each vote on a story still stored (of one chat, or of all), oldest first, with the
        story: story_id, user_id, vote, topics (a list), title, text, language, source, published, url."""
        where, args = ("WHERE v.chat_id = ?", (chat_id,)) if chat_id is not None else ("", ())
        rows = self.conn.execute(
            "SELECT v.story_id, v.user_id, v.vote, v.topics, s.title, s.text, s.language, s.source, s.published,"
            f" s.url FROM votes v JOIN stories s ON s.id = v.story_id {where} ORDER BY v.at, v.rowid", args)
        return [{**dict(row), "topics": json.loads(row["topics"])} for row in rows]

    # -- read models: /latest, /status, /trend, stats, export --------------------------------------
    def latest_matched(self, topics: list[str], limit: int) -> list[tuple[str, datetime, tuple[tuple[str, float], ...]]]:
        """(story id, latest match, [(topic, score)] best first) of the stories most recently
        matched by `topics`: latest match first, and among stories matched together, latest
        published first."""
        if not topics:
            return []
        marks = ",".join("?" * len(topics))
        rows = self.conn.execute(
            f"SELECT m.story_id, MAX(m.matched_at) AS at, MAX(s.published) AS published FROM matches m"
            f" JOIN stories s ON s.id = m.story_id WHERE m.topic IN ({marks})"
            f" GROUP BY m.story_id ORDER BY at DESC, published DESC LIMIT ?",
            [*topics, limit],
        ).fetchall()
        out = []
        for row in rows:
            scores = self.conn.execute(
                f"SELECT topic, score FROM matches WHERE story_id = ? AND topic IN ({marks}) ORDER BY score DESC",
                [row["story_id"], *topics],
            )
            out.append((row["story_id"], datetime.fromisoformat(row["at"]),
                        tuple((r[0], float(r[1])) for r in scores)))
        return out

    def matched_since(self, since: datetime) -> int:
        """Stories matched by any topic since `since`."""
        return self.conn.execute(
            "SELECT COUNT(DISTINCT story_id) FROM matches WHERE matched_at >= ?", (db_time(since),),
        ).fetchone()[0]

    def matches_between(self, topics: list[str], start: datetime, end: datetime) -> list[tuple[str, str, datetime]]:
        """(topic, story id, when) of each match of `topics` in [start, end]."""
        if not topics:
            return []
        marks = ",".join("?" * len(topics))
        rows = self.conn.execute(
            f"SELECT topic, story_id, matched_at FROM matches"
            f" WHERE topic IN ({marks}) AND matched_at >= ? AND matched_at <= ?",
            [*topics, db_time(start), db_time(end)],
        )
        return [(topic, story_id, datetime.fromisoformat(at)) for topic, story_id, at in rows]

    def matched_per_day(self, since: datetime) -> dict[str, dict[str, int]]:
        """topic -> "YYYY-MM-DD" (UTC) -> matches that day, since `since`."""
        per_topic: dict[str, dict[str, int]] = {}
        for topic, day, count in self.conn.execute(
                "SELECT topic, substr(matched_at, 1, 10), COUNT(*) FROM matches WHERE matched_at >= ?"
                " GROUP BY topic, 2 ORDER BY topic", (db_time(since),)):
            per_topic.setdefault(topic, {})[day] = count
        return per_topic

    def matched_stories(self, since: datetime, topics: list[str]) -> list[dict[str, Any]]:
        """One row per match since `since` (of `topics`, when given) with its story, in storage
        order and best score first: seq, id, source, url, title, text, published, fetched, topic,
        score, terms (a list), matched_at."""
        sql = ("SELECT s.seq, s.id, s.source, s.url, s.title, s.text, s.published, s.fetched,"
               " m.topic, m.score, m.terms, m.matched_at FROM matches m JOIN stories s ON s.id = m.story_id"
               " WHERE m.matched_at >= ?")
        params: list[object] = [db_time(since)]
        if topics:
            sql += f" AND m.topic IN ({','.join('?' * len(topics))})"
            params += topics
        sql += " ORDER BY s.seq, m.score DESC"
        return [{**dict(row), "terms": json.loads(row["terms"])} for row in self.conn.execute(sql, params)]


_IDS_PER_STATEMENT = 500  # well under SQLite's limit of bound parameters


@contextmanager
def _whole(conn: sqlite3.Connection, ids: list[int]) -> Iterator[list[list[int]]]:
    """`ids` in chunks of one statement each; a transaction makes several chunks one write (a
    single statement is one by itself, and saves the BEGIN and COMMIT round trips)."""
    chunks = [ids[i : i + _IDS_PER_STATEMENT] for i in range(0, len(ids), _IDS_PER_STATEMENT)]
    if len(chunks) < 2:
        yield chunks
        return
    with transaction(conn):
        yield chunks


def _marks(values: list) -> str:
    return ",".join("?" * len(values))


def _item(row: sqlite3.Row) -> OutboxItem:
    return OutboxItem(
        id=row["id"], chat_id=row["chat_id"], story_id=row["story_id"],
        topics=tuple((t, float(s)) for t, s in json.loads(row["topics"])),
        terms=tuple(json.loads(row["terms"])), attempts=row["attempts"],
        not_before=datetime.fromisoformat(row["not_before"]),
        created=datetime.fromisoformat(row["created"]),
        kind=row["kind"], notice_id=row["notice_id"],
    )


def _watch(row: sqlite3.Row) -> Watch:
    return Watch(id=row["id"], chat_id=row["chat_id"], rule=row["rule"],
                 created=datetime.fromisoformat(row["created"]))
