"""End to end: every bot command typed as a user would, against the real daemon process.

One daemon serves the whole module (a local feed server, the fake Bot API, a config with
small topics of its own so that scores are predictable). Each test checks the reply and
the state the command changed, in the SQLite file or in what the daemon then does. The
last test restarts the daemon and checks that everything set before is still in force.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import TOKEN, DaemonProcess, query, wait_until
from tests.fakes.bot_api import DEFAULT_USER_ID, FakeBotAPI
from tests.fakes.feed_server import FeedItem, FeedServer

ADMIN = 1001
ALICE = 2002
BOB = 3003
DAVE = 5005          # settings only
ERIN = 6006          # kicked later
STRANGER = 4004      # not in allowed_chats
FORUM = -1001234567  # a supergroup with forum topics
CHANNEL = -1009876543
NEW_GROUP = -424242  # the bot is added here but nobody sends /start
OLD_GROUP = -515151  # a group that becomes a supergroup
UPGRADED = -1005151510
THREAD = 42

TOPICS = {
    "summit": {
        "description": "Summits with North Korea.",
        "threshold": 6,
        "groups": {"summit": {"weight": 3, "terms": ["summit(s)", "정상회담"]},
                   "korea": {"weight": 1, "terms": ["North Korea(n)", "Kim Jong Un", "북한", "김정은"]}},
        "require": ["korea"],
    },
    "sanctions": {
        "description": "Sanctions on North Korea.",
        "threshold": 6,
        "groups": {"sanction": {"weight": 3, "terms": ["sanction*", "제재"]},
                   "korea": {"weight": 1, "terms": ["North Korea(n)", "Kim Jong Un", "북한"]}},
        "require": ["korea"],
    },
    "north-korea": {
        "description": "North Korea as a main subject.",
        "threshold": 5,
        "groups": {"nk": {"weight": 3, "terms": ["North Korea(n)", "Pyongyang", "Kim Jong Un", "북한"]}},
    },
}

NOW = datetime.now(UTC).replace(microsecond=0)

SUMMIT_STORY = FeedItem(
    title="Kim Jong Un and Trump agree to hold a second summit",
    link="https://wire.example.com/kim-trump-second-summit",
    description="North Korean leader Kim Jong Un accepted an invitation to a second summit.",
    published=NOW - timedelta(hours=1),
)
WEAK_SUMMIT_STORY = FeedItem(  # summit 4.0 (text only): under the topic's 6, over a threshold of 3
    title="Diplomats gather in Geneva for a week of meetings",
    link="https://wire.example.com/geneva-week",
    description="Talk of a summit with North Korea continued in the corridors.",
    published=NOW - timedelta(minutes=50),
)
HANOI_STORY = FeedItem(  # no topic passes: only the Hanoi watch matches
    title="Hanoi readies the Metropole hotel for summit week",
    link="https://wire.example.com/hanoi-metropole",
    description="Vietnamese officials in Hanoi are closing roads around the Metropole hotel.",
    published=NOW - timedelta(minutes=40),
)
KAESONG_STORY = FeedItem(
    title="개성공단 입주기업 협회 총회 열려",
    link="https://wire.example.com/kaesong-assembly",
    description="개성공단 입주기업들이 서울에서 총회를 열었다.",
    published=NOW - timedelta(minutes=30),
)
OLDER_SUMMITS = [
    FeedItem(title=f"Summit talk {i}: Kim Jong Un weighs a summit offer", link=f"https://wire.example.com/old-{i}",
             description="North Korea considered the summit offer.", published=NOW - timedelta(days=d, hours=1))
    for i, d in enumerate((1, 2, 2, 4))
]
AFTER_RESTART = FeedItem(
    title="Hanoi summit venue confirmed at the Metropole",
    link="https://wire.example.com/hanoi-venue",
    description="The summit venue in Hanoi is the Metropole hotel.",
    published=NOW - timedelta(minutes=5),
)


@dataclass
class Env:
    feeds: FeedServer
    bot: FakeBotAPI
    daemon: DaemonProcess
    db: Path
    items: list[FeedItem] = field(default_factory=list)

    def publish(self, *items: FeedItem) -> None:
        self.items = [*items, *self.items]
        self.feeds.set_feed("/wire.xml", self.items)

    def ask(self, chat_id: int, text: str, expect: str, *, timeout: float = 10, **kwargs) -> dict:
        """Send `text` in `chat_id` and return the first later message there containing `expect`."""
        before = len(self.bot.messages_for(chat_id))
        self.bot.user_message(chat_id, text, **kwargs)
        return self.reply(chat_id, before, expect, timeout=timeout)

    def reply(self, chat_id: int, before: int, expect: str, *, timeout: float = 10) -> dict:
        def found():
            return next((m for m in self.bot.messages_for(chat_id)[before:] if expect in (m.get("visible") or "")), None)
        try:
            return wait_until(found, timeout, what=f"a message to {chat_id} containing {expect!r}")
        except AssertionError:
            got = [m.get("visible") for m in self.bot.messages_for(chat_id)[before:]]
            raise AssertionError(f"no message to {chat_id} containing {expect!r}; got {got}") from None

    def alerts(self, chat_id: int, needle: str) -> list[dict]:
        return [m for m in self.bot.messages_for(chat_id) if m["method"] == "sendMessage"
                and needle in (m.get("visible") or "")]

    def sql(self, query: str, *args) -> list[sqlite3.Row]:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(query, args).fetchall()
        finally:
            conn.close()

    def outbox_chats(self, link: str) -> set[int]:
        rows = self.sql("SELECT o.chat_id FROM outbox o JOIN stories s ON s.id = o.story_id WHERE s.url = ?", link)
        return {r[0] for r in rows}

    def stored(self, link: str) -> bool:
        return bool(self.sql("SELECT 1 FROM stories WHERE url = ?", link))


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("bot")
    with FeedServer() as feeds, FakeBotAPI(token=TOKEN) as bot:
        feeds.set_feed("/wire.xml", [])
        config = {
            "storage": {"path": "newswatch.db"},
            "telegram": {
                "api_url": f"{bot.url}/bot", "poll_timeout": 1, "admins": [ADMIN],
                "allowed_chats": [ALICE, BOB, DAVE, ERIN, FORUM, CHANNEL, NEW_GROUP, OLD_GROUP, UPGRADED],
                "allow_private_source_networks": ["127.0.0.0/8"],
            },
            "sources": [{"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 1}],
            "topics": TOPICS,
        }
        path = tmp / "newswatch.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), "utf-8")
        bot.set_member(FORUM, DEFAULT_USER_ID, "creator")      # who sends the group commands below
        bot.set_member(OLD_GROUP, DEFAULT_USER_ID, "administrator")
        daemon = DaemonProcess(path, token=TOKEN, log_dir=tmp).start()
        env = Env(feeds, bot, daemon, tmp / "newswatch.db")
        try:
            wait_until(lambda: bot.calls_to("getUpdates"), 30, what="the bot to start polling")
            yield env
        finally:
            if daemon.proc and daemon.proc.poll() is None:
                daemon.stop()
            output = daemon.output()
            assert TOKEN not in output, "the bot token reached the daemon's output"
            assert "Traceback" not in output, output[-4000:]


# -- menu and help -------------------------------------------------------------------------------

def test_menu_and_help(env: Env) -> None:
    public = {c["command"] for c in env.bot.commands()}
    assert {"start", "stop", "topics", "subscribe", "unsubscribe", "threshold", "mute", "unmute", "quiet",
            "digest", "timezone", "latest", "search", "status", "trend", "watch", "watches", "unwatch",
            "help"} <= public
    assert "broadcast" not in public
    admin = {c["command"] for c in env.bot.commands(scope={"type": "chat", "chat_id": ADMIN})}
    assert {"sources", "addsource", "disablesource", "enablesource", "broadcast"} <= admin

    text = env.ask(ALICE, "/help", "newswatch")["visible"]
    for command in ("/start", "/topics", "/threshold", "/quiet 23:00-07:00", "/digest off|hourly|daily HH:MM",
                    "/watch", "/unwatch", "/trend", "\"exact phrase\"", "OR", "-G20"):
        assert command in text, command
    assert "/broadcast" not in text
    assert "/broadcast" in env.ask(ADMIN, "/help", "newswatch")["visible"]


def test_a_plain_message_in_a_private_chat_points_to_help(env: Env) -> None:
    reply = env.ask(ALICE, "what is new on the summit?", "/help")["visible"]
    assert "commands" in reply
    before = len(env.bot.messages_for(FORUM))
    env.bot.user_message(FORUM, "good morning, desk", thread_id=THREAD)
    env.ask(FORUM, "/help", "newswatch", thread_id=THREAD)   # answered after the plain message was seen
    assert len(env.bot.messages_for(FORUM)) == before + 1, "a group's plain messages get no answer"


# -- subscribing ----------------------------------------------------------------------------------

def test_start_and_topic_buttons(env: Env) -> None:
    env.ask(ALICE, "/start", "Subscribed to all topics")
    env.ask(BOB, "/start", "Subscribed to all topics")
    rows = env.sql("SELECT topic FROM subscriptions WHERE chat_id = ? ORDER BY topic", ALICE)
    assert [r[0] for r in rows] == ["north-korea", "sanctions", "summit"]

    listing = env.ask(ALICE, "/topics", "Topics")
    buttons = [b["callback_data"] for row in listing["reply_markup"]["inline_keyboard"] for b in row]
    assert buttons == ["topic:summit", "topic:sanctions", "topic:north-korea"]

    edits = len(env.bot.edited)
    env.bot.callback_query(ALICE, "topic:sanctions", message_id=listing["message_id"])
    wait_until(lambda: any(a["text"] == "sanctions: off" for a in env.bot.answered_callbacks), 10,
               what="the button press answered")
    edited = wait_until(lambda: env.bot.edited[edits:], 10, what="the topics message updated")[-1]
    assert "▫️ sanctions" in [b["text"] for row in edited["reply_markup"]["inline_keyboard"] for b in row]
    assert not env.sql("SELECT 1 FROM subscriptions WHERE chat_id = ? AND topic = 'sanctions'", ALICE)

    env.bot.callback_query(ALICE, "topic:sanctions", message_id=listing["message_id"])
    wait_until(lambda: any(a["text"] == "sanctions: on" for a in env.bot.answered_callbacks), 10,
               what="the second press answered")
    wait_until(lambda: env.sql("SELECT 1 FROM subscriptions WHERE chat_id = ? AND topic = 'sanctions'", ALICE),
               5, what="sanctions subscribed again")


def test_subscribe_and_unsubscribe(env: Env) -> None:
    assert "Did you mean sanctions?" in env.ask(BOB, "/subscribe sanction", "no topic")["visible"]
    env.ask(BOB, "/unsubscribe sanctions", "Unsubscribed from sanctions")
    env.ask(BOB, "/unsubscribe north_korea", "Unsubscribed from north-korea")
    assert [r[0] for r in env.sql("SELECT topic FROM subscriptions WHERE chat_id = ?", BOB)] == ["summit"]
    env.ask(BOB, "/subscribe sanctions", "Subscribed to sanctions")
    env.ask(BOB, "/subscribe sanctions", "Already subscribed")
    env.ask(BOB, "/unsubscribe sanctions", "Unsubscribed from sanctions")


def test_threshold_changes_what_alerts(env: Env) -> None:
    # BOB follows summit only, ALICE everything with the topics' thresholds.
    reply = env.ask(BOB, "/threshold summit 50", "summit: alerts here now need a score of 50")
    assert "fewer" in reply["visible"]
    assert env.sql("SELECT threshold FROM subscriptions WHERE chat_id = ? AND topic = 'summit'", BOB)[0][0] == 50
    assert "not a score" in env.ask(BOB, "/threshold summit lots", "not a score")["visible"]
    env.ask(BOB, "/threshold sanctions 3", "does not follow sanctions")

    env.publish(SUMMIT_STORY)
    alert = wait_until(lambda: env.alerts(ALICE, SUMMIT_STORY.title), 20, what="ALICE's summit alert")[0]
    assert "#summit" in alert["visible"]
    assert BOB not in env.outbox_chats(SUMMIT_STORY.link)

    # Lowered below the topic's own threshold: a weaker story reaches BOB alone.
    env.ask(BOB, "/threshold summit 3", "summit: alerts here now need a score of 3")
    env.publish(WEAK_SUMMIT_STORY)
    wait_until(lambda: env.alerts(BOB, WEAK_SUMMIT_STORY.title), 20, what="BOB's weak-summit alert")
    assert env.outbox_chats(WEAK_SUMMIT_STORY.link) == {BOB}
    assert "back to the topic's threshold, 6" in env.ask(BOB, "/threshold summit default", "threshold")["visible"]
    assert env.sql("SELECT threshold FROM subscriptions WHERE chat_id = ? AND topic = 'summit'", BOB)[0][0] is None
    env.ask(BOB, "/threshold summit 7.5", "summit: alerts here now need a score of 7.5")


# -- watches -----------------------------------------------------------------------------------------

def test_watch_alerts_its_chat_alone(env: Env) -> None:
    reply = env.ask(ALICE, "/watch Hanoi summit", "Watch 1 added")
    assert "Hanoi AND summit" in reply["visible"]
    env.ask(BOB, "/watch 개성공단", "Watch 1 added")
    env.ask(ALICE, "/watch Kim -\"Kim Jong Un\"", "Watch 2 added")
    rows = env.sql("SELECT chat_id, rule FROM watches ORDER BY id")
    assert [(r[0], r[1]) for r in rows] == [(ALICE, "Hanoi summit"), (BOB, "개성공단"), (ALICE, 'Kim -"Kim Jong Un"')]

    env.publish(HANOI_STORY, KAESONG_STORY)
    alert = wait_until(lambda: env.alerts(ALICE, "Hanoi readies"), 20, what="ALICE's watch alert")[0]
    assert "#watch_Hanoi_summit" in alert["visible"]
    wait_until(lambda: env.alerts(BOB, "개성공단 입주기업"), 20, what="BOB's watch alert")
    assert env.outbox_chats(HANOI_STORY.link) == {ALICE}
    assert env.outbox_chats(KAESONG_STORY.link) == {BOB}

    listing = env.ask(ALICE, "/watches", "Watches")["visible"]
    assert "1. Hanoi summit" in listing and '2. Kim -"Kim Jong Un"' in listing
    env.ask(ALICE, "/unwatch 5", "There is no watch 5")
    env.ask(ALICE, "/unwatch 2", "Removed watch 2")
    assert [r[0] for r in env.sql("SELECT rule FROM watches WHERE chat_id = ?", ALICE)] == ["Hanoi summit"]


@pytest.mark.parametrize(("rule", "why"), [
    ('"Hanoi summit', "a quotation mark is not closed"),
    ("re:.*", "regular expressions (re:) are not allowed"),
    ("-G20", "the rule only excludes"),
    ("summit OR", "the rule ends with OR"),
    ("ab*", "ab*"),
])
def test_bad_watch_rule_gets_a_clear_reply(env: Env, rule: str, why: str) -> None:
    before = env.sql("SELECT COUNT(*) FROM watches")[0][0]
    reply = env.ask(DAVE, f"/watch {rule}", "cannot be used")["visible"]
    assert why in reply and "Examples:" in reply
    assert env.sql("SELECT COUNT(*) FROM watches")[0][0] == before


# -- timing settings ------------------------------------------------------------------------------------

def test_settings_commands(env: Env) -> None:
    env.ask(DAVE, "/mute 1h", "no subscriptions yet")
    env.ask(DAVE, "/start", "Subscribed")
    env.ask(DAVE, "/timezone seoul", "Time zone set to Asia/Seoul")
    env.ask(DAVE, "/timezone Mars/Olympus", "not a time zone")

    reply = env.ask(DAVE, "/mute 2h", "Muted for 2h")
    assert "KST" in reply["visible"]
    until = datetime.fromisoformat(env.sql("SELECT muted_until FROM chats WHERE chat_id = ?", DAVE)[0][0])
    assert abs((until - datetime.now(UTC)) - timedelta(hours=2)) < timedelta(minutes=1)
    env.ask(DAVE, "/mute forever", "not a duration")
    env.ask(DAVE, "/unmute", "Unmuted")
    assert env.sql("SELECT muted_until FROM chats WHERE chat_id = ?", DAVE)[0][0] is None

    reply = env.ask(DAVE, "/quiet 23:00-07:00 Asia/Tokyo", "Quiet hours: 23:00–07:00 (Asia/Tokyo)")
    assert "This chat's time zone is now Asia/Tokyo (it was Asia/Seoul)" in reply["visible"]
    row = env.sql("SELECT quiet_from, quiet_to, timezone FROM chats WHERE chat_id = ?", DAVE)[0]
    assert tuple(row) == ("23:00", "07:00", "Asia/Tokyo")
    assert "time zone is now" not in env.ask(DAVE, "/quiet 23:00-07:00 Asia/Tokyo", "Quiet hours")["visible"]
    env.ask(DAVE, "/quiet 25:00-99:00", "the hour 25 is out of range")

    env.ask(DAVE, "/digest daily 08:30", "Digest: daily at 08:30 (Asia/Tokyo)")
    assert tuple(env.sql("SELECT digest, digest_at FROM chats WHERE chat_id = ?", DAVE)[0]) == ("daily", "08:30")
    env.ask(DAVE, "/digest weekly", "not a digest mode")
    env.ask(DAVE, "/digest hourly", "Digest: hourly")
    assert env.sql("SELECT digest FROM chats WHERE chat_id = ?", DAVE)[0][0] == "hourly"

    settings = env.ask(DAVE, "/settings", "This chat")["visible"]
    assert "Time zone: Asia/Tokyo" in settings and "23:00–07:00" in settings and "hourly" in settings


# -- looking back -------------------------------------------------------------------------------------

def test_latest_search_and_status(env: Env) -> None:
    wait_until(lambda: env.stored(KAESONG_STORY.link), 20, what="the stories stored")
    latest = env.ask(ALICE, "/latest summit", "Latest matched stories")["visible"]
    assert SUMMIT_STORY.title in latest and "#summit" in latest
    assert HANOI_STORY.title not in latest

    found = env.ask(ALICE, "/search hanoi metropole", "Stories with")["visible"]
    assert HANOI_STORY.title in found and SUMMIT_STORY.title not in found
    assert KAESONG_STORY.title in env.ask(ALICE, "/search 개성공단", "Stories with")["visible"]
    assert KAESONG_STORY.title in env.ask(ALICE, "/search 총회", "Stories with")["visible"]  # two characters: LIKE
    env.ask(ALICE, "/search zyzzyva", "No stored story contains zyzzyva")

    status = env.ask(ALICE, "/status", "Status")["visible"]
    assert "Sources: 1 polled — 1 healthy, 0 failing" in status
    assert re.search(r"Alert queue: \d+ waiting", status)
    assert "Last fetch:" in status and "never" not in status


def test_trend_sends_a_png(env: Env) -> None:
    env.publish(*OLDER_SUMMITS)
    wait_until(lambda: all(env.stored(s.link) for s in OLDER_SUMMITS), 20, what="older stories stored")
    wait_until(lambda: len(env.sql("SELECT 1 FROM matches WHERE topic = 'summit'")) >= 5, 20,
               what="older stories matched")
    before = len(env.bot.messages_for(ALICE))
    env.bot.user_message(ALICE, "/trend summit 7")
    photo = wait_until(lambda: [m for m in env.bot.messages_for(ALICE)[before:] if m["method"] == "sendPhoto"], 30,
                       what="the trend chart")[0]
    data = photo["photo"]
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (800, 400) and len(data) > 5000
    assert "#summit" in photo["caption"] and "last 7 days" in photo["caption"]
    assert int(re.search(r"#summit (\d+)", photo["caption"]).group(1)) >= 5
    env.ask(ALICE, "/trend summit 500", "from 1 to 90")


# -- admin ---------------------------------------------------------------------------------------------

def test_admin_commands_refused_for_others(env: Env) -> None:
    for command in ("/sources", "/addsource x http://example.com/feed", "/disablesource wire", "/broadcast hi"):
        name = command.split()[0]
        env.ask(ALICE, command, f"Sorry, {name} is only for the bot's administrators")
    assert not env.sql("SELECT 1 FROM runtime_sources")


def test_admin_sources_add_disable_broadcast(env: Env) -> None:
    wait_until(lambda: env.sql("SELECT 1 FROM fetch_state WHERE source = 'wire' AND last_success IS NOT NULL"), 20,
               what="the first poll of wire")
    listing = env.ask(ADMIN, "/sources", "Sources")["visible"]
    assert "✅ wire every 1s" in listing

    refused = env.ask(ADMIN, "/addsource meta http://169.254.169.254/latest/feed.xml", "Source not added")["visible"]
    assert "link-local" in refused and "allow_private_source_networks" in refused
    env.ask(ADMIN, "/addsource lan http://10.1.2.3/feed.xml", "private address")
    env.ask(ADMIN, "/addsource bad ftp://example.com/feed.xml", "http")
    env.ask(ADMIN, "/addsource wire http://example.com/other.xml", "already a source named wire")

    env.feeds.set_feed("/extra.xml", [])
    env.ask(ADMIN, f"/addsource extra {env.feeds.url('/extra.xml')} 1", "Added source extra")
    wait_until(lambda: len(env.feeds.hits_for("/extra.xml")) >= 2, 20, what="the new source polled")
    row = env.sql("SELECT url, interval, enabled FROM runtime_sources WHERE name = 'extra'")[0]
    assert tuple(row) == (env.feeds.url("/extra.xml"), 1, 1)
    assert "extra every 1s · added from Telegram" in env.ask(ADMIN, "/sources", "Sources")["visible"]

    env.ask(ADMIN, "/disablesource extra", "extra disabled")
    assert env.sql("SELECT enabled FROM runtime_sources WHERE name = 'extra'")[0][0] == 0
    time.sleep(1.5)
    polls = len(env.feeds.hits_for("/extra.xml"))
    time.sleep(2.5)
    assert len(env.feeds.hits_for("/extra.xml")) == polls, "a disabled source was still polled"
    assert "⏸ extra" in env.ask(ADMIN, "/sources", "Sources")["visible"]

    env.ask(ADMIN, "/broadcast Maintenance at 22:00 UTC", "Broadcast queued for")
    env.reply(ADMIN, 0, "Broadcast delivered to")
    for chat in (ALICE, BOB, DAVE):
        assert any(m["visible"] == "Maintenance at 22:00 UTC" for m in env.bot.messages_for(chat)), chat


# -- who may use the bot, and where ----------------------------------------------------------------------

def test_allowed_chats_refuses_others(env: Env) -> None:
    reply = env.ask(STRANGER, "/start", "Sorry, this newswatch bot")["visible"]
    assert str(STRANGER) in reply
    env.bot.callback_query(STRANGER, "topic:summit")
    wait_until(lambda: any("Sorry" in (a["text"] or "") for a in env.bot.answered_callbacks), 10,
               what="the refused button press answered")
    assert not env.sql("SELECT 1 FROM chats WHERE chat_id = ?", STRANGER)


def test_forum_group_uses_its_thread(env: Env) -> None:
    reply = env.ask(FORUM, "/start@newswatch_test_bot", "Subscribed", thread_id=THREAD, title="Korea desk")
    assert reply["message_thread_id"] == THREAD
    assert "in this topic" in reply["visible"]
    row = env.sql("SELECT kind, thread_id, title FROM chats WHERE chat_id = ?", FORUM)[0]
    assert tuple(row) == ("supergroup", THREAD, "Korea desk")
    env.ask(FORUM, "/unsubscribe north-korea", "Unsubscribed", thread_id=THREAD)

    story = FeedItem(title="Kim Jong Un proposes a summit in Vladivostok",
                     link="https://wire.example.com/vladivostok-summit",
                     description="North Korea said Kim Jong Un wants a summit.", published=NOW)
    env.publish(story)
    alert = wait_until(lambda: env.alerts(FORUM, "Vladivostok"), 20, what="the forum alert")[0]
    assert alert["message_thread_id"] == THREAD


def test_channel_and_membership_changes(env: Env) -> None:
    before = len(env.bot.messages_for(CHANNEL))
    env.bot.channel_post(CHANNEL, "/start", title="NK wire")
    env.reply(CHANNEL, before, "Subscribed to all topics")
    assert tuple(env.sql("SELECT kind, active FROM chats WHERE chat_id = ?", CHANNEL)[0]) == ("channel", 1)
    before = len(env.bot.messages_for(CHANNEL))
    env.bot.channel_post(CHANNEL, "/topics")
    topics = env.reply(CHANNEL, before, "Topics")
    assert topics["reply_markup"] is None  # any reader could press buttons in a channel
    before = len(env.bot.messages_for(CHANNEL))
    env.bot.channel_post(CHANNEL, "/unsubscribe sanctions")
    env.reply(CHANNEL, before, "Unsubscribed from sanctions")

    env.ask(ERIN, "/start", "Subscribed")
    env.bot.chat_member_update(ERIN, new_status="kicked", old_status="member")
    wait_until(lambda: env.sql("SELECT active FROM chats WHERE chat_id = ?", ERIN)[0][0] == 0, 10,
               what="the blocked chat deactivated")
    assert "blocked" in env.sql("SELECT inactive_reason FROM chats WHERE chat_id = ?", ERIN)[0][0]

    env.bot.chat_member_update(NEW_GROUP, new_status="member", old_status="left", chat_type="group")
    env.ask(ALICE, "/watches", "Watches")  # the update above has been handled by now
    assert not env.sql("SELECT 1 FROM chats WHERE chat_id = ?", NEW_GROUP)
    assert not env.bot.messages_for(NEW_GROUP)

    env.ask(OLD_GROUP, "/start", "Subscribed", chat_type="group")
    env.ask(OLD_GROUP, "/watch Vladivostok", "Watch 1 added", chat_type="group")
    env.ask(OLD_GROUP, "/threshold summit 9", "score of 9", chat_type="group")
    env.bot.migrate_chat(OLD_GROUP, UPGRADED, notify=True)
    wait_until(lambda: env.sql("SELECT kind FROM chats WHERE chat_id = ?", UPGRADED), 10, what="the chat moved")
    assert not env.sql("SELECT 1 FROM chats WHERE chat_id = ?", OLD_GROUP)
    assert [r[0] for r in env.sql("SELECT rule FROM watches WHERE chat_id = ?", UPGRADED)] == ["Vladivostok"]
    assert env.sql("SELECT threshold FROM subscriptions WHERE chat_id = ? AND topic = 'summit'", UPGRADED)[0][0] == 9


# -- restart ---------------------------------------------------------------------------------------------

def test_state_survives_a_restart(env: Env) -> None:
    assert env.daemon.stop() == 0
    env.daemon.start()
    wait_until(lambda: len(env.bot.calls_to("setMyCommands")) >= 4, 30, what="the restarted bot")

    settings = env.ask(DAVE, "/settings", "This chat")["visible"]
    assert "Time zone: Asia/Tokyo" in settings and "23:00–07:00" in settings and "Digest: hourly" in settings
    assert "summit: 7.5 (yours; topic 6)" in env.ask(BOB, "/threshold", "Thresholds here")["visible"]
    assert env.sql("SELECT thread_id FROM chats WHERE chat_id = ?", FORUM)[0][0] == THREAD
    assert "1. Hanoi summit" in env.ask(ALICE, "/watches", "Watches")["visible"]
    assert "⏸ extra" in env.ask(ADMIN, "/sources", "Sources")["visible"]

    polls = len(env.feeds.hits_for("/extra.xml"))
    env.publish(AFTER_RESTART)
    alert = wait_until(lambda: env.alerts(ALICE, "Hanoi summit venue"), 20, what="the watch alert after restart")
    assert "#watch_Hanoi_summit" in alert[0]["visible"]
    assert env.outbox_chats(AFTER_RESTART.link) >= {ALICE}
    assert BOB not in env.outbox_chats(AFTER_RESTART.link)
    assert len(env.feeds.hits_for("/extra.xml")) == polls, "a disabled source was polled after the restart"
    assert env.sql("SELECT active FROM chats WHERE chat_id = ?", ERIN)[0][0] == 0


def test_latest_and_search_on_postgresql(tmp_path, postgres_url) -> None:
    """/latest and /search read PostgreSQL as they read SQLite (search by its pg_trgm indexes,
    and LIKE for terms of two characters)."""
    with FeedServer() as feeds, FakeBotAPI(token=TOKEN) as bot:
        feeds.set_feed("/wire.xml", [KAESONG_STORY, HANOI_STORY, SUMMIT_STORY])
        config = {
            "storage": {"url": postgres_url},
            "telegram": {"api_url": f"{bot.url}/bot", "poll_timeout": 1, "admins": [ADMIN], "allowed_chats": [ALICE]},
            "sources": [{"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 1}],
            "topics": TOPICS,
        }
        path = tmp_path / "newswatch.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), "utf-8")
        daemon = DaemonProcess(path, token=TOKEN, log_dir=tmp_path).start()
        env = Env(feeds, bot, daemon, tmp_path / "unused.db")
        try:
            env.ask(ALICE, "/start", "Subscribed", timeout=30)
            wait_until(lambda: query(postgres_url, "SELECT 1 FROM stories WHERE url = ?", KAESONG_STORY.link), 30,
                       what="the stories stored")
            wait_until(lambda: query(postgres_url, "SELECT 1 FROM matches m JOIN stories s ON s.id = m.story_id "
                                                   "WHERE s.url = ? AND m.topic = 'summit'", SUMMIT_STORY.link), 30,
                       what="the summit story matched")
            latest = env.ask(ALICE, "/latest summit", "Latest matched stories")["visible"]
            assert SUMMIT_STORY.title in latest and "#summit" in latest
            assert HANOI_STORY.title not in latest
            found = env.ask(ALICE, "/search hanoi metropole", "Stories with")["visible"]
            assert HANOI_STORY.title in found and SUMMIT_STORY.title not in found
            assert KAESONG_STORY.title in env.ask(ALICE, "/search 개성공단", "Stories with")["visible"]
            assert KAESONG_STORY.title in env.ask(ALICE, "/search 총회", "Stories with")["visible"]  # LIKE
            env.ask(ALICE, "/search zyzzyva", "No stored story contains zyzzyva")
            assert daemon.stop() == 0
        finally:
            if daemon.proc and daemon.proc.poll() is None:
                daemon.stop()
        output = daemon.output()
        assert TOKEN not in output and "Traceback" not in output, output[-4000:]
