"""One event, several outlets: one alert, the others shown as "also reported by"."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.e2e.conftest import ROOT, wait_until, write_config
from tests.e2e.test_skeleton import CHAT, SEED
from tests.fakes.feed_server import FeedItem

# Another outlet running the same wire copy under its own headline, lightly edited.
REWRITE = FeedItem(
    title="North Korea's Kim in Beijing to meet Xi as second Trump summit nears",
    link="https://daily.example.org/2019/01/08/kim-xi-beijing",
    guid="daily-kim-xi-0108",
    description=(
        "North Korean leader Kim Jong Un arrived in Beijing by train on Tuesday for talks with "
        "Chinese President Xi Jinping, his fourth trip to China in less than a year, as Washington "
        "and Pyongyang prepare for a possible second summit between Kim and U.S. President Donald "
        "Trump. Kim is expected to seek Beijing's backing for an easing of sanctions."
    ),
    published=SEED.published,
)


def test_two_outlets_in_one_pass_make_one_alert(tmp_path, feeds) -> None:
    feeds.set_feed("/wire.xml", [SEED])
    feeds.set_feed("/daily.xml", [REWRITE])
    config = write_config(tmp_path, [
        {"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 60},
        {"name": "daily", "url": feeds.url("/daily.xml"), "kind": "feed", "interval": 60},
    ])
    proc = subprocess.run([sys.executable, "-m", "newswatch.cli", "crawl", "--once", "-c", str(config)],
                          cwd=ROOT, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    alerts = proc.stdout.split("sources:")[0]
    assert alerts.count("arrived in Beijing by train") == 1, alerts
    assert "also reported by" in alerts


def _subscribed_daemon(tmp_path, feeds, bot_api, daemon_factory, *names: str):
    """A daemon polling the feeds /NAME.xml every second, with CHAT subscribed."""
    config = write_config(tmp_path, [{"name": name, "url": feeds.url(f"/{name}.xml"), "kind": "feed", "interval": 1}
                                     for name in names], api_url=f"{bot_api.url}/bot")
    daemon = daemon_factory(config).start()
    bot_api.user_message(CHAT, "/start")
    wait_until(lambda: any("Subscribed" in (m.get("text") or "") for m in bot_api.messages_for(CHAT)), what="/start")
    return daemon


def test_later_report_by_another_outlet_does_not_alert_again(tmp_path, feeds, bot_api, daemon_factory) -> None:
    feeds.set_feed("/wire.xml", [SEED])
    feeds.set_feed("/daily.xml", [])
    daemon = _subscribed_daemon(tmp_path, feeds, bot_api, daemon_factory, "wire", "daily")
    wait_until(lambda: [m for m in bot_api.messages_for(CHAT) if "Beijing" in (m.get("text") or "")],
               what="the first outlet's alert")
    feeds.set_feed("/daily.xml", [REWRITE])
    polls = len(feeds.hits_for("/daily.xml"))
    wait_until(lambda: len(feeds.hits_for("/daily.xml")) >= polls + 3, what="polls of the second outlet")
    assert daemon.stop() == 0
    alerts = [m for m in bot_api.messages_for(CHAT) if "Beijing" in (m.get("text") or "")]
    assert len(alerts) == 1, [a["text"][:80] for a in alerts]


# A full story with a short headline, and an aggregator's copy of it: the outlet's name after
# the headline, a description that only repeats it (as Google News items read), its own link.
HANOI = FeedItem(
    title="Trump and Kim to meet again in Hanoi",
    link="https://wire.example.com/world/asia/trump-kim-hanoi",
    guid="wire-hanoi-0206",
    description=(
        "U.S. President Donald Trump said he will hold his second summit with North Korean leader Kim "
        "Jong Un in Hanoi at the end of the month, after talks between the two sides' envoys on "
        "denuclearisation steps and a possible easing of sanctions made progress in recent days."
    ),
)
AGGREGATED = FeedItem(
    title=f"{HANOI.title} - Wire Service",
    link="https://news.aggregator.example.com/articles/CBMiWmh0dHBzOi8vd2lyZS5leGFtcGxlLmNvbQ",
    guid="aggregator-hanoi-0206",
    description=f'<a href="https://news.aggregator.example.com/r/1">{HANOI.title}</a>&nbsp;&nbsp;Wire Service',
)


def _hanoi_alerts(bot_api) -> list[dict]:
    return [m for m in bot_api.messages_for(CHAT) if HANOI.title in (m.get("text") or "")]


def _one_alert_whichever_first(tmp_path, feeds, bot_api, daemon_factory, first: FeedItem, second: FeedItem) -> None:
    feeds.set_feed("/first.xml", [])
    feeds.set_feed("/second.xml", [])
    daemon = _subscribed_daemon(tmp_path, feeds, bot_api, daemon_factory, "first", "second")
    wait_until(lambda: len(feeds.hits_for("/second.xml")) >= 2, what="the second source's first polls")
    feeds.set_feed("/first.xml", [first])  # after /start: the first item has a chat to alert
    wait_until(lambda: _hanoi_alerts(bot_api), what="the first item's alert")
    feeds.set_feed("/second.xml", [second])
    polls = len(feeds.hits_for("/second.xml"))
    wait_until(lambda: len(feeds.hits_for("/second.xml")) >= polls + 3, what="polls of the second source")
    assert daemon.stop() == 0
    assert len(_hanoi_alerts(bot_api)) == 1, [a["text"][:120] for a in _hanoi_alerts(bot_api)]


def test_full_story_then_its_title_only_aggregator_copy_alert_once(tmp_path, feeds, bot_api, daemon_factory) -> None:
    _one_alert_whichever_first(tmp_path, feeds, bot_api, daemon_factory, HANOI, AGGREGATED)


def test_title_only_copy_then_the_full_story_alert_once(tmp_path, feeds, bot_api, daemon_factory) -> None:
    _one_alert_whichever_first(tmp_path, feeds, bot_api, daemon_factory, AGGREGATED, HANOI)
