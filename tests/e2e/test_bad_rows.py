"""Stories that used to stop alerts: the real daemon, a local feed server and the fake Bot API.

A story dated year 1, left in the database by an earlier release, cannot be shown in a zone
behind UTC: the chat still gets it (without a date), every later alert, and /latest. A source
that gives another outlet's article URL (with tracking noise) first cannot keep that outlet's
story out: both are stored, the real one alerts, and neither alerts twice.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from datetime import UTC, datetime

from tests.e2e.conftest import wait_until, write_config
from tests.e2e.test_freshness import SUMMITS
from tests.fakes.feed_server import FeedItem

CHAT = 1001
FAST = {"crawler": {"delay": 0, "autothrottle": False, "timeout": 5}}


def _texts(bot_api) -> list[str]:
    return [m.get("text") or "" for m in bot_api.messages_for(CHAT)]


def _ask(bot_api, command: str, answer: str) -> str:
    before = len(_texts(bot_api))
    bot_api.user_message(CHAT, command)
    return wait_until(lambda: next((t for t in _texts(bot_api)[before:] if answer in t), None), 30,
                      what=f"the answer to {command}")


def _stored(db, sql: str, *args) -> list[tuple]:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def test_a_year_one_story_in_new_york_blocks_neither_alerts_nor_latest(tmp_path, feeds, bot_api,
                                                                        daemon_factory) -> None:
    feeds.set_feed("/wire.xml", [])
    config = write_config(tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "interval": 1}],
                          api_url=f"{bot_api.url}/bot", **FAST)
    db = tmp_path / "newswatch.db"
    daemon = daemon_factory(config).start()
    _ask(bot_api, "/start", "Subscribed")
    _ask(bot_api, "/timezone America/New_York", "Time zone set to America/New_York")

    # a row as an earlier release stored it: published in year 1
    title, text = SUMMITS[0]
    url = "https://old.example.com/year-one"
    conn = sqlite3.connect(db, timeout=10)
    conn.execute("INSERT INTO stories (id, source, guid, url, title, text, published, fetched)"
                 " VALUES (?,?,?,?,?,?,?,?)",
                 (hashlib.sha1(url.encode()).hexdigest()[:20], "wire", url, url, title, text,
                  "0001-01-01T00:00:00+00:00", datetime.now(UTC).isoformat()))
    conn.commit()
    conn.close()
    later_title, later_text = SUMMITS[1]
    feeds.set_feed("/wire.xml", [FeedItem(later_title, "https://wire.example.com/later", later_text)])

    wait_until(lambda: any(later_title in t for t in _texts(bot_api)), 45, what="the alert after the year-1 story")
    alerts = [t for t in _texts(bot_api) if title in t or later_title in t]
    assert len(alerts) == 2 and title in alerts[0] and "date unknown" in alerts[0], alerts
    latest = _ask(bot_api, "/latest", "Latest matched stories")
    assert title in latest and later_title in latest and "date unknown" in latest, latest
    assert daemon.stop() == 0
    assert "OverflowError" not in daemon.output()
    states = _stored(db, "SELECT state FROM outbox WHERE chat_id = ?", CHAT)
    assert sorted(s for (s,) in states) == ["sent", "sent"], states


def test_a_junk_item_with_another_outlets_url_does_not_keep_the_real_story_out(tmp_path, feeds, bot_api,
                                                                              daemon_factory) -> None:
    title, text = SUMMITS[2]
    real_url = "https://wire.example.com/world/asia/singapore-summit-back-on"
    feeds.set_feed("/junk.xml", [FeedItem("Click here for great deals", real_url + "?utm_source=junk&utm_medium=rss",
                                          "Great deals on everything, today only.")])
    feeds.set_feed("/wire.xml", [])
    config = write_config(tmp_path, [{"name": "junk", "url": feeds.url("/junk.xml"), "interval": 1},
                                     {"name": "wire", "url": feeds.url("/wire.xml"), "interval": 1}],
                          api_url=f"{bot_api.url}/bot", **FAST)
    db = tmp_path / "newswatch.db"
    daemon = daemon_factory(config).start()
    _ask(bot_api, "/start", "Subscribed")
    wait_until(lambda: _stored(db, "SELECT 1 FROM stories WHERE source = 'junk'"), 30, what="the junk item stored")

    feeds.set_feed("/wire.xml", [FeedItem(title, real_url, text)])
    wait_until(lambda: any(title in t for t in _texts(bot_api)), 30, what="the real story's alert")
    polls = len(feeds.hits_for("/wire.xml"))
    wait_until(lambda: len(feeds.hits_for("/wire.xml")) >= polls + 3, 30, what="more polls of both feeds")
    time.sleep(1)
    assert daemon.stop() == 0

    assert sum(title in t for t in _texts(bot_api)) == 1, _texts(bot_api)
    rows = _stored(db, "SELECT source, url, title FROM stories ORDER BY seq")
    assert rows == [("junk", real_url, "Click here for great deals"), ("wire", real_url, title)], rows
