"""The durable outbox: one row per (chat, story) alert or per (chat, notice), from decision to delivery.

`Outbox` holds the rules; the rows are kept by `newswatch.alerts.store.AlertsStore`.

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

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from newswatch.alerts.store import AlertsStore

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
    """The outbox's rules over the rows an `AlertsStore` keeps."""

    def __init__(self, store: AlertsStore) -> None:
        self.store = store

    # -- writing decisions (called inside the dispatcher's transaction) -----------------------
    def record_match(self, story_id: str, topic: str, score: float, terms: Iterable[str], at: datetime) -> None:
        self.store.record_match(story_id, topic, score, terms, at)

    def record_matches(self, matches: list[tuple[str, str, float, list[str], datetime]]) -> None:
        """(story, topic, score, terms, when) of several matches at once."""
        self.store.record_matches(matches)

    def enqueue(self, chat_id: int, story_id: str, topics: Iterable[tuple[str, float]],
                terms: Iterable[str], at: datetime) -> bool:
        """Queue an alert; False when this chat already has (or had) this story."""
        return self.store.enqueue(chat_id, story_id, topics, terms, at)

    def queue_notice(self, chat_ids: Iterable[int], text: str, at: datetime, *, report_to: int | None = None,
                     reports: int | None = None) -> int:
        """Queue `text` once for each chat; return how many were queued. `report_to` (a broadcast)
        names the chat told when every copy has an outcome; `reports` is the broadcast this notice
        reports on: it is queued only if that report was not queued before."""
        return self.store.queue_notice(chat_ids, text, at, report_to=report_to, reports=reports)

    def notice_text(self, notice_id: int | None) -> str | None:
        return self.store.notice_text(notice_id)

    def finished_broadcasts(self) -> list[BroadcastOutcome]:
        """Broadcasts not reported yet whose every copy has an outcome (sent, dropped, failed)."""
        outcomes = []
        for notice_id, report_to, copies in self.store.finished_broadcasts():
            counts: dict[str, int] = {}
            for _, state, _ in copies:
                counts[state] = counts.get(state, 0) + 1
            problems = tuple(f"{chat_id}: {error or state}" for chat_id, state, error in copies if state != SENT)
            outcomes.append(BroadcastOutcome(notice_id, report_to, counts, problems))
        return outcomes

    def get(self, item_id: int) -> OutboxItem | None:
        return self.store.outbox_item(item_id)

    # -- delivering -----------------------------------------------------------------------------
    def due_heads(self, now: datetime, limit: int = 200) -> list[OutboxItem]:
        """The oldest pending item of each chat's queues (alerts, notices), for those due now."""
        return self.store.due_heads(now, limit)

    def head(self, chat_id: int, now: datetime, kind: str = ALERT) -> OutboxItem | None:
        """The oldest pending item of the chat's queue of `kind`, if it is due now."""
        item = self.store.queue_head(chat_id, kind)
        return None if item is None or item.not_before > now else item

    def pending_for_chat(self, chat_id: int, created_before: datetime, limit: int = 500) -> list[OutboxItem]:
        """The chat's pending alerts (for a digest)."""
        return self.store.pending_for_chat(chat_id, created_before, limit)

    def mark_many_sent(self, item_ids: list[int], message_id: int | None, at: datetime) -> None:
        self.store.mark_many_sent(item_ids, message_id, at)

    def finish_many(self, item_ids: list[int], state: str, error: str) -> None:
        self.store.finish_many(item_ids, state, error)

    def next_due(self) -> datetime | None:
        return self.store.next_due()

    def mark_sent(self, item_id: int, message_id: int | None, at: datetime) -> None:
        self.store.mark_sent(item_id, message_id, at)

    def reschedule(self, item_id: int, not_before: datetime, error: str, *, count_attempt: bool = True) -> None:
        self.store.reschedule(item_id, not_before, error, count_attempt=count_attempt)

    def finish(self, item_id: int, state: str, error: str) -> None:
        self.store.finish(item_id, state, error)

    def drop_chat(self, chat_id: int, reason: str) -> int:
        """End every pending item of a chat that cannot receive any more."""
        return self.store.drop_chat_items(chat_id, reason)

    def migrate_chat(self, old_id: int, new_id: int) -> None:
        self.store.move_chat_items(old_id, new_id)

    def counts(self) -> dict[str, int]:
        return self.store.outbox_counts()

    def backlog(self, overdue_before: datetime) -> tuple[int, datetime | None, int]:
        """(pending rows, when the oldest of them was queued, chats whose next row was due before
        `overdue_before` and is still waiting: rows that are stuck)."""
        count, oldest = self.store.pending()
        return count, oldest, self.store.stuck_chats(overdue_before)

    def depth(self) -> tuple[int, datetime | None]:
        """(pending rows, when the oldest of them was queued)."""
        return self.store.pending()

    def pending_count(self) -> int:
        return self.store.pending_count()
