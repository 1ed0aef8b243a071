"""End to end: who may change a group's alerts and who may run admin commands.

One daemon, the fake Bot API answering getChatMember as Telegram would. In the group,
OWNER created it, MOD administers it and MEMBER is an ordinary member. `telegram.admins`
lists the person ADMIN and, the old way, the chat ADMIN_GROUP, whose members get no admin
rights from it. The last tests restart the daemon with an admin limited to some chats and
with `group_settings: everyone`; the very last drives `Permissions` in-process with a manual
clock to show how long a group administrator's status is remembered.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from newswatch.alerts.config import TelegramConfig
from newswatch.alerts.bot.permissions import MEMBER_TTL, Permissions
from newswatch.alerts.deliver.telegram import build_application
from newswatch.crawler.clock import ManualClock
from tests.e2e.conftest import TOKEN, DaemonProcess, wait_until
from tests.fakes.bot_api import FakeBotAPI

ADMIN = 1001          # a person listed in telegram.admins
ALICE = 2002          # a subscriber, no rights
DESK_EDITOR = 2003    # listed later with chats: [GROUP] only
GROUP = -1007770001   # a supergroup
ADMIN_GROUP = -1008880001  # listed in telegram.admins the old way
OWNER, MOD, MEMBER = 7001, 7002, 7003
NEWS_CHANNEL = -1009990001
ONLY_ADMINS = "Only this group's administrators can change its settings."

TOPICS = {
    "summit": {"description": "Summits.", "threshold": 3, "groups": {"s": {"weight": 3, "terms": ["summit"]}}},
    "sanctions": {"description": "Sanctions.", "threshold": 3, "groups": {"s": {"weight": 3, "terms": ["sanction*"]}}},
}


@dataclass
class Env:
    bot: FakeBotAPI
    daemon: DaemonProcess
    path: Path
    config: dict

    def ask(self, chat_id: int, text: str, expect: str, *, timeout: float = 10, **kwargs) -> str:
        before = len(self.bot.messages_for(chat_id))
        self.bot.user_message(chat_id, text, **kwargs)

        def found():
            return next((m["visible"] for m in self.bot.messages_for(chat_id)[before:]
                         if expect in (m.get("visible") or "")), None)
        try:
            return wait_until(found, timeout, what=f"{expect!r} in {chat_id}")
        except AssertionError:
            got = [m.get("visible") for m in self.bot.messages_for(chat_id)[before:]]
            raise AssertionError(f"no message to {chat_id} containing {expect!r}; got {got}") from None

    def press(self, chat_id: int, data: str, user_id: int) -> dict:
        answered = len(self.bot.answered_callbacks)
        self.bot.callback_query(chat_id, data, user_id=user_id)
        return wait_until(lambda: self.bot.answered_callbacks[answered:], 10, what="the button press answered")[0]

    def sql(self, query: str, *args) -> list[tuple]:
        conn = sqlite3.connect(f"file:{self.path.parent / 'newswatch.db'}?mode=ro", uri=True, timeout=10)
        try:
            return [tuple(r) for r in conn.execute(query, args).fetchall()]
        finally:
            conn.close()

    def restart(self, **telegram) -> None:
        assert self.daemon.stop() == 0
        self.config["telegram"].update(telegram)
        self.path.write_text(yaml.safe_dump(self.config, sort_keys=False), "utf-8")
        calls = len(self.bot.calls_to("getUpdates"))
        self.daemon.start()
        wait_until(lambda: len(self.bot.calls_to("getUpdates")) > calls, 30, what="the restarted bot polling")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("permissions")
    with FakeBotAPI(token=TOKEN) as bot:
        for user, status in ((OWNER, "creator"), (MOD, "administrator"), (MEMBER, "member")):
            bot.set_member(GROUP, user, status)
        bot.set_member(ADMIN_GROUP, MEMBER, "member")
        config = {
            "storage": {"path": "newswatch.db"},
            # the module sends a group many more replies than Telegram's 20 a minute: no pacing here
            "telegram": {"api_url": f"{bot.url}/bot", "poll_timeout": 1, "admins": [ADMIN, ADMIN_GROUP],
                         "group_per_minute": 10000},
            "sources": [],
            "topics": TOPICS,
        }
        path = tmp / "newswatch.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")
        daemon = DaemonProcess(path, token=TOKEN, log_dir=tmp).start()
        try:
            wait_until(lambda: bot.calls_to("getUpdates"), 30, what="the bot to start polling")
            yield Env(bot, daemon, path, config)
        finally:
            daemon.finish()


# -- a group's settings ---------------------------------------------------------------------------

def test_a_member_cannot_start_a_group_an_administrator_can(env: Env) -> None:
    assert env.ask(GROUP, "/start", ONLY_ADMINS, user_id=MEMBER) == ONLY_ADMINS
    assert not env.sql("SELECT 1 FROM chats WHERE chat_id = ?", GROUP)
    env.ask(GROUP, "/start", "Subscribed to all topics", user_id=OWNER)
    assert env.sql("SELECT topic FROM subscriptions WHERE chat_id = ? ORDER BY topic", GROUP) == [
        ("sanctions",), ("summit",)]


@pytest.mark.parametrize("command", [
    "/stop", "/mute 365d", "/mute 1h", "/unmute", "/threshold summit 1000", "/quiet 23:00-07:00",
    "/quiet off", "/digest daily 08:00", "/timezone Asia/Seoul", "/subscribe all", "/unsubscribe summit",
    "/watch Hanoi", "/unwatch 1",
])
def test_a_member_cannot_change_the_group(env: Env, command: str) -> None:
    chats_before = env.sql("SELECT * FROM chats WHERE chat_id = ?", GROUP)
    subs_before = env.sql("SELECT * FROM subscriptions WHERE chat_id = ? ORDER BY topic", GROUP)
    env.ask(GROUP, command, ONLY_ADMINS, user_id=MEMBER)
    assert env.sql("SELECT * FROM chats WHERE chat_id = ?", GROUP) == chats_before
    assert env.sql("SELECT * FROM subscriptions WHERE chat_id = ? ORDER BY topic", GROUP) == subs_before
    assert not env.sql("SELECT 1 FROM watches WHERE chat_id = ?", GROUP)


def test_members_can_still_read(env: Env) -> None:
    env.ask(GROUP, "/topics", "Topics", user_id=MEMBER)
    env.ask(GROUP, "/settings", "This chat", user_id=MEMBER)
    env.ask(GROUP, "/watches", "No watches here yet", user_id=MEMBER)
    env.ask(GROUP, "/threshold", "Thresholds here", user_id=MEMBER)
    env.ask(GROUP, "/quiet", "Quiet hours: off", user_id=MEMBER)
    env.ask(GROUP, "/timezone", "This chat's time zone is UTC", user_id=MEMBER)
    env.ask(GROUP, "/status", "Status", user_id=MEMBER)
    env.ask(GROUP, "/help", "newswatch", user_id=MEMBER)


def test_administrators_change_the_group(env: Env) -> None:
    env.ask(GROUP, "/threshold summit 9", "score of 9", user_id=MOD)
    env.ask(GROUP, "/mute 2h", "Muted for 2h", user_id=OWNER)
    env.ask(GROUP, "/unmute", "Unmuted", user_id=MOD)
    env.ask(GROUP, "/watch Hanoi", "Watch 1 added", user_id=MOD)
    assert env.sql("SELECT threshold FROM subscriptions WHERE chat_id = ? AND topic = 'summit'", GROUP) == [(9,)]
    assert env.sql("SELECT rule FROM watches WHERE chat_id = ?", GROUP) == [("Hanoi",)]


def test_topic_buttons_are_for_administrators(env: Env) -> None:
    env.ask(GROUP, "/topics", "Topics", user_id=MEMBER)
    edits = len(env.bot.edited)
    answer = env.press(GROUP, "topic:sanctions", MEMBER)
    assert answer["text"] == ONLY_ADMINS and answer["show_alert"]
    assert env.sql("SELECT 1 FROM subscriptions WHERE chat_id = ? AND topic = 'sanctions'", GROUP)
    assert len(env.bot.edited) == edits

    assert env.press(GROUP, "topic:sanctions", MOD)["text"] == "sanctions: off"
    assert not env.sql("SELECT 1 FROM subscriptions WHERE chat_id = ? AND topic = 'sanctions'", GROUP)
    wait_until(lambda: env.bot.edited[edits:], 10, what="the topics message updated")


def test_an_anonymous_administrator_counts_a_channel_speaking_in_the_group_does_not(env: Env) -> None:
    env.ask(GROUP, "/subscribe sanctions", "Subscribed to sanctions", sender_chat=GROUP)
    env.ask(GROUP, "/unsubscribe sanctions", ONLY_ADMINS, sender_chat=NEWS_CHANNEL)
    assert env.sql("SELECT 1 FROM subscriptions WHERE chat_id = ? AND topic = 'sanctions'", GROUP)


def test_the_administrators_are_asked_of_telegram_once_in_a_while(env: Env) -> None:
    asked = [c for c in env.bot.calls_to("getChatMember") if int(c["chat_id"]) == GROUP]
    assert {int(c["user_id"]) for c in asked} == {OWNER, MOD, MEMBER}
    assert len(asked) == 3, "each person's status is remembered for a while"


def test_a_channel_is_changed_by_its_posts(env: Env) -> None:
    before = len(env.bot.messages_for(NEWS_CHANNEL))
    env.bot.channel_post(NEWS_CHANNEL, "/start")
    wait_until(lambda: any("Subscribed" in (m.get("visible") or "")
                           for m in env.bot.messages_for(NEWS_CHANNEL)[before:]), 10, what="the channel started")


def test_a_private_chat_changes_its_own_settings(env: Env) -> None:
    env.ask(ALICE, "/start", "Subscribed to all topics")
    env.ask(ALICE, "/mute 1h", "Muted for 1h")
    env.ask(ALICE, "/watch Hanoi", "Watch 1 added")
    assert "This chat keeps its 1 watch for then." in env.ask(ALICE, "/stop", "Unsubscribed")
    env.ask(ALICE, "/start", "Subscribed to all topics")


# -- admin commands --------------------------------------------------------------------------------

def test_a_chat_listed_as_admin_gives_its_members_no_rights(env: Env) -> None:
    for command in ("/broadcast hello from a member", "/disablesource wire", "/enablesource wire", "/sources"):
        name = command.split()[0]
        env.ask(ADMIN_GROUP, command, f"Sorry, {name} is only for the bot's administrators", user_id=MEMBER)
    assert not any(m["visible"] == "hello from a member" for m in env.bot.messages_for(ALICE))


def test_admin_commands_need_a_listed_person(env: Env) -> None:
    env.ask(ALICE, "/broadcast hi", "Sorry, /broadcast is only for the bot's administrators")
    env.ask(GROUP, "/sources", "Sorry, /sources is only for the bot's administrators", user_id=OWNER)
    env.ask(GROUP, "/sources", "Sorry, /sources is only for the bot's administrators", sender_chat=GROUP)
    assert "/broadcast" not in env.ask(GROUP, "/help", "newswatch", user_id=OWNER)


def test_a_listed_admin_broadcasts_from_a_private_chat_and_a_group(env: Env) -> None:
    env.ask(ADMIN, "/broadcast Maintenance at 22:00 UTC", "Broadcast queued for")
    env.ask(ADMIN, "/help", "/broadcast")
    wait_until(lambda: any(m["visible"] == "Maintenance at 22:00 UTC" for m in env.bot.messages_for(ALICE)), 10,
               what="the broadcast to ALICE")
    env.ask(GROUP, "/sources", "Sources", user_id=ADMIN)  # an entry without chats acts anywhere


def test_an_admin_limited_to_some_chats(env: Env) -> None:
    env.restart(admins=[ADMIN, {"user": DESK_EDITOR, "chats": [GROUP]}])
    env.ask(GROUP, "/sources", "Sources", user_id=DESK_EDITOR)
    env.ask(DESK_EDITOR, "/sources", "Sources")
    env.ask(ADMIN_GROUP, "/sources", "Sorry, /sources is only for the bot's administrators", user_id=DESK_EDITOR)
    menu = env.bot.commands(scope={"type": "chat_member", "chat_id": GROUP, "user_id": DESK_EDITOR})
    assert "broadcast" in {c["command"] for c in menu}


def test_group_settings_everyone(env: Env) -> None:
    env.ask(GROUP, "/mute 1h", ONLY_ADMINS, user_id=MEMBER)
    env.restart(group_settings="everyone")
    env.ask(GROUP, "/mute 1h", "Muted for 1h", user_id=MEMBER)
    env.ask(GROUP, "/broadcast hi", "Sorry, /broadcast is only for the bot's administrators", user_id=MEMBER)


# -- the memory of who administers a group -----------------------------------------------------------

def test_a_promotion_is_seen_once_the_remembered_status_expires() -> None:
    async def run(fake: FakeBotAPI) -> list[bool]:
        clock = ManualClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
        config = TelegramConfig(api_url=fake.api_base, admins=[ADMIN])
        permissions = Permissions(config, clock)
        app = build_application(fake.token, config)
        await app.initialize()
        try:
            seen = [await permissions.is_group_admin(app.bot, GROUP, MEMBER)]
            fake.set_member(GROUP, MEMBER, "administrator")
            clock.advance(MEMBER_TTL - timedelta(seconds=1))
            seen.append(await permissions.is_group_admin(app.bot, GROUP, MEMBER))
            clock.advance(timedelta(seconds=2))
            seen.append(await permissions.is_group_admin(app.bot, GROUP, MEMBER))
            fake.set_member(GROUP, MEMBER, "left")
            clock.advance(MEMBER_TTL)
            seen.append(await permissions.is_group_admin(app.bot, GROUP, MEMBER))
            return seen
        finally:
            await app.shutdown()

    with FakeBotAPI() as fake:
        fake.set_member(GROUP, MEMBER, "member")
        assert asyncio.run(run(fake)) == [False, False, True, False]
        assert len(fake.calls_to("getChatMember")) == 3
