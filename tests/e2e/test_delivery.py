"""Delivery through the real python-telegram-bot stack to the fake Bot API, with a manual clock.

The notifier, outbox, subscriptions and store are the daemon's own, on a real SQLite file;
only time is injected, so quiet hours, digests, 429 storms and a 60-second outage play out
without sleeping.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from newswatch.alerts.config import TelegramConfig
from newswatch.alerts.deliver.notifier import ConsoleSink, Notifier
from newswatch.alerts.deliver.outbox import Outbox
from newswatch.alerts.subscriptions import Subscriptions
from newswatch.alerts.deliver.telegram import TelegramSink, build_application
from newswatch.crawler.clock import ManualClock
from newswatch.storage import open_storage
from newswatch.crawler.story import Story, story_id
from tests.fakes.bot_api import FakeBotAPI

T0 = datetime(2026, 3, 1, 14, 30, tzinfo=UTC)  # 23:30 in Seoul


@pytest.fixture
def fake() -> Iterator[FakeBotAPI]:
    with FakeBotAPI() as api:
        yield api


class Harness:
    def __init__(self, fake: FakeBotAPI, db: Path) -> None:
        self.fake = fake
        self.clock = ManualClock(T0)
        storage = open_storage(db)
        self.store = storage.stories
        self.subs = Subscriptions(storage.alerts)
        self.outbox = Outbox(storage.alerts)
        config = TelegramConfig(api_url=fake.api_base, overall_per_second=10_000, group_per_minute=10_000)
        self.app = build_application(fake.token, config)
        self.notifier = Notifier(self.outbox, self.store, self.subs, self.clock, TelegramSink(self.app),
                                 ConsoleSink(open(os.devnull, "w")))
        self.seq = 0

    def story(self, title: str) -> Story:
        self.seq += 1
        url = f"https://news.example.com/{self.seq}"
        s = Story(id=story_id("wire", url, ""), source="wire", url=url, title=title,
                  text="North Korea summit talks " * 3, published=self.clock.now())
        self.store.add_stories([s], self.clock.now())
        return s

    def queue(self, chat_id: int, story: Story) -> None:
        self.outbox.enqueue(chat_id, story.id, [("summit", 7.5)], ["summit"], self.clock.now())

    async def deliver(self) -> int:
        return (await self.notifier.deliver_due()).sent


def run(harness: Harness, coro_fn) -> None:
    async def main() -> None:
        await harness.app.initialize()
        try:
            await coro_fn()
        finally:
            await harness.app.shutdown()

    asyncio.run(main())


def test_quiet_hours_hold_alerts_until_morning(fake, database) -> None:
    h = Harness(fake, database)
    h.subs.start(7, ["summit"], now=T0)
    h.subs.set_timezone(7, "Asia/Seoul")
    h.subs.set_quiet(7, (time(23, 0), time(7, 0)))

    async def scenario() -> None:
        first, second = h.story("First night story"), h.story("Second night story")
        h.queue(7, first)
        h.queue(7, second)
        assert await h.deliver() == 0
        h.clock.set(datetime(2026, 3, 1, 21, 59, tzinfo=UTC))  # 06:59 KST
        assert await h.deliver() == 0
        assert fake.messages_for(7) == []
        h.clock.set(datetime(2026, 3, 1, 22, 0, 1, tzinfo=UTC))  # 07:00:01 KST
        assert await h.deliver() == 2
        texts = [m["text"] for m in fake.messages_for(7)]
        assert "First night story" in texts[0] and "Second night story" in texts[1]
        assert "2026-03-01 23:30 KST" in texts[0]  # published time in the chat's zone

    run(h, scenario)


def test_daily_digest_batches_at_the_chosen_time(fake, database) -> None:
    h = Harness(fake, database)
    h.subs.start(8, ["summit"], now=T0)
    h.subs.set_timezone(8, "Asia/Seoul")
    h.subs.set_digest(8, "daily", time(8, 0))

    async def scenario() -> None:
        for title in ("Envoy lands in Pyongyang", "Talks resume in Panmunjom", "Summit date set"):
            h.queue(8, h.story(title))
            h.clock.advance(600)
        assert await h.deliver() == 0
        h.clock.set(datetime(2026, 3, 1, 22, 59, tzinfo=UTC))  # 07:59 KST
        assert await h.deliver() == 0
        h.clock.set(datetime(2026, 3, 1, 23, 0, 30, tzinfo=UTC))  # 08:00:30 KST
        assert await h.deliver() == 3
        messages = fake.messages_for(8)
        assert len(messages) == 1
        text = messages[0]["text"]
        assert "Daily digest: 3 stories" in text
        assert text.index("Envoy lands") < text.index("Talks resume") < text.index("Summit date set")
        assert await h.deliver() == 0  # nothing twice

    run(h, scenario)


def test_muted_chat_skips_alerts_until_unmuted(fake, database) -> None:
    h = Harness(fake, database)
    h.subs.start(9, ["summit"], now=T0)
    h.subs.set_muted_until(9, T0 + timedelta(hours=2))

    async def scenario() -> None:
        h.queue(9, h.story("While muted"))
        assert await h.deliver() == 0
        h.clock.advance(timedelta(hours=2, seconds=1))
        h.queue(9, h.story("After mute"))
        assert await h.deliver() == 1
        texts = [m["text"] for m in fake.messages_for(9)]
        assert len(texts) == 1 and "After mute" in texts[0]
        assert h.outbox.counts() == {"muted": 1, "sent": 1}

    run(h, scenario)


def test_burst_survives_429_storm_and_outage_exactly_once_in_order(fake, database) -> None:
    """200 alerts to 20 chats; a 429 storm and a 60-second outage in the middle."""
    h = Harness(fake, database)
    chats = list(range(100, 120))
    for chat in chats:
        h.subs.start(chat, ["summit"], now=T0)
    stories = [h.story(f"Story {i:03d}") for i in range(200)]
    for story in stories:
        for chat in chats:
            h.queue(chat, story)

    async def scenario() -> None:
        fake.fail_next("sendMessage", n=150, status=429, retry_after=7)
        rounds = 0
        outage_started = None
        while h.outbox.pending_count():
            rounds += 1
            assert rounds < 500, h.outbox.counts()
            await h.notifier.deliver_due()
            if outage_started is None and len(fake.sent) > 1500:
                fake.set_down(True)
                outage_started = h.clock.now()
            if outage_started and h.clock.now() - outage_started >= timedelta(seconds=60):
                fake.set_down(False)
            h.clock.advance(5)
        assert outage_started is not None

    run(h, scenario)
    assert h.outbox.counts() == {"sent": 4000}
    for chat in chats:
        titles = [m["text"].split("</a>")[0].rsplit(">", 1)[-1] for m in fake.messages_for(chat)]
        assert titles == [f"Story {i:03d}" for i in range(200)], f"chat {chat}: lost, repeated or reordered"
    assert len(fake.calls_to("sendMessage")) > 4000 + 150  # the storm and the outage forced retries


def test_year_one_story_in_a_zone_behind_utc_does_not_block_the_chat(fake, database) -> None:
    """A story dated year 1 (a database of an earlier release) cannot be shown in New York time:
    it is shown without a date, and the chat's next alert follows it."""
    h = Harness(fake, database)
    h.subs.start(11, ["summit"], now=T0)
    h.subs.set_timezone(11, "America/New_York")
    url = "https://news.example.com/year-one"
    old = Story(id=story_id("wire", url, ""), source="wire", url=url, title="Year one story",
                text="North Korea summit talks", published=datetime(1, 1, 1, tzinfo=UTC))
    h.store.add_stories([old], T0)

    async def scenario() -> None:
        h.queue(11, old)
        h.queue(11, h.story("Later story"))
        assert await h.deliver() == 2
        texts = [m["text"] for m in fake.messages_for(11)]
        assert "Year one story" in texts[0] and "date unknown" in texts[0]
        assert "Later story" in texts[1] and "EST" in texts[1]

    run(h, scenario)


