"""Who wants what: chats, their topic subscriptions and per-chat settings, in SQLite.

A chat is created by `/start` (subscribed to every topic) and deactivated by `/stop`, by
Telegram answering 403 (blocked, kicked) or "chat not found". A group that becomes a
supergroup is moved to its new id with everything it had. Chat id 0 is the console.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from crawler.store import transaction

CONSOLE_CHAT = 0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chats (
    chat_id     INTEGER PRIMARY KEY,
    active      INTEGER NOT NULL DEFAULT 1,
    kind        TEXT NOT NULL DEFAULT 'private',
    title       TEXT NOT NULL DEFAULT '',
    thread_id   INTEGER,
    timezone    TEXT NOT NULL DEFAULT 'UTC',
    created     TEXT NOT NULL,
    inactive_reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS subscriptions (
    chat_id    INTEGER NOT NULL REFERENCES chats(chat_id) ON UPDATE CASCADE ON DELETE CASCADE,
    topic      TEXT NOT NULL,
    threshold  REAL,
    PRIMARY KEY (chat_id, topic)
);
CREATE INDEX IF NOT EXISTS subscriptions_topic ON subscriptions(topic);
"""


@dataclass(frozen=True)
class Chat:
    chat_id: int
    active: bool
    kind: str
    title: str
    thread_id: int | None
    timezone: str


class Subscriptions:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        conn.executescript(_SCHEMA)

    def start(self, chat_id: int, topics: Iterable[str], *, kind: str = "private", title: str = "",
              thread_id: int | None = None, now: datetime | None = None) -> None:
        """Activate a chat and subscribe it to `topics` (keeping existing thresholds)."""
        now = now or datetime.now(UTC)
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

    def stop(self, chat_id: int, reason: str = "stopped by the chat") -> None:
        """Unsubscribe from everything and deactivate."""
        with transaction(self.conn) as conn:
            conn.execute("DELETE FROM subscriptions WHERE chat_id = ?", (chat_id,))
            conn.execute("UPDATE chats SET active = 0, inactive_reason = ? WHERE chat_id = ?", (reason, chat_id))

    def deactivate(self, chat_id: int, reason: str) -> None:
        """Stop sending to a chat that cannot receive (kept subscribed, for a later /start)."""
        self.conn.execute("UPDATE chats SET active = 0, inactive_reason = ? WHERE chat_id = ?", (reason, chat_id))

    def migrate(self, old_id: int, new_id: int) -> None:
        """Move a chat (group upgraded to supergroup) to its new id, settings and all."""
        with transaction(self.conn) as conn:
            exists = conn.execute("SELECT 1 FROM chats WHERE chat_id = ?", (new_id,)).fetchone()
            if exists:
                conn.execute(
                    "INSERT OR IGNORE INTO subscriptions (chat_id, topic, threshold)"
                    " SELECT ?, topic, threshold FROM subscriptions WHERE chat_id = ?", (new_id, old_id),
                )
                conn.execute("DELETE FROM chats WHERE chat_id = ?", (old_id,))
                conn.execute("UPDATE chats SET active = 1, kind = 'supergroup' WHERE chat_id = ?", (new_id,))
            else:
                conn.execute("UPDATE chats SET chat_id = ?, kind = 'supergroup' WHERE chat_id = ?", (new_id, old_id))

    def chat(self, chat_id: int) -> Chat | None:
        row = self.conn.execute("SELECT * FROM chats WHERE chat_id = ?", (chat_id,)).fetchone()
        if row is None:
            return None
        return Chat(row["chat_id"], bool(row["active"]), row["kind"], row["title"], row["thread_id"], row["timezone"])

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
