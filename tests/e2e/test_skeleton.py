"""End to end: local feed server + fake Bot API + the real daemon process.

A user sends /start, a wire feed publishes the seed story (Kim Jong Un in Beijing with Xi
ahead of a second Trump summit, sanctions relief on the table) and a G20 story; exactly one
alert arrives, tagged summit and sanctions. Re-publishing or restarting repeats nothing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tests.e2e.conftest import TOKEN, wait_until, write_config
from tests.fakes.feed_server import FeedItem

CHAT = 1001

SEED = FeedItem(
    title="Kim Jong Un arrives in Beijing for talks with Xi ahead of second Trump summit",
    link="https://wire.example.com/world/asia/kim-beijing-xi-visit",
    guid="wire-2019-0108-kim-beijing",
    description=(
        "North Korean leader Kim Jong Un arrived in Beijing by train on Tuesday for talks with "
        "Chinese President Xi Jinping, his fourth visit to China in less than a year, as Washington "
        "and Pyongyang prepare for a possible second summit between Kim and U.S. President Donald "
        "Trump. Analysts expect Kim to seek Beijing's backing for an easing of sanctions in return "
        "for steps toward denuclearisation."
    ),
    published=datetime.now(UTC) - timedelta(hours=2),
)

G20 = FeedItem(
    title="G20 leaders open summit in Rio de Janeiro with pledge on hunger and poverty",
    link="https://wire.example.com/world/americas/g20-rio-summit-opens",
    guid="wire-2024-1118-g20",
    description=(
        "Leaders of the Group of 20 major economies opened their annual summit in Rio de Janeiro on "
        "Monday, where host Brazil launched a global alliance against hunger and poverty and pressed "
        "for a tax on the super-rich."
    ),
    published=datetime.now(UTC) - timedelta(hours=3),
)


def _alerts(bot_api, needle: str) -> list[dict]:
    return [m for m in bot_api.messages_for(CHAT) if needle in (m.get("text") or "")]


def test_feed_to_telegram_alert_once(tmp_path, database, feeds, bot_api, daemon_factory) -> None:
    feeds.set_feed("/wire.xml", [G20])
    config = write_config(
        tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 1}],
        api_url=f"{bot_api.url}/bot", database=database,
    )
    daemon = daemon_factory(config).start()

    bot_api.user_message(CHAT, "/start")
    wait_until(lambda: _alerts(bot_api, "Subscribed"), what="the /start reply")
    commands = [params for method, params in bot_api.calls if method == "setMyCommands"]
    assert commands, "the command menu was not published"

    wait_until(lambda: len(feeds.hits_for("/wire.xml")) >= 2, what="two polls of the feed")
    feeds.set_feed("/wire.xml", [SEED, G20])
    alerts = wait_until(lambda: _alerts(bot_api, "Kim Jong Un arrives in Beijing"), what="the seed alert")
    assert len(alerts) == 1
    text = alerts[0]["text"]
    assert alerts[0]["parse_mode"] == "HTML"
    assert "#summit" in text and "#sanctions" in text
    assert "wire" in text  # the source

    # Unchanged feed: conditional GET gets 304.
    polls = len(feeds.hits_for("/wire.xml"))
    wait_until(lambda: len(feeds.hits_for("/wire.xml")) >= polls + 2, what="more polls")
    assert any(h.status == 304 for h in feeds.hits_for("/wire.xml")[polls:])
    assert any("If-None-Match" in h.headers for h in feeds.hits_for("/wire.xml")[polls:])

    # The same story again: identical, then with a new GUID and tracking parameters on the link.
    again = FeedItem(SEED.title, SEED.link + "?utm_source=rss&utm_medium=feed", SEED.description,
                     guid="wire-rewritten-guid-1", published=SEED.published + timedelta(hours=2))
    feeds.set_feed("/wire.xml", [again, SEED, G20])
    polls = len(feeds.hits_for("/wire.xml"))
    wait_until(lambda: len(feeds.hits_for("/wire.xml")) >= polls + 2, what="polls after re-publishing")

    assert daemon.stop() == 0
    daemon.start()
    polls = len(feeds.hits_for("/wire.xml"))
    wait_until(lambda: len(feeds.hits_for("/wire.xml")) >= polls + 2, what="polls after the restart")
    assert daemon.stop() == 0

    assert len(_alerts(bot_api, "Kim Jong Un arrives in Beijing")) == 1
    assert not _alerts(bot_api, "G20 leaders")
    output = daemon.output()
    assert TOKEN not in output
    assert not re.search(r"Traceback", output), output[-3000:]


def test_stop_unsubscribes(tmp_path, database, feeds, bot_api, daemon_factory) -> None:
    feeds.set_feed("/wire.xml", [G20])
    config = write_config(
        tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 1}],
        api_url=f"{bot_api.url}/bot", database=database,
    )
    daemon = daemon_factory(config).start()
    bot_api.user_message(CHAT, "/start")
    wait_until(lambda: _alerts(bot_api, "Subscribed"), what="the /start reply")
    bot_api.user_message(CHAT, "/stop")
    wait_until(lambda: _alerts(bot_api, "Unsubscribed"), what="the /stop reply")
    feeds.set_feed("/wire.xml", [SEED, G20])
    polls = len(feeds.hits_for("/wire.xml"))
    wait_until(lambda: len(feeds.hits_for("/wire.xml")) >= polls + 2, what="polls after /stop")
    assert daemon.stop() == 0
    assert not _alerts(bot_api, "Kim Jong Un arrives in Beijing")


def test_console_mode_without_token(tmp_path, feeds) -> None:
    import subprocess
    import sys

    from tests.e2e.conftest import ROOT

    feeds.set_feed("/wire.xml", [SEED, G20])
    config = write_config(tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 60}])
    env = {"PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "newswatch.cli", "crawl", "--once", "-c", str(config)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Kim Jong Un arrives in Beijing") >= 1
    assert "G20 leaders open summit" not in proc.stdout.split("sources:")[0]
    assert "#summit" in proc.stdout and "#sanctions" in proc.stdout
    assert "sources: 1  ok: 1" in proc.stdout
    # A second pass: 304, nothing new, no alert printed again.
    proc = subprocess.run([sys.executable, "-m", "newswatch.cli", "crawl", "--once", "-c", str(config)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "unchanged (304): 1" in proc.stdout
    assert "Kim Jong Un arrives in Beijing" not in proc.stdout
