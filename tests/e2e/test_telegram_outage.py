"""Collecting never waits for Telegram: the real daemon, a local feed server and the fake Bot
API, unreachable from before the daemon starts.

Sources are polled and stories stored at once; /healthz stays 200 and says since when the
Bot API cannot be reached, as `newswatch stats` and the log do (once, not once per retry).
A story published during the outage, and one published after a restart during the outage,
each alert exactly once, in order, when the Bot API answers again. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import subprocess
import sys

from tests.e2e.conftest import ROOT, query, wait_until, write_config
from tests.e2e.test_freshness import SUMMITS, _item
from tests.e2e.test_service import free_port, healthz

CHAT = 1001
FAST = {"crawler": {"delay": 0, "autothrottle": False, "timeout": 5}}


def _stored(database, link: str) -> bool:
    return bool(query(database, "SELECT 1 FROM stories WHERE url = ?", link))


def _texts(bot_api) -> list[str]:
    return [m.get("text") or "" for m in bot_api.messages_for(CHAT)]


def test_outage_from_before_start_loses_and_repeats_nothing(tmp_path, database, feeds, bot_api, daemon_factory) -> None:
    port = free_port()
    feeds.set_feed("/wire.xml", [])
    config = write_config(tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "interval": 1}],
                          api_url=f"{bot_api.url}/bot", http={"listen": f"127.0.0.1:{port}"}, database=database, **FAST)
    db = database
    daemon = daemon_factory(config).start()
    bot_api.user_message(CHAT, "/start")
    wait_until(lambda: any("Subscribed" in t for t in _texts(bot_api)), what="the /start reply")
    assert daemon.stop() == 0

    bot_api.set_down(True)
    daemon.start()
    during = _item(0)
    feeds.set_feed("/wire.xml", [during])
    wait_until(lambda: _stored(db, during.link), 15, what="a story stored while Telegram is down")
    status, body = wait_until(lambda: (h := healthz(port))[0] and h, 15, what="/healthz")
    assert status == 200, body
    assert body["telegram"].startswith("unreachable since"), body
    stats = subprocess.run([sys.executable, "-m", "newswatch.cli", "stats", "-c", str(config)],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "Bot API cannot be reached since" in stats.stdout, stats.stdout

    assert daemon.stop() == 0  # a restart during the outage
    after_restart = _item(1)
    feeds.set_feed("/wire.xml", [after_restart, during])
    daemon.start()
    wait_until(lambda: _stored(db, after_restart.link), 15, what="a story stored after the restart")
    polls = len(feeds.hits_for("/wire.xml"))
    wait_until(lambda: len(feeds.hits_for("/wire.xml")) >= polls + 3, what="more polls during the outage")
    assert not any(SUMMITS[0][0] in t or SUMMITS[1][0] in t for t in _texts(bot_api))

    bot_api.set_down(False)
    wait_until(lambda: any(SUMMITS[1][0] in t for t in _texts(bot_api)), 60, what="both alerts once Telegram is back")
    status, body = wait_until(lambda: (h := healthz(port))[0] == 200 and h[1]["telegram"] == "reachable" and h, 15,
                              what="/healthz to say Telegram is reachable")
    polls = len(feeds.hits_for("/wire.xml"))
    wait_until(lambda: len(feeds.hits_for("/wire.xml")) >= polls + 3, what="more polls after the outage")
    assert daemon.stop() == 0

    alerts = [t for t in _texts(bot_api) if SUMMITS[0][0] in t or SUMMITS[1][0] in t]
    assert len(alerts) == 2 and SUMMITS[0][0] in alerts[0] and SUMMITS[1][0] in alerts[1], alerts
    third_run = (tmp_path / "daemon-3.err").read_text()
    assert third_run.count("cannot be reached") == 1, third_run[-3000:]
    assert third_run.count("answers again") == 1
