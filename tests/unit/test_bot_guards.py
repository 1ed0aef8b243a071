"""The bot's guards, driven with real PTB updates built in memory and a Bot whose requests are
recorded instead of sent: what each lets through, and what it answers when it does not."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from telegram import Bot, Update
from telegram.ext import ApplicationHandlerStop
from telegram.request import BaseRequest

from newswatch.alerts.bot.guards import REFUSAL, NOT_STARTED, admin, gate, needs_chat, settings_change, started
from newswatch.alerts.bot.permissions import GROUP_ADMINS_ONLY, NOT_ADMIN, NOT_CHECKED, Permissions
from newswatch.alerts.bot.state import STATE_KEY
from newswatch.alerts.config import TelegramConfig
from newswatch.alerts.subscriptions import Chat
from newswatch.crawler.clock import ManualClock

ADMIN, ALICE = 1001, 2002
GROUP = -1007770001
MODERATOR = 7002


class RecordedRequests(BaseRequest):
    """The Bot API as a list of calls: sendMessage and answerCallbackQuery succeed,
    getChatMember says who administers GROUP (or fails, when `members_known` is false)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.members_known = True

    @property
    def read_timeout(self) -> float:
        return 1.0

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def do_request(self, url: str, method: str, request_data=None, **timeouts) -> tuple[int, bytes]:
        name, params = url.rsplit("/", 1)[-1], (request_data.parameters if request_data else {})
        self.calls.append((name, params))
        if name == "getChatMember":
            if not self.members_known:
                return 400, json.dumps({"ok": False, "error_code": 400, "description": "Bad Request: no"}).encode()
            status = "administrator" if int(params["user_id"]) == MODERATOR else "member"
            result = {"status": status, "user": {"id": int(params["user_id"]), "is_bot": False, "first_name": "x"},
                      **({"can_be_edited": False, "is_anonymous": False, "can_manage_chat": True,
                          "can_delete_messages": True, "can_manage_video_chats": True, "can_restrict_members": True,
                          "can_promote_members": False, "can_change_info": True, "can_invite_users": True,
                          "can_post_stories": True, "can_edit_stories": True, "can_delete_stories": True}
                         if status == "administrator" else {})}
        elif name == "sendMessage":
            result = {"message_id": 100, "date": 0, "chat": {"id": int(params["chat_id"]), "type": "private"},
                      "text": params.get("text", "")}
        else:
            result = True
        return 200, json.dumps({"ok": True, "result": result}).encode()

    def sent(self) -> list[str]:
        return [p["text"] for name, p in self.calls if name == "sendMessage"] + \
            [p["text"] for name, p in self.calls if name == "answerCallbackQuery"]


class StoredChats:
    """Stands in for `Subscriptions`: the chats that have sent /start."""

    def __init__(self, *chat_ids: int) -> None:
        self.stored = {i: Chat(chat_id=i, active=True, kind="private", title="", thread_id=None) for i in chat_ids}

    def chat(self, chat_id: int) -> Chat | None:
        return self.stored.get(chat_id)


@pytest.fixture
def requests() -> RecordedRequests:
    return RecordedRequests()


@pytest.fixture
def bot(requests: RecordedRequests) -> Bot:
    return Bot("123:abc", request=requests)


def state(*, started_chats: tuple[int, ...] = (), allowed: set[int] | None = None, everyone: bool = False,
          admin_chats: list[int] | None = None) -> SimpleNamespace:
    """Stands in for `BotState`: what the guards read of it."""
    config = TelegramConfig(admins=[{"user": ADMIN, "chats": admin_chats}],
                            group_settings="everyone" if everyone else "admins")
    return SimpleNamespace(permissions=Permissions(config, ManualClock(datetime(2024, 1, 1, tzinfo=UTC))),
                           subscriptions=StoredChats(*started_chats), allowed=allowed)


def context(bot: Bot, bot_state, args: list[str] | None = None) -> SimpleNamespace:
    return SimpleNamespace(bot=bot, bot_data={STATE_KEY: bot_state}, args=args or [])


def command(bot: Bot, text: str, *, chat_id: int = ALICE, user_id: int = ALICE) -> Update:
    chat = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup", **({"title": "g"} if chat_id < 0 else {})}
    return Update.de_json({"update_id": 1, "message": {
        "message_id": 7, "date": 0, "chat": chat, "text": text,
        "from": {"id": user_id, "is_bot": False, "first_name": "someone"}}}, bot)


def membership_change(bot: Bot) -> Update:
    """An update with a chat and no message."""
    member = {"user": {"id": 99, "is_bot": True, "first_name": "newswatch"}, "status": "member"}
    return Update.de_json({"update_id": 2, "my_chat_member": {
        "chat": {"id": ALICE, "type": "private"}, "from": {"id": ALICE, "is_bot": False, "first_name": "a"},
        "date": 0, "old_chat_member": {**member, "status": "left"}, "new_chat_member": member}}, bot)


class Calls:
    """A handler that records what it was given."""

    def __init__(self) -> None:
        self.seen: list[tuple] = []
        self.__name__ = "handler"

    async def __call__(self, update, context, *given) -> None:
        self.seen.append(given)


def run(callback, update, ctx) -> None:
    asyncio.run(callback(update, ctx))


