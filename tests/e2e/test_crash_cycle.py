"""kill -9 at 20 random moments of a busy cycle (fetching, storing, matching, sending).

30 feeds carry 150 distinct relevant stories for 5 chats. The daemon is started and killed
with SIGKILL 20 times at random moments, then left to finish. Every alert must arrive, the
database must be intact, and repeats are bounded by what can be in flight at a kill
(Telegram has no idempotency key: a request the server has answered but the daemon has not
yet recorded is sent again after the restart). On PostgreSQL, where each start-up costs more,
12 feeds and 6 kills (two per phase) make the same point.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import string
import time
from collections import Counter
from datetime import UTC, datetime

from newswatch.alerts.config import load_config
from newswatch.alerts.match.matcher import Matcher
from newswatch.alerts.subscriptions import Subscriptions
from newswatch.storage import open_storage
from tests.e2e.conftest import is_postgres, wait_until, write_config
from tests.fakes.feed_server import FeedItem

CHATS = [7001, 7002, 7003, 7004, 7005]
FEEDS = 30
PER_FEED = 5
KILLS = 20
IN_FLIGHT = 4  # the notifier's concurrency
# On PostgreSQL each start-up costs more: fewer feeds and kills still put kills in every phase
POSTGRES_FEEDS, POSTGRES_KILLS = 12, 6


def _stories(rng: random.Random, feed_count: int = FEEDS) -> list[list[FeedItem]]:
    places = ["Panmunjom", "Hanoi", "Singapore", "Vladivostok", "Beijing", "Pyongyang", "Seoul", "Geneva"]
    feeds = []
    for f in range(feed_count):
        items = []
        for k in range(PER_FEED):
            words = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 9))) for _ in range(60)]
            place = rng.choice(places)
            title = f"North Korean envoys hold summit talks in {place}: {' '.join(words[:4])} ({f}-{k})"
            text = (f"North Korea's envoys held summit talks with their counterparts in {place}. "
                    + " ".join(rng.choice(words) for _ in range(120)))
            items.append(FeedItem(title, f"https://outlet{f}.example.com/story/{k}", text,
                                  published=datetime.now(UTC)))
        feeds.append(items)
    return feeds


def test_twenty_kills_lose_nothing(tmp_path, database, feeds, bot_api, daemon_factory) -> None:
    on_postgres = is_postgres(database)
    feed_count, kills = (POSTGRES_FEEDS, POSTGRES_KILLS) if on_postgres else (FEEDS, KILLS)
    rng = random.Random(20261128)
    all_items = _stories(rng, feed_count)
    for f, items in enumerate(all_items):
        feeds.set_feed(f"/feed/{f}.xml", items)
    sources = [{"name": f"outlet{f}", "url": feeds.url(f"/feed/{f}.xml"), "kind": "feed", "interval": 1}
               for f in range(feed_count)]
    config = write_config(tmp_path, sources, api_url=f"{bot_api.url}/bot",
                          telegram={"api_url": f"{bot_api.url}/bot", "poll_timeout": 1,
                                    "overall_per_second": 10000, "group_per_minute": 10000},
                          crawler={"per_host": 32, "delay": 0, "autothrottle": False}, database=database)
    matcher = Matcher(load_config(config).topics)
    expected = {item.title for items in all_items for item in items if any(s.passed for s in matcher.score(item.title, item.description))}
    assert len(expected) >= feed_count * PER_FEED * 2 // 3
    db = open_storage(database)
    subs = Subscriptions(db.alerts)
    for chat in CHATS:
        subs.start(chat, ["summit", "sanctions", "north-korea"])
    db.close()

    def delivered() -> set[tuple[int, str]]:
        return {(m["chat_id"], title) for m in bot_api.sent for title in [_title(m)] if title in expected}

    everything = len(expected) * len(CHATS)
    daemon = daemon_factory(config)
    sent_at_kills = []
    phases = ["fetching", "storing", "sending"]
    for kill in range(kills):
        phase = phases[kill % 3]
        log = tmp_path / f"daemon-{kill + 1}.err"
        before = len(bot_api.sent)
        daemon.start()
        # start-up itself takes seconds: each kill waits for its phase, then a random moment
        wait_until(lambda: "is listening" in log.read_text(), timeout=60, what="the daemon to start")
        if phase == "fetching":
            time.sleep(rng.uniform(0.0, 0.8))
        elif phase == "storing":
            wait_until(lambda: "cycle:" in log.read_text() or "matched" in log.read_text(), timeout=60,
                       what="stories being stored")
            time.sleep(rng.uniform(0.0, 0.3))
        else:
            goal = before + rng.randint(1, 40)
            # everything may already be out: then a kill at rest is the moment
            wait_until(lambda: len(bot_api.sent) >= goal or len(delivered()) >= everything, timeout=60,
                       what="alerts being sent")
        daemon.stop(signal.SIGKILL)
        sent_at_kills.append((phase, len(bot_api.sent)))
    sending = [n for phase, n in sent_at_kills if phase == "sending"]
    assert sending[0] < everything, f"no kill fell while alerts were being sent: {sent_at_kills}"

    daemon.start()
    final_log = tmp_path / f"daemon-{kills + 1}.err"
    wait_until(lambda: "is listening" in final_log.read_text(), timeout=60, what="the last daemon to start")

    wait_until(lambda: len(delivered()) >= everything, timeout=120, what="every alert after the kills")
    assert daemon.stop() == 0

    counts = Counter((m["chat_id"], _title(m)) for m in bot_api.sent if _title(m) in expected)
    repeats = sum(n - 1 for n in counts.values())
    print(f"\n{kills} kills at sent counts {sent_at_kills}; {len(expected) * len(CHATS)} alerts expected, "
          f"all delivered; repeated: {repeats}")
    assert repeats <= kills * IN_FLIGHT
    if not on_postgres:
        sqlite_db = sqlite3.connect(database)
        assert sqlite_db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db = open_storage(database)
    assert db.alerts.pending_count() == 0
    db.close()


def _title(message: dict) -> str:
    text = message.get("text") or ""
    return text.split("</a>")[0].rsplit(">", 1)[-1] if "</a>" in text else ""
