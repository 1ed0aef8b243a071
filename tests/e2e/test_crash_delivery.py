"""SIGKILL in the middle of a 4,000-alert burst, then a restart: nothing lost, order kept.

The outbox is filled through the daemon's own store classes (200 stories for 20 chats);
the real daemon delivers it to the fake Bot API and is killed with SIGKILL part-way.
Telegram has no idempotency key, so a message whose request was in flight at the kill can
be sent again after the restart; the test bounds such repeats by what can be in flight.
On SQLite and on PostgreSQL. `fill_burst` and `check_burst` serve the take-over tests too
(`test_takeover_mid_burst`).
"""

from __future__ import annotations

import random
import signal
from collections import Counter
from datetime import UTC, datetime

from newswatch.alerts.deliver.outbox import Outbox
from newswatch.alerts.subscriptions import Subscriptions
from newswatch.storage import open_storage
from newswatch.crawler.story import Story, story_id
from tests.e2e.conftest import is_postgres, wait_until, write_config

CHATS = list(range(500, 520))
STORIES = 200
IN_FLIGHT_MAX = 4  # the notifier's concurrency
# the notifier's rate limits out of the way: the burst goes as fast as the fake Bot API answers
FAST = {"overall_per_second": 10000, "group_per_minute": 10000}


def _burst_story(i: int, now: datetime) -> Story:
    """Story i of a burst: "Burst story NNN", a summit story with a text of its own (words made up
    from i), so that no two of them are taken for reports of one event."""
    rnd = random.Random(i)
    words = " ".join("".join(rnd.choice("bcdfghklmnprstvz") + rnd.choice("aeiou") for _ in range(3)) for _ in range(40))
    url = f"https://news.example.com/burst/{i}"
    return Story(id=story_id("wire", url, ""), source="wire", url=url, title=f"Burst story {i:03d}",
                 text=f"Kim Jong Un met the South Korean president for summit talks in Pyongyang. {words}.",
                 published=now)


def fill_burst(database, chats: list[int] = CHATS, stories: int = STORIES, *, queue: bool = True) -> None:
    """Subscribe `chats` to the topic summit and store `stories` burst stories; with `queue`, also
    queue every story for every chat, as the dispatcher would (without: the dispatcher does)."""
    db = open_storage(database)
    store, subs, outbox = db.stories, Subscriptions(db.alerts), Outbox(db.alerts)
    now = datetime.now(UTC)
    for chat in chats:
        subs.start(chat, ["summit"], now=now)
    burst = [_burst_story(i, now) for i in range(stories)]
    store.add_stories(burst, now)
    if queue:
        for story in burst:
            for chat in chats:
                outbox.enqueue(chat, story.id, [("summit", 9.0)], ["summit"], now)
    db.close()


def delivered(bot_api) -> int:
    """How many different (chat, alert) messages the fake Bot API received."""
    return len({(m["chat_id"], m["text"]) for m in bot_api.sent})


def check_burst(bot_api, chats: list[int] = CHATS, stories: int = STORIES) -> int:
    """Every chat received every burst story, first seen in order; the number of repeats."""
    repeats = 0
    expected = [f"Burst story {i:03d}" for i in range(stories)]
    for chat in chats:
        titles = [m["text"].split("</a>")[0].rsplit(">", 1)[-1] for m in bot_api.messages_for(chat)]
        assert set(titles) == set(expected), f"chat {chat}: alerts lost"
        repeats += sum(n - 1 for n in Counter(titles).values())
        assert list(dict.fromkeys(titles)) == expected, f"chat {chat}: order not kept"
    return repeats


def test_sigkill_mid_burst_loses_nothing(tmp_path, database, bot_api, daemon_factory) -> None:
    config = write_config(tmp_path, [], api_url=f"{bot_api.url}/bot",
                          telegram={"api_url": f"{bot_api.url}/bot", "poll_timeout": 1, **FAST}, database=database)
    fill_burst(database)
    daemon = daemon_factory(config).start()
    wait_until(lambda: len(bot_api.sent) >= 1200, timeout=60, what="a third of the burst")
    daemon.stop(signal.SIGKILL)
    at_kill = len(bot_api.sent)
    assert at_kill < STORIES * len(CHATS), "the kill came too late to test anything"

    daemon.start()
    wait_until(lambda: delivered(bot_api) >= STORIES * len(CHATS), timeout=120, what="the rest of the burst after the restart")
    assert daemon.stop() == 0

    repeats = check_burst(bot_api)
    print(f"\nSIGKILL after {at_kill} of {STORIES * len(CHATS)} sent; repeated after restart: {repeats}")
    assert repeats <= IN_FLIGHT_MAX
    db = open_storage(database)
    if not is_postgres(database):
        assert db.stories.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert Outbox(db.alerts).counts() == {"sent": STORIES * len(CHATS)}
    db.close()
