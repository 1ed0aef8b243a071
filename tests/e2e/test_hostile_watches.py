"""End to end: a watch rule written to be expensive holds up nobody, now or after a restart.

A chat that is not an admin sends `/watch x(a|b)(c|d)…(s|t)`, a rule of 51 characters that
stands for 59,049 words. It must get a plain refusal naming the limit, while another chat's
`/help`, `/healthz` and a matching story's alert go on as usual. The same rule stored in the
database (as an older version could have kept it) must not hold up a restarted daemon either.
The waits are generous (the machine running the suite is shared): they tell a daemon that
answers from one that is frozen for minutes, not a fast one from a slow one.
"""

from __future__ import annotations

import signal
import sqlite3
from datetime import UTC, datetime, timedelta

from tests.e2e.conftest import wait_until, write_config
from tests.e2e.test_bot_commands import Env
from tests.e2e.test_service import FAST, free_port, healthz
from tests.fakes.feed_server import FeedItem

ALICE = 2002  # writes the rule; not an admin
BOB = 3003
HOSTILE = "x(a|b)(c|d)(e|f)(g|h)(i|j)(k|l)(m|n)(o|p)(q|r)(s|t)"
PATIENCE = 15.0  # seconds: far more than any answer takes, far less than a frozen daemon's minutes
NOW = datetime.now(UTC).replace(microsecond=0)


FIRST = FeedItem(
    title="Trump and Kim Jong Un to hold second summit in Hanoi, North Korea says",
    link="https://wire.example.com/hanoi-summit", published=NOW - timedelta(minutes=30),
    description="North Korean leader Kim Jong Un and U.S. President Donald Trump will hold their second "
                "summit in Hanoi, Pyongyang's state media said.",
)
SECOND = FeedItem(  # another event: not folded into the first as a further report of it
    title="Seoul and Pyongyang agree on a summit at Panmunjom after the Metropole talks",
    link="https://wire.example.com/panmunjom-summit", published=NOW - timedelta(minutes=5),
    description="South Korean President Moon Jae-in and North Korean leader Kim Jong Un will meet at the "
                "border village, officials said after a week of talks at the Metropole.",
)


def _answers(port: int) -> bool:
    status, _ = healthz(port)  # urllib's own timeout (5 s) bounds the wait
    return status in (200, 503)


def _start(tmp_path, feeds, bot_api, daemon_factory) -> tuple[Env, int]:
    port = free_port()
    feeds.set_feed("/wire.xml", [])
    config = write_config(tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 1}],
                          api_url=f"{bot_api.url}/bot", http={"listen": f"127.0.0.1:{port}"}, **FAST)
    env = Env(feeds, bot_api, daemon_factory(config).start(), tmp_path / "newswatch.db")
    wait_until(lambda: bot_api.calls_to("getUpdates"), 30, what="the bot to start polling")
    env.ask(BOB, "/start", "Subscribed", timeout=PATIENCE)
    return env, port


def test_a_hostile_watch_holds_up_nobody(tmp_path, feeds, bot_api, daemon_factory) -> None:
    env, port = _start(tmp_path, feeds, bot_api, daemon_factory)
    alice_before, bob_before = len(bot_api.messages_for(ALICE)), len(bot_api.messages_for(BOB))
    bot_api.user_message(ALICE, f"/watch {HOSTILE}")
    bot_api.user_message(BOB, "/help")
    env.reply(BOB, bob_before, "newswatch", timeout=PATIENCE)
    refusal = env.reply(ALICE, alice_before, "cannot be used", timeout=PATIENCE)["visible"]
    assert "too many forms" in refusal and "59,049" in refusal and "at most 64" in refusal
    assert _answers(port)
    assert env.sql("SELECT COUNT(*) FROM watches")[0][0] == 0

    env.ask(ALICE, "/watch Metropole", "Watch 1 added", timeout=PATIENCE)
    env.publish(FIRST)
    wait_until(lambda: env.alerts(BOB, "second summit in Hanoi"), PATIENCE + 5, what="BOB's alert")
    assert env.daemon.stop(signal.SIGTERM, timeout=PATIENCE) == 0


def test_a_stored_hostile_watch_holds_up_no_restart(tmp_path, feeds, bot_api, daemon_factory) -> None:
    env, port = _start(tmp_path, feeds, bot_api, daemon_factory)
    env.ask(ALICE, "/watch Metropole", "Watch 1 added", timeout=PATIENCE)
    assert env.daemon.stop(signal.SIGTERM, timeout=PATIENCE) == 0
    # The rule as an older version could have stored it: the restarted daemon compiles every
    # stored watch, and must not stop answering for that one.
    with sqlite3.connect(tmp_path / "newswatch.db") as conn:
        conn.execute("INSERT INTO watches (chat_id, rule, created) VALUES (?, ?, ?)", (ALICE, HOSTILE, NOW.isoformat()))
    conn.close()
    polls = len(bot_api.calls_to("getUpdates"))
    env.daemon.start()
    wait_until(lambda: len(bot_api.calls_to("getUpdates")) > polls, 30, what="the restarted bot to poll")
    env.ask(BOB, "/help", "newswatch", timeout=PATIENCE)
    assert _answers(port)
    assert "1. Metropole" in env.ask(ALICE, "/watches", "Watches", timeout=PATIENCE)["visible"]

    env.publish(SECOND)  # the first story after the restart: every stored watch is needed now
    env.ask(BOB, "/help", "newswatch", timeout=PATIENCE)
    assert _answers(port)
    wait_until(lambda: env.alerts(BOB, "summit at Panmunjom"), PATIENCE + 5, what="BOB's alert after the restart")
    alert = wait_until(lambda: env.alerts(ALICE, "summit at Panmunjom"), PATIENCE + 5, what="ALICE's watch alert")[0]
    assert "#watch_Metropole" in alert["visible"]
    assert env.daemon.stop(signal.SIGTERM, timeout=PATIENCE) == 0
    output = env.daemon.output()
    assert "cannot be used and never matches" in output and "Traceback" not in output