def test_a_row_that_cannot_be_formatted_fails_once_and_the_queue_moves_on(fake, database, caplog) -> None:
    h = Harness(fake, database)
    h.subs.start(12, ["summit"], now=T0)
    bad, gone = h.story("Bad date"), h.story("Gone")
    h.store.conn.execute("UPDATE stories SET published = 'not a date' WHERE id = ?", (bad.id,))
    h.store.conn.execute("DELETE FROM stories WHERE id = ?", (gone.id,))

    async def scenario() -> None:
        h.queue(12, bad)
        h.queue(12, gone)
        h.queue(12, h.story("Good story"))
        for _ in range(3):
            await h.deliver()
            h.clock.advance(60)
        texts = [m["text"] for m in fake.messages_for(12)]
        assert len(texts) == 1 and "Good story" in texts[0]

    with caplog.at_level("ERROR", logger="newswatch.notifier"):
        run(h, scenario)
    rows = {r[0]: (r[1], r[2]) for r in h.store.conn.execute(
        "SELECT story_id, state, last_error FROM outbox WHERE chat_id = 12")}
    assert rows[bad.id][0] == "failed" and "not a date" in rows[bad.id][1], rows
    assert rows[gone.id] == ("failed", "story no longer stored"), rows
    failures = [r.getMessage() for r in caplog.records if "failed for good" in r.getMessage()]
    assert len(failures) == 2 and "chat 12" in failures[0], failures


def test_telegram_refusing_a_message_for_good_fails_it_and_the_queue_moves_on(fake, database) -> None:
    h = Harness(fake, database)
    h.subs.start(13, ["summit"], now=T0)

    async def scenario() -> None:
        h.queue(13, h.story("Refused"))
        h.queue(13, h.story("Accepted"))
        fake.fail_next("sendMessage", status=400, description="Bad Request: message is too long")
        await h.deliver()
        texts = [m["text"] for m in fake.messages_for(13)]
        assert len(texts) == 1 and "Accepted" in texts[0]

    run(h, scenario)
    assert h.outbox.counts() == {"failed": 1, "sent": 1}
