"""Who wants what: chats, their topic subscriptions and per-chat settings, in SQLite.

A chat is created by `/start` (subscribed to every topic), or by the first /subscribe,
/watch or topic button, and deactivated by `/stop`, by Telegram answering 403 (blocked,
kicked) or "chat not found", or when the bot is removed from it. A group that becomes a
supergroup is moved to its new id with everything it had, its watches included. Chat id 0
is the console. A chat's `thread_id` is the forum topic where /start was sent: alerts go
there.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time

from newswatch.crawler.store import transaction

CONSOLE_CHAT = 0
_PER_CHAT_TABLES = ("watches",)  # other tables keyed by chat_id, moved along by migrate()

_SCHEMA = """
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
CREATE INDEX IF NOT EXISTS subscriptions_topic ON subscriptions(topic);
"""


@dataclass(frozen=True)
class Chat:
    """A chat and its delivery settings (times are local to `timezone`)."""

    chat_id: int
    active: bool
    kind: str
    title: str
    thread_id: int | None
    timezone: str = "UTC"
    muted_until: datetime | None = None
    quiet: tuple[time, time] | None = None     # (from, to) local times; may wrap midnight
    digest: str = "off"                        # off | hourly | daily
    digest_at: time | None = None              # for daily digests, local time


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
                for table in _PER_CHAT_TABLES:
                    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone():
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

    def set_digest(self, chat_id: int, mode: str, at: time | None = None) -> None:
        if mode not in ("off", "hourly", "daily"):
            raise ValueError(f"digest mode must be off, hourly or daily, not {mode!r}")
        self.conn.execute("UPDATE chats SET digest = ?, digest_at = ? WHERE chat_id = ?",
                          (mode, at.isoformat("minutes") if at else None, chat_id))

    def ensure(self, chat_id: int, *, kind: str = "private", title: str = "", thread_id: int | None = None,
               now: datetime | None = None) -> bool:
        """Make sure the chat exists and is active, without touching its topics or thread.
        True when it was new or inactive."""
        now = now or datetime.now(UTC)
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
        """Add one topic (the chat must exist); False when it was already there."""
        cur = self.conn.execute("INSERT OR IGNORE INTO subscriptions (chat_id, topic) VALUES (?, ?)", (chat_id, topic))
        return bool(cur.rowcount)

    def unsubscribe(self, chat_id: int, topic: str) -> bool:
        """Remove one topic (and its threshold); False when it was not there."""
        cur = self.conn.execute("DELETE FROM subscriptions WHERE chat_id = ? AND topic = ?", (chat_id, topic))
        return bool(cur.rowcount)

    def set_threshold(self, chat_id: int, topic: str, threshold: float | None) -> bool:
        """The chat's own threshold for a topic it follows (None: the topic's); False if not followed."""
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

    def active_chats(self) -> list[Chat]:
        """Every active Telegram chat (not the console)."""
        ids = [r[0] for r in self.conn.execute(
            "SELECT chat_id FROM chats WHERE active = 1 AND chat_id != ? ORDER BY created", (CONSOLE_CHAT,))]
        return [c for c in (self.chat(i) for i in ids) if c is not None]

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
