"""Admin notices and broadcasts take the alerts' path, against the real daemon and the fake Bot API.

A notice that Telegram answers with 429 is retried from the outbox and arrives once; a
broadcast to a chat that has blocked the bot deactivates that chat through the same error
map, and its sender is told; a broadcast queued while the Bot API cannot be reached waits in
the outbox and is delivered once when it answers again.
"""

from __future__ import annotations

import sqlite3
import time

from tests.e2e.conftest import wait_until, write_config

ADMIN = 1001  # the admin in write_config
ALICE = 2002
NOTICE = "Source broken was disabled"


def _visible(bot_api, chat: int) -> list[str]:
    return [m.get("visible") or m.get("text") or "" for m in bot_api.messages_for(chat)]


def _attempts(bot_api, chat: int, needle: str) -> int:
    """sendMessage requests that reached the fake for `chat` with `needle` in the text, answered or not."""
    return sum(1 for c in bot_api.calls_to("sendMessage")
               if str(c.get("chat_id")) == str(chat) and needle in str(c.get("text", "")))


def _rows(db, query: str, *args) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [tuple(r) for r in conn.execute(query, args)]
    finally:
        conn.close()


def _start(bot_api, *chats: int) -> int:
    """Send /start in each chat and wait for its reply; the last update's id."""
    for chat in chats:
        update = bot_api.user_message(chat, "/start")
        wait_until(lambda chat=chat: any("Subscribed" in t for t in _visible(bot_api, chat)), what=f"/start in {chat}")
    return update["update_id"]


def test_admin_notice_is_retried_after_a_429_and_arrives_once(tmp_path, feeds, bot_api, daemon_factory) -> None:
    feeds.set("/broken.xml", b"oops", status=500, content_type="text/plain")
    config = write_config(
        tmp_path, [{"name": "broken", "url": feeds.url("/broken.xml"), "kind": "feed", "interval": 1}],
        api_url=f"{bot_api.url}/bot", crawler={"disable_after": 3, "failure_backoff_max": 1},
    )
    daemon = daemon_factory(config).start()
    _start(bot_api, ADMIN)
    bot_api.fail_next("sendMessage", 1, status=429, retry_after=1)  # the next send is the notice
    wait_until(lambda: any(NOTICE in t for t in _visible(bot_api, ADMIN)), timeout=40, what="the admin notice")
    time.sleep(2.5)  # a second copy would have come by now
    assert daemon.stop() == 0

    assert sum(NOTICE in t for t in _visible(bot_api, ADMIN)) == 1
    assert _attempts(bot_api, ADMIN, NOTICE) == 2, "the notice was not first refused with a 429"
    rows = _rows(tmp_path / "newswatch.db", "SELECT kind, state, chat_id FROM outbox WHERE kind = 'notice'")
    assert rows == [("notice", "sent", ADMIN)]
    assert "chat 1001: delivery postponed" in daemon.output()


def test_broadcast_to_a_chat_that_blocked_the_bot_deactivates_it(tmp_path, feeds, bot_api, daemon_factory) -> None:
    feeds.set_feed("/wire.xml", [])
    config = write_config(tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "interval": 1}],
                          api_url=f"{bot_api.url}/bot")
    daemon = daemon_factory(config).start()
    _start(bot_api, ADMIN, ALICE)
    bot_api.block_chat(ALICE)

    bot_api.user_message(ADMIN, "/broadcast Maintenance <tonight> & tomorrow")
    wait_until(lambda: any("Broadcast queued for 2 chats" in t for t in _visible(bot_api, ADMIN)),
               what="the broadcast acknowledged")
    report = wait_until(lambda: next((t for t in _visible(bot_api, ADMIN) if "Broadcast delivered to" in t), None),
                        what="the broadcast report")
    assert daemon.stop() == 0

    assert report.startswith("Broadcast delivered to 1 of 2 chats. 1 failed: 2002: Telegram: Forbidden"), report
    assert "Maintenance <tonight> & tomorrow" in _visible(bot_api, ADMIN)  # plain text, escaped on the way
    assert not bot_api.messages_for(ALICE)[1:]  # only the /start reply, from before the block
    db = tmp_path / "newswatch.db"
    active, reason = _rows(db, "SELECT active, inactive_reason FROM chats WHERE chat_id = ?", ALICE)[0]
    assert active == 0 and reason.startswith("Telegram: Forbidden"), reason
    assert _rows(db, "SELECT state FROM outbox WHERE chat_id = ? AND kind = 'notice'", ALICE) == [("dropped",)]


def test_broadcast_during_an_outage_is_delivered_once_when_telegram_answers(tmp_path, feeds, bot_api,
                                                                             daemon_factory) -> None:
    feeds.set_feed("/wire.xml", [])
    config = write_config(tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "interval": 1}],
                          telegram={"api_url": f"{bot_api.url}/bot", "poll_timeout": 20, "admins": [ADMIN]})
    daemon = daemon_factory(config).start()
    last_update = _start(bot_api, ADMIN, ALICE)
    # a poll that confirmed every update so far waits (poll_timeout 20) for the next one
    wait_until(lambda: int(bot_api.calls_to("getUpdates")[-1].get("offset") or 0) > last_update,
               what="a long poll in flight")

    bot_api.set_down(True)  # the poll in flight still brings the command; everything after it fails
    bot_api.user_message(ADMIN, "/broadcast Back in five minutes")
    wait_until(lambda: _attempts(bot_api, ALICE, "Back in five minutes"), 20, what="a send during the outage")
    time.sleep(3)
    assert "Back in five minutes" not in _visible(bot_api, ALICE)
    db = tmp_path / "newswatch.db"
    assert _rows(db, "SELECT state FROM outbox WHERE chat_id = ? AND kind = 'notice'", ALICE) == [("pending",)]

    bot_api.set_down(False)
    wait_until(lambda: any("Broadcast delivered to 2 of 2 chats" in t for t in _visible(bot_api, ADMIN)), 60,
               what="the broadcast report once Telegram answers")
    time.sleep(2)
    assert daemon.stop() == 0

    assert _visible(bot_api, ALICE).count("Back in five minutes") == 1
    assert _visible(bot_api, ADMIN).count("Back in five minutes") == 1
    assert sum("Broadcast delivered to" in t for t in _visible(bot_api, ADMIN)) == 1
    assert "cannot be reached" in daemon.output()
