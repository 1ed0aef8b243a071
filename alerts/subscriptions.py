"""Who wants what: chats, their topic subscriptions and per-chat settings (kept by `newswatch.alerts.store`).

A chat is created by `/start` (subscribed to every topic), or by the first /subscribe,
/watch or topic button, and deactivated by `/stop`, by Telegram answering 403 (blocked,
kicked) or "chat not found", or when the bot is removed from it. A group that becomes a
supergroup is moved to its new id with everything it had, its watches included. Chat id 0
is the console. A chat's `thread_id` is the forum topic where /start was sent: alerts go
there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from newswatch.alerts.store import AlertsStore

CONSOLE_CHAT = 0
DIGEST_MODES = ("off", "hourly", "daily")


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
    def __init__(self, store: AlertsStore) -> None:
        self.store = store

    def start(self, chat_id: int, topics: Iterable[str], *, kind: str = "private", title: str = "",
              thread_id: int | None = None, now: datetime | None = None) -> None:
        """Activate a chat and subscribe it to `topics` (keeping existing thresholds)."""
        self.store.start_chat(chat_id, topics, kind=kind, title=title, thread_id=thread_id,
                              now=now or datetime.now(UTC))

    def stop(self, chat_id: int, reason: str = "stopped by the chat") -> None:
        """Unsubscribe from everything and deactivate."""
        self.store.stop_chat(chat_id, reason)

    def deactivate(self, chat_id: int, reason: str) -> None:
        """Stop sending to a chat that cannot receive (kept subscribed, for a later /start)."""
        self.store.deactivate_chat(chat_id, reason)

    def migrate(self, old_id: int, new_id: int) -> None:
        """Move a chat (group upgraded to supergroup) to its new id, settings and watches and all."""
        self.store.move_chat(old_id, new_id)

    def chat(self, chat_id: int) -> Chat | None:
        return self.store.chat(chat_id)

    def set_timezone(self, chat_id: int, zone: str) -> None:
        self.store.set_timezone(chat_id, zone)

    def set_muted_until(self, chat_id: int, until: datetime | None) -> None:
        self.store.set_muted_until(chat_id, until)

    def set_quiet(self, chat_id: int, quiet: tuple[time, time] | None) -> None:
        self.store.set_quiet(chat_id, quiet)

    def set_digest(self, chat_id: int, mode: str, at: time | None = None) -> None:
        if mode not in DIGEST_MODES:
            raise ValueError(f"digest mode must be off, hourly or daily, not {mode!r}")
        self.store.set_digest(chat_id, mode, at)

    def ensure(self, chat_id: int, *, kind: str = "private", title: str = "", thread_id: int | None = None,
               now: datetime | None = None) -> bool:
        """Make sure the chat exists and is active, without touching its topics or thread.
        True when it was new or inactive."""
        return self.store.ensure_chat(chat_id, kind=kind, title=title, thread_id=thread_id,
                                      now=now or datetime.now(UTC))

    def subscribe(self, chat_id: int, topic: str) -> bool:
        """Add one topic (the chat must exist); False when it was already there."""
        return self.store.subscribe(chat_id, topic)

    def unsubscribe(self, chat_id: int, topic: str) -> bool:
        """Remove one topic (and its threshold); False when it was not there."""
        return self.store.unsubscribe(chat_id, topic)

    def set_threshold(self, chat_id: int, topic: str, threshold: float | None) -> bool:
        """The chat's own threshold for a topic it follows (None: the topic's); False if not followed."""
        return self.store.set_threshold(chat_id, topic, threshold)

    def active_ids(self, chat_ids: Iterable[int]) -> set[int]:
        """Those of `chat_ids` that are active chats."""
        return self.store.active_ids(chat_ids)

    def active_chats(self) -> list[Chat]:
        """Every active Telegram chat (not the console)."""
        return [c for c in (self.chat(i) for i in self.store.active_chat_ids()) if c is not None]

    def topics_of(self, chat_id: int) -> dict[str, float | None]:
        return self.store.topics_of(chat_id)

    def subscribers(self, topics: Iterable[str]) -> dict[int, dict[str, float | None]]:
        """Active chats subscribed to any of `topics`: chat id -> {topic: own threshold or None}."""
        return self.store.subscribers(topics)

    def active_count(self) -> int:
        return self.store.active_count()
