"""SIGKILL in the middle of a 4,000-alert burst, then a restart: nothing lost, order kept.

The outbox is filled through the daemon's own store classes (200 stories for 20 chats);
the real daemon delivers it to the fake Bot API and is killed with SIGKILL part-way.
Telegram has no idempotency key, so a message whose request was in flight at the kill can
be sent again after the restart; the test bounds such repeats by what can be in flight.
On SQLite and on PostgreSQL.
"""

from __future__ import annotations

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


def _fill(db_path) -> None:
    db = open_storage(db_path)
    store, subs, outbox = db.stories, Subscriptions(db.alerts), Outbox(db.alerts)
    now = datetime.now(UTC)
    for chat in CHATS:
        subs.start(chat, ["summit"], now=now)
    stories = []
    for i in range(STORIES):
        url = f"https://news.example.com/burst/{i}"
        stories.append(Story(id=story_id("wire", url, ""), source="wire", url=url, title=f"Burst story {i:03d}",
                             text="Summit talks between North Korea and the United States.", published=now))
    store.add_stories(stories, now)
    for story in stories:
        for chat in CHATS:
            outbox.enqueue(chat, story.id, [("summit", 9.0)], ["summit"], now)
    db.close()


def test_sigkill_mid_burst_loses_nothing(tmp_path, database, bot_api, daemon_factory) -> None:
    config = write_config(tmp_path, [], api_url=f"{bot_api.url}/bot",
                          telegram={"api_url": f"{bot_api.url}/bot", "poll_timeout": 1,
                                    "overall_per_second": 10000, "group_per_minute": 10000}, database=database)
    _fill(database)
    daemon = daemon_factory(config).start()
    wait_until(lambda: len(bot_api.sent) >= 1200, timeout=60, what="a third of the burst")
    daemon.stop(signal.SIGKILL)
    at_kill = len(bot_api.sent)
    assert at_kill < STORIES * len(CHATS), "the kill came too late to test anything"

    daemon.start()
    wait_until(lambda: len({(m["chat_id"], m["text"]) for m in bot_api.sent}) >= STORIES * len(CHATS),
               timeout=120, what="the rest of the burst after the restart")
    assert daemon.stop() == 0

    repeats = 0
    for chat in CHATS:
        titles = [m["text"].split("</a>")[0].rsplit(">", 1)[-1] for m in bot_api.messages_for(chat)]
        expected = [f"Burst story {i:03d}" for i in range(STORIES)]
        assert set(titles) == set(expected), f"chat {chat}: alerts lost"
        counts = Counter(titles)
        repeats += sum(n - 1 for n in counts.values())
        first_seen = list(dict.fromkeys(titles))
        assert first_seen == expected, f"chat {chat}: order not kept"
    print(f"\nSIGKILL after {at_kill} of {STORIES * len(CHATS)} sent; repeated after restart: {repeats}")
    assert repeats <= IN_FLIGHT_MAX
    db = open_storage(database)
    if not is_postgres(database):
        assert db.stories.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert Outbox(db.alerts).counts() == {"sent": STORIES * len(CHATS)}
    db.close()