def test_needs_chat_hands_on_the_chat_and_the_message(bot: Bot) -> None:
    handler = Calls()
    update = command(bot, "/latest")
    run(needs_chat(handler), update, context(bot, state()))
    assert handler.seen == [(update.effective_chat, update.effective_message)]


def test_needs_chat_ignores_an_update_without_a_message(bot: Bot, requests: RecordedRequests) -> None:
    handler = Calls()
    run(needs_chat(handler), membership_change(bot), context(bot, state()))
    assert handler.seen == [] and requests.calls == []


def test_started_hands_on_the_stored_chat(bot: Bot) -> None:
    handler = Calls()
    bot_state = state(started_chats=(ALICE,))
    run(started(handler), command(bot, "/mute 2h"), context(bot, bot_state))
    assert [given[2] for given in handler.seen] == [bot_state.subscriptions.stored[ALICE]]


def test_started_tells_a_new_chat_to_send_start(bot: Bot, requests: RecordedRequests) -> None:
    handler = Calls()
    run(started(handler), command(bot, "/mute 2h"), context(bot, state()))
    assert handler.seen == [] and requests.sent() == [NOT_STARTED]


def test_admin_runs_for_a_listed_person_in_a_private_chat(bot: Bot, requests: RecordedRequests) -> None:
    handler = Calls()
    run(admin(handler), command(bot, "/sources", chat_id=ADMIN, user_id=ADMIN), context(bot, state()))
    assert handler.seen == [()] and requests.calls == []


@pytest.mark.parametrize("chat_id, user_id, admin_chats", [
    (ALICE, ALICE, None),         # not listed in telegram.admins
    (GROUP, ADMIN, [-100123]),    # listed, but for other chats only
])
def test_admin_refuses_everyone_else(bot: Bot, requests: RecordedRequests, chat_id: int, user_id: int,
                                     admin_chats: list[int] | None) -> None:
    handler = Calls()
    run(admin(handler), command(bot, "/sources@newswatch_bot", chat_id=chat_id, user_id=user_id),
        context(bot, state(admin_chats=admin_chats)))
    assert handler.seen == [] and requests.sent() == [NOT_ADMIN.format(command="/sources")]


@pytest.mark.parametrize("user_id, runs", [(MODERATOR, True), (ALICE, False)])
def test_settings_change_in_a_group_is_for_its_administrators(bot: Bot, requests: RecordedRequests, user_id: int,
                                                              runs: bool) -> None:
    handler = Calls()
    run(settings_change()(handler), command(bot, "/stop", chat_id=GROUP, user_id=user_id), context(bot, state()))
    assert [name for name, _ in requests.calls][:1] == ["getChatMember"]
    assert handler.seen == ([()] if runs else [])
    assert requests.sent() == ([] if runs else [GROUP_ADMINS_ONLY])


def test_settings_change_lets_anyone_read(bot: Bot, requests: RecordedRequests) -> None:
    handler = Calls()
    guarded = settings_change(reads=lambda args: not args)(handler)
    run(guarded, command(bot, "/quiet", chat_id=GROUP), context(bot, state(), args=[]))
    assert handler.seen == [()] and requests.calls == []


def test_settings_change_anywhere_with_group_settings_everyone(bot: Bot, requests: RecordedRequests) -> None:
    handler = Calls()
    run(settings_change()(handler), command(bot, "/stop", chat_id=GROUP), context(bot, state(everyone=True)))
    assert handler.seen == [()] and requests.calls == []


def test_settings_change_says_so_when_telegram_cannot_be_asked(bot: Bot, requests: RecordedRequests) -> None:
    requests.members_known = False
    handler = Calls()
    run(settings_change()(handler), command(bot, "/stop", chat_id=GROUP), context(bot, state()))
    assert handler.seen == [] and requests.sent() == [NOT_CHECKED]


def test_rights_are_checked_before_the_chat_is_looked_up(bot: Bot, requests: RecordedRequests) -> None:
    handler = Calls()
    guarded = settings_change()(started(handler))
    run(guarded, command(bot, "/mute 2h", chat_id=GROUP), context(bot, state()))
    assert requests.sent() == [GROUP_ADMINS_ONLY]


def test_the_guards_a_callback_carries() -> None:
    async def handler(update, context, chat, message, stored) -> None:
        pass

    guarded = settings_change()(started(handler))
    assert guarded.guards == {"settings_change", "started", "needs_chat"}
    assert guarded.__name__ == "handler"
    assert admin(needs_chat(handler)).guards == {"admin", "needs_chat"}


def test_gate_lets_every_chat_through_without_allowed_chats(bot: Bot, requests: RecordedRequests) -> None:
    run(gate, command(bot, "/start"), context(bot, state()))
    assert requests.calls == []


def test_gate_refuses_a_chat_not_allowed(bot: Bot, requests: RecordedRequests) -> None:
    with pytest.raises(ApplicationHandlerStop):
        run(gate, command(bot, "/start"), context(bot, state(allowed={ADMIN})))
    assert requests.sent() == [REFUSAL.format(chat_id=ALICE)]
    with pytest.raises(ApplicationHandlerStop):
        run(gate, command(bot, "hello"), context(bot, state(allowed={ADMIN})))
    assert len(requests.calls) == 1, "a plain message is dropped without an answer"
