"""Delivering: takes due outbox rows and hands them to a sink (Telegram or the console).

Every message the bot sends on its own, alert, admin notice or broadcast, comes through here,
with the same rate limits, retries, per-chat order, error map and bookkeeping. A notice is
not news: mute, quiet hours and digests do not hold it, and it is sent as plain (escaped)
text; it is dropped only when its chat is stored as inactive (stopped or gone). A chat that
was never started (an admin chat in `telegram.notice_chats`) still receives notices. Once
every copy of a broadcast has an outcome, its sender is told how many chats received it.

The notifier runs beside the crawler as its own asyncio task, never inside a Scrapy
pipeline. Per chat it sends strictly in outbox order; across chats it sends concurrently.
An optional `DeliveryObserver` (the daemon's metrics) is told of every outcome, and
`stuck()` says whether delivery has stopped making progress (for `/healthz`).
A sink reports trouble with the exceptions below and the notifier turns each into a durable
decision on the outbox row:

    DeliveryError
    ├── RetryLater   429 retry_after, 5xx, network errors: try again at a later time
    │                (an outage of the Bot API pauses every Telegram send until it answers)
    ├── ChatGone     403 blocked/kicked, chat not found: deactivate the chat, drop its queue
    ├── ChatMoved    group upgraded to a supergroup: move the chat, send again at once
    └── Rejected     Telegram refuses this message for good: mark it failed, go on

A row whose alert cannot be built or rendered (its story is gone, a stored value cannot be
shown) or whose send raises anything else is treated as Rejected too: marked failed with the
reason and logged once, and the chat's queue moves on (retrying could not fix it).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TextIO
from zoneinfo import ZoneInfo

from newswatch.alerts.deliver.format import AlertView, broadcast_report, plural, render_console
from newswatch.alerts.deliver.outbox import DROPPED, FAILED, MUTED, NOTICE, Outbox, OutboxItem
from newswatch.alerts.story_clusters import StoryClusters
from newswatch.alerts.subscriptions import CONSOLE_CHAT, Chat, Subscriptions
from newswatch.alerts.deliver.timing import decide, zone
from newswatch.crawler.clock import Clock
from newswatch.crawler.store import StorageError, StorageUnavailable, StoryStore

log = logging.getLogger("newswatch.notifier")

MAX_BACKOFF = 300.0
# kept in the database's meta table while the Bot API cannot be reached (read by `newswatch stats`)
TELEGRAM_DOWN_KEY = "telegram_unreachable_since"
TELEGRAM_PROBLEM_KEY = "telegram_problem"
DIGEST_MAX_ITEMS = 50


class DeliveryError(Exception):
    pass


class RetryLater(DeliveryError):
    def __init__(self, seconds: float | None, reason: str, *, count_attempt: bool = True, flood: bool = False,
                 outage: bool = False) -> None:
        super().__init__(reason)
        self.seconds = seconds
        self.count_attempt = count_attempt
        self.flood = flood  # Telegram's flood control (429): the service works, we are too fast
        self.outage = outage  # the Bot API cannot be reached: the sink holds sends until it answers


class ChatGone(DeliveryError):
    pass


class ChatMoved(DeliveryError):
    def __init__(self, new_chat_id: int) -> None:
        super().__init__(f"migrated to {new_chat_id}")
        self.new_chat_id = new_chat_id


class Rejected(DeliveryError):
    pass


class Sink(Protocol):
    available: bool  # False while the sink cannot send at all (the Bot API unreachable)

    async def send(self, chat_id: int, thread_id: int | None, view: AlertView, tz: ZoneInfo) -> int | None: ...

    async def send_digest(self, chat_id: int, thread_id: int | None, views: list[AlertView], tz: ZoneInfo,
                          title: str) -> int | None: ...

    async def send_notice(self, chat_id: int, thread_id: int | None, text: str) -> int | None: ...


class ConsoleSink:
    """Prints alerts as plain text blocks (the mode without a bot token)."""

    available = True

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout

    async def send(self, chat_id: int, thread_id: int | None, view: AlertView, tz: ZoneInfo) -> int | None:
        self.out.write(render_console(view, tz=tz) + "\n\n")
        self.out.flush()
        return None

    async def send_digest(self, chat_id: int, thread_id: int | None, views: list[AlertView], tz: ZoneInfo,
                          title: str) -> int | None:
        self.out.write(f"== {title} ==\n" + "\n\n".join(render_console(v, tz=tz) for v in views) + "\n\n")
        self.out.flush()
        return None

    async def send_notice(self, chat_id: int, thread_id: int | None, text: str) -> int | None:
        self.out.write(f"== notice ==\n{text}\n\n")
        self.out.flush()
        return None


class DeliveryObserver(Protocol):
    def delivery(self, outcome: str, chat_id: int, count: int) -> None:
        """`count` alerts of `chat_id` ended as `outcome`: sent, retried, flood (a 429),
        failed, dropped, muted or moved."""


@dataclass
class DeliverySummary:
    sent: int = 0
    retried: int = 0
    dropped: int = 0
    failed: int = 0
    muted: int = 0


class Notifier:
    def __init__(self, outbox: Outbox, store: StoryStore, subscriptions: Subscriptions, clock: Clock,
                 telegram: Sink | None, console: Sink, *, concurrency: int = 4,
                 rng: random.Random | None = None,
                 observer: DeliveryObserver | None = None, clusters: StoryClusters | None = None) -> None:
        self.outbox = outbox
        self.store = store
        self.subscriptions = subscriptions
        self.clock = clock
        self.telegram = telegram
        self.console = console
        self.concurrency = concurrency
        self.rng = rng or random.Random()
        self.summary = DeliverySummary()
        self.last_progress = clock.now()
        self.observer = observer
        self.clusters = clusters
        self.in_flight: dict[int, datetime] = {}  # outbox id -> when its send started
        # messages sent whose record the database refused (outbox ids, message id, when): recorded
        # before anything else is sent, so that a send is never made twice by this process
        self.unrecorded: list[tuple[list[int], int | None, datetime]] = []
        self.failing_since: datetime | None = None  # first failed send since the last success

    def stuck(self, after: float) -> str:
        """Why delivery is stuck ("" when it is not): a send has been in flight, or sends have
        kept failing (Telegram answering with errors), for more than `after` seconds. An outage
        of the Bot API is not "stuck": alerts wait in the outbox and health reports it apart."""
        now = self.clock.now()
        if self.in_flight:
            age = (now - min(self.in_flight.values())).total_seconds()
            if age > after:
                return f"a send has been waiting for an answer for {age:.0f}s"
        if self.failing_since is not None:
            age = (now - self.failing_since).total_seconds()
            if age > after:
                return f"sends have been failing for {age:.0f}s"
        return ""

    def _sink(self, chat_id: int) -> Sink:
        return self.console if chat_id == CONSOLE_CHAT or self.telegram is None else self.telegram

    @property
    def waiting_for_telegram(self) -> bool:
        """True while Telegram alerts cannot be sent (the Bot API is unreachable)."""
        return self.telegram is not None and not self.telegram.available

    def _tell(self, outcome: str, chat_id: int, count: int = 1) -> None:
        if self.observer is not None and count:
            self.observer.delivery(outcome, chat_id, count)

    async def deliver_due(self) -> DeliverySummary:
        """Send everything that is due now, chat by chat in order; return what happened."""
        before = DeliverySummary(**vars(self.summary))
        self._record_unrecorded()
        semaphore = asyncio.Semaphore(self.concurrency)

        async def drain(chat_id: int, kind: str) -> None:
            # Strictly in order within a chat's queue; queues proceed independently of each other.
            while self._sink(chat_id).available:
                async with semaphore:
                    item = self.outbox.head(chat_id, self.clock.now(), kind)
                    if item is None:
                        return
                    await self._deliver(item)

        while True:
            self._report_broadcasts()
            heads = [h for h in self.outbox.due_heads(self.clock.now()) if self._sink(h.chat_id).available]
            if not heads:
                break
            await asyncio.gather(*(drain(item.chat_id, item.kind) for item in heads))
        return DeliverySummary(*(getattr(self.summary, f) - getattr(before, f) for f in vars(before)))

    async def _deliver(self, item: OutboxItem) -> None:
        now = self.clock.now()
        chat = self.subscriptions.chat(item.chat_id) if item.chat_id != CONSOLE_CHAT else None
        # an alert needs a started chat; a notice goes to any chat not stored as inactive
        if item.chat_id != CONSOLE_CHAT and (not chat.active if chat else item.kind != NOTICE):
            self.outbox.finish(item.id, DROPPED, "chat inactive")
            self.summary.dropped += 1
            self._tell("dropped", item.chat_id)
            return
        if item.kind == NOTICE:
            await self._deliver_notice(item, chat)
            return
        items = [item]
        if chat is not None:
            decision = decide(chat, item.created, now)
            if decision.action == "skip":
                self.outbox.finish(item.id, MUTED, "chat muted")
                self.summary.muted += 1
                self._tell("muted", item.chat_id)
                return
            if decision.action == "hold":
                assert decision.until is not None
                self.outbox.reschedule(item.id, decision.until, "held (quiet hours or digest)", count_attempt=False)
                return
            if decision.action == "digest":
                items = self.outbox.pending_for_chat(item.chat_id, now, limit=DIGEST_MAX_ITEMS)
        shown = [(i, v) for i, v in ((i, self._view(i)) for i in items) if v is not None]
        if not shown:
            return
        ids, views = [i.id for i, _ in shown], [v for _, v in shown]
        tz = zone(chat.timezone if chat else "UTC")
        thread_id = chat.thread_id if chat else None
        if len(views) == 1 and (chat is None or chat.digest == "off"):
            await self._send(item, ids, lambda sink: sink.send(item.chat_id, thread_id, views[0], tz))
        else:
            title = _digest_title(chat, len(views))
            await self._send(item, ids, lambda sink: sink.send_digest(item.chat_id, thread_id, views, tz, title))

    async def _deliver_notice(self, item: OutboxItem, chat: Chat | None) -> None:
        """Send a notice or broadcast now, whatever the chat's mute, quiet hours or digest."""
        text = self.outbox.notice_text(item.notice_id)
        if text is None:
            self._fail(item, [item.id], "notice text no longer stored")
            return
        thread_id = chat.thread_id if chat else None
        await self._send(item, [item.id], lambda sink: sink.send_notice(item.chat_id, thread_id, text))

    def _report_broadcasts(self) -> None:
        """Queue, once, the report of each broadcast whose every copy has an outcome."""
        for done in self.outbox.finished_broadcasts():
            if self.outbox.queue_notice([done.report_to], broadcast_report(done.counts, done.problems),
                                        self.clock.now(), reports=done.notice_id):
                log.info("broadcast %s: %s", done.notice_id, ", ".join(f"{n} {s}" for s, n in done.counts.items()))

    async def _send(self, item: OutboxItem, ids: list[int], send: Callable[[Sink], Awaitable[int | None]]) -> None:
        """Send the message of the outbox rows `ids` (an alert, a digest, a notice), headed by
        `item`, and record the outcome."""
        sink = self._sink(item.chat_id)
        started = self.in_flight[item.id] = self.clock.now()
        try:
            message_id = await send(sink)
        except RetryLater as exc:
            self._postpone(item, started, exc)
        except ChatMoved as exc:
            log.info("chat %s: moved to %s", item.chat_id, exc.new_chat_id)
            self._tell("moved", item.chat_id)
            self.subscriptions.migrate(item.chat_id, exc.new_chat_id)
            self.outbox.migrate_chat(item.chat_id, exc.new_chat_id)
        except ChatGone as exc:
            self._chat_gone(item.chat_id, str(exc))
        except Rejected as exc:
            self._fail(item, ids, str(exc))
        except OSError as exc:  # the console's output cannot be written (a full disk): try again later
            self._postpone(item, started, RetryLater(None, f"{type(exc).__name__}: {exc}"))
        except Exception as exc:  # rendering or sending broke on this message: retrying cannot help
            log.debug("chat %s: outbox row %s", item.chat_id, item.id, exc_info=True)
            self._fail(item, ids, f"cannot be formatted or sent: {type(exc).__name__}: {exc}")
        else:
            self.unrecorded.append((ids, message_id, self.clock.now()))
            self._record_unrecorded()
            self.summary.sent += len(ids)
            self.last_progress = self.clock.now()
            self.failing_since = None
            self._tell("sent", item.chat_id, len(ids))
        finally:
            self.in_flight.pop(item.id, None)

    def _record_unrecorded(self) -> None:
        """Record the sent messages the outbox does not know as sent yet; raises `StorageError`
        while the database refuses (the caller tries again later, sending nothing meanwhile)."""
        while self.unrecorded:
            ids, message_id, at = self.unrecorded[0]
            self.outbox.mark_many_sent(ids, message_id, at)
            self.unrecorded.pop(0)

    def _postpone(self, item: OutboxItem, started: datetime, exc: RetryLater) -> None:
        if not exc.flood and not exc.outage and self.failing_since is None:
            self.failing_since = started
        self._tell("flood" if exc.flood else "retried", item.chat_id)
        delay = exc.seconds if exc.seconds is not None else self._backoff(item.attempts)
        self.outbox.reschedule(item.id, self.clock.now() + timedelta(seconds=delay), str(exc),
                               count_attempt=exc.count_attempt)
        self.summary.retried += 1
        if not exc.outage:  # an outage is logged once, by the sink's link
            log.info("chat %s: delivery postponed %.1fs: %s", item.chat_id, delay, exc)

    def _chat_gone(self, chat_id: int, reason: str) -> None:
        self.subscriptions.deactivate(chat_id, reason)
        dropped = self.outbox.drop_chat(chat_id, reason)
        self.summary.dropped += dropped
        self._tell("dropped", chat_id, dropped)
        log.warning("chat %s: deactivated (%s); %s dropped", chat_id, reason, plural(dropped, "queued alert"))

    def _fail(self, item: OutboxItem, ids: list[int], reason: str) -> None:
        """End rows that can never be delivered as `failed`, with the reason; the chat's queue moves on."""
        self.outbox.finish_many(ids, FAILED, reason)
        self.summary.failed += len(ids)
        self._tell("failed", item.chat_id, len(ids))
        what = f"notice {item.notice_id}" if item.kind == NOTICE else f"alert for story {item.story_id}"
        log.error("chat %s: %s failed for good (outbox row %s): %s", item.chat_id, what, item.id, reason)

    def _view(self, item: OutboxItem) -> AlertView | None:
        """What the alert of `item` shows; None when it cannot be built (the row is then failed)."""
        try:
            stored = self.store.get(item.story_id)
            if stored is None:
                reason = "story no longer stored"
            else:
                story = stored.story
                view = AlertView(
                    title=story.title, url=story.url, source=story.source, published=story.published,
                    topics=item.topics, terms=item.terms, summary=story.text,
                    also_reported_by=tuple(self.clusters.other_sources(item.story_id)) if self.clusters else (),
                    outbox_id=item.id,
                )
                render_console(view, tz=zone("UTC"))  # every field can be shown
                return view
        except StorageUnavailable:
            raise  # locked, disk full, read-only: the row waits for the database
        except (StorageError, ValueError, TypeError, OverflowError, KeyError) as exc:
            reason = f"cannot be formatted: {type(exc).__name__}: {exc}"
        self._fail(item, [item.id], reason)
        return None

    def _backoff(self, attempts: int) -> float:
        return min(2.0 ** min(attempts, 12), MAX_BACKOFF) * self.rng.uniform(0.5, 1.5)


def _digest_title(chat: Chat | None, count: int) -> str:
    kind = {"hourly": "Hourly digest", "daily": "Daily digest"}.get(chat.digest if chat else "off", "Held alerts")
    return f"{kind}: {count} {'story' if count == 1 else 'stories'}"
