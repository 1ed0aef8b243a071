"""Only fresh news alerts: the real daemon, a local feed server and the fake Bot API.

A story alerts only when it was published within `alert_max_age` (24 hours by default) of
being stored; older ones are stored, searchable and counted, never alerted. Undated items of
a source's first successful fetch are a baseline, not news; undated items that appear later
alert. This holds for config sources, sources added by a SIGHUP reload and by /addsource.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import yaml

from tests.e2e.conftest import ROOT, wait_until, write_config
from tests.fakes.feed_server import FeedItem

CHAT = 1001  # subscribed, and an admin in write_config's telegram section
FAST = {"crawler": {"delay": 0, "autothrottle": False, "timeout": 5}}

# Distinct summit stories (each passes the shipped `summit` topic; no two report one event).
SUMMITS = [
    ("Kim Jong Un and Vladimir Putin to meet for summit in Vladivostok",
     "North Korean leader Kim Jong Un will travel to Vladivostok for his first summit with Russian President "
     "Vladimir Putin, the Kremlin said, with talks expected on economic cooperation and the nuclear standoff."),
    ("Moon Jae-in and Kim Jong Un agree at Panmunjom summit to end war",
     "South Korean President Moon Jae-in and North Korean leader Kim Jong Un embraced at the border village of "
     "Panmunjom and pledged in a joint declaration to work toward a formal end of the Korean War."),
    ("Trump says summit with Kim Jong Un in Singapore is back on for June 12",
     "U.S. President Donald Trump said his summit with North Korea's Kim Jong Un will take place in Singapore "
     "on June 12 after all, following a visit to the White House by a senior North Korean envoy."),
    ("Xi Jinping arrives in Pyongyang for summit talks with Kim Jong Un",
     "Chinese President Xi Jinping arrived in Pyongyang on Thursday for two days of summit talks with North "
     "Korean leader Kim Jong Un, the first visit to North Korea by a Chinese leader in fourteen years."),
    ("Kim Jong Un and Trump meet at the DMZ in a surprise summit meeting",
     "Donald Trump became the first sitting U.S. president to set foot in North Korea when he met Kim Jong Un "
     "at the demilitarised zone, where the two leaders agreed to restart stalled nuclear talks."),
    ("Kim Jong Un travels by train to Russia for a summit with Putin at Vostochny",
     "Kim Jong Un's armoured train crossed into Russia ahead of a summit with Vladimir Putin at the Vostochny "
     "cosmodrome, where weapons supplies and satellite technology are expected to be discussed."),
    ("Lee Jae-myung and Kim Jong Un hold inter-Korean summit talks in Kaesong",
     "South Korean President Lee Jae-myung and North Korean leader Kim Jong Un held summit talks in Kaesong, "
     "the first meeting of the two Koreas' leaders in seven years, Seoul's presidential office said."),
    ("Putin flies to Pyongyang for a summit and a defence pact with Kim Jong Un",
     "Russian President Vladimir Putin landed in Pyongyang for a summit with Kim Jong Un at which the two "
     "leaders signed a mutual defence treaty, deepening military ties that alarm Seoul and Washington."),
    ("Kim Jong Un and Xi Jinping hold summit in Beijing ahead of Trump talks",
     "Kim Jong Un met Xi Jinping in Beijing for summit talks, his fourth trip to China in ten months, before an "
     "expected second meeting with Donald Trump, Chinese state media reported."),
    ("Japan's prime minister seeks summit with Kim Jong Un on abductees",
     "Japan's prime minister said he is ready to hold a summit with North Korean leader Kim Jong Un without "
     "preconditions to resolve the issue of Japanese citizens abducted by North Korea decades ago."),
]


def _item(i: int, *, published: datetime | None = None, undated: bool = False, site: str = "wire") -> FeedItem:
    title, text = SUMMITS[i]
    return FeedItem(title, f"https://{site}.example.com/story/{i}", text, guid=f"{site}-{i}",
                    published=published or datetime.now(UTC), undated=undated)


def _alerted(bot_api, i: int) -> int:
    return sum(SUMMITS[i][0] in (m.get("text") or "") for m in bot_api.messages_for(CHAT))


def _start_and_subscribe(daemon_factory, config, bot_api):
    daemon = daemon_factory(config).start()
    bot_api.user_message(CHAT, "/start")
    wait_until(lambda: any("Subscribed" in (m.get("text") or "") for m in bot_api.messages_for(CHAT)),
               what="the /start reply")
    return daemon


def test_only_the_fresh_story_of_five_alerts(tmp_path, feeds, bot_api, daemon_factory) -> None:
    feeds.set_feed("/wire.xml", [])
    config = write_config(tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "interval": 1}],
                          api_url=f"{bot_api.url}/bot", **FAST)
    daemon = _start_and_subscribe(daemon_factory, config, bot_api)
    wait_until(lambda: len(feeds.hits_for("/wire.xml")) >= 2, what="two polls of the feed")

    now = datetime.now(UTC)
    aged = [_item(i, published=now - timedelta(days=days)) for i, days in enumerate((3, 30, 200, 730))]
    fresh = _item(4, published=now - timedelta(minutes=10))
    feeds.set_feed("/wire.xml", [fresh, *aged])
    wait_until(lambda: _alerted(bot_api, 4), what="the fresh story's alert")
    polls = len(feeds.hits_for("/wire.xml"))
    wait_until(lambda: len(feeds.hits_for("/wire.xml")) >= polls + 3, what="more polls")
    assert daemon.stop() == 0

    assert _alerted(bot_api, 4) == 1
    assert [_alerted(bot_api, i) for i in range(4)] == [0, 0, 0, 0]
    assert "4 too old to alert" in daemon.output()
    stats = subprocess.run([sys.executable, "-m", "newswatch.cli", "stats", "--json", "-c", str(config)],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert stats.returncode == 0, stats.stderr
    held = json.loads(stats.stdout)["held_per_day"]
    assert sum(held["too old"].values()) == 4
    export = subprocess.run([sys.executable, "-m", "newswatch.cli", "export", "--since", "3000d", "--format", "jsonl",
                             "-c", str(config)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert export.returncode == 0, export.stderr
    assert sum(SUMMITS[0][0] in line for line in export.stdout.splitlines()) == 1  # stored and matched


def test_new_sources_and_undated_items_are_a_baseline(tmp_path, feeds, bot_api, daemon_factory) -> None:
    now = datetime.now(UTC)
    # the config's source: two undated items on its first fetch, and one dated years ago
    feeds.set_feed("/wire.xml", [_item(0, undated=True), _item(1, undated=True),
                                 _item(2, published=now - timedelta(days=900))])
    config = write_config(tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "interval": 1}],
                          api_url=f"{bot_api.url}/bot", **FAST,
                          telegram={"api_url": f"{bot_api.url}/bot", "poll_timeout": 1, "admins": [CHAT],
                                    "allow_private_source_networks": ["127.0.0.0/8"]})
    daemon = _start_and_subscribe(daemon_factory, config, bot_api)
    wait_until(lambda: len(feeds.hits_for("/wire.xml")) >= 2, what="two polls of the feed")

    # later undated items are news
    feeds.set_feed("/wire.xml", [_item(3, undated=True), _item(0, undated=True), _item(1, undated=True),
                                 _item(2, published=now - timedelta(days=900))])
    wait_until(lambda: _alerted(bot_api, 3), what="the alert for an undated item that appeared later")

    # a source added by a reload, whose feed holds only old stories (dated and undated)
    feeds.set_feed("/archive.xml", [_item(4, published=now - timedelta(days=40), site="archive"),
                                    _item(5, undated=True, site="archive")])
    data = yaml.safe_load(config.read_text("utf-8"))
    data["sources"].append({"name": "archive", "url": feeds.url("/archive.xml"), "interval": 1})
    config.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: len(feeds.hits_for("/archive.xml")) >= 3, what="the reloaded source polled")

    # a source added from Telegram, a weekly analysis feed of old stories
    feeds.set_feed("/weekly.xml", [_item(6, published=now - timedelta(days=9), site="weekly"),
                                   _item(7, published=now - timedelta(days=3), site="weekly")])
    bot_api.user_message(CHAT, f"/addsource weekly {feeds.url('/weekly.xml')} 1")
    wait_until(lambda: len(feeds.hits_for("/weekly.xml")) >= 3, what="the added source polled")

    polls = len(feeds.hits_for("/wire.xml"))
    wait_until(lambda: len(feeds.hits_for("/wire.xml")) >= polls + 2, what="more polls")
    assert daemon.stop() == 0
    assert [_alerted(bot_api, i) for i in range(8)] == [0, 0, 0, 1, 0, 0, 0, 0]
    assert "undated on a first fetch" in daemon.output()


def test_per_source_alert_max_age(tmp_path, feeds) -> None:
    now = datetime.now(UTC)
    feeds.set_feed("/weekly.xml", [_item(8, published=now - timedelta(days=3), site="weekly"),
                                   _item(9, published=now - timedelta(days=9), site="weekly")])
    config = write_config(tmp_path, [{"name": "weekly", "url": feeds.url("/weekly.xml"), "interval": 60,
                                      "alert_max_age": "7d"}], **FAST)
    proc = subprocess.run([sys.executable, "-m", "newswatch.cli", "crawl", "--once", "-c", str(config)],
                          cwd=ROOT, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    alerts = proc.stdout.split("sources:")[0]
    assert SUMMITS[8][0] in alerts and SUMMITS[9][0] not in alerts
    assert "1 too old to alert" in proc.stdout
