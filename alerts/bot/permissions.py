"""Who may do what in the bot: the persons in `telegram.admins`, and each group's administrators.

Rights follow the person who sends a command, never the chat it is sent in:
  * Admin commands (/sources, /addsource, /disablesource, /enablesource, /broadcast) need a
    sender listed in `telegram.admins`, writing in a private chat with the bot or in a chat
    that sender's entry allows (any chat when the entry lists no `chats`). A chat id listed
    there the old way gives nobody rights; it still receives the admin notices.
  * In a group or supergroup, what changes the chat's alerts (subscriptions, thresholds,
    mute, quiet hours, digest, time zone, watches, the topic buttons) is for the group's
    administrators, asked of Telegram with getChatMember and remembered for `MEMBER_TTL`
    (by the injected clock), unless `telegram.group_settings: everyone`. A message an
    anonymous administrator sends on behalf of the group (`sender_chat` is the group)
    counts as an administrator's; so does every channel post (only a channel's
    administrators can post in it). Private chats belong to their one user.

The rules are here; the decorators that apply them to handlers (`@admin`,
`@settings_change`) are in `newswatch.alerts.bot.guards`, with the refusals below.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from telegram import ChatMember, Update
from telegram.error import TelegramError

from newswatch.alerts.config import TelegramConfig
from newswatch.crawler.clock import Clock

log = logging.getLogger("newswatch.permissions")

MEMBER_TTL = timedelta(minutes=5)
MAX_REMEMBERED = 5000
GROUP_KINDS = ("group", "supergroup")
NOT_ADMIN = "Sorry, {command} is only for the bot's administrators."
GROUP_ADMINS_ONLY = "Only this group's administrators can change its settings."
NOT_CHECKED = "I could not ask Telegram who administers this group just now; please try again in a minute."


class MemberLookupFailed(Exception):
    """Telegram did not say whether a user administers a group."""


class Permissions:
    """The bot's admins (from the config) and a short memory of each group's administrators."""

    def __init__(self, config: TelegramConfig, clock: Clock) -> None:
        self.clock = clock
        self._known: dict[tuple[int, int], tuple[bool, datetime]] = {}
        self.apply_config(config)

    def apply_config(self, config: TelegramConfig) -> None:
        self.admins = config.admin_users
        self.everyone_in_groups = config.group_settings == "everyone"
        for entry in config.admins:
            if entry.is_chat:
                log.warning("telegram.admins: %s is a chat, not a person: it gets the admin notices but gives "
                            "nobody admin rights; list the people instead, e.g. {user: ID, chats: [%s]}",
                            entry.user, entry.user)

    # -- the bot's admins -------------------------------------------------------------------------
    def is_bot_admin(self, update: Update) -> bool:
        """Whether the person behind this update may run admin commands in its chat."""
        user, chat, message = update.effective_user, update.effective_chat, update.effective_message
        if user is None or chat is None or user.id not in self.admins:
            return False
        if message is not None and message.sender_chat is not None:
            return False  # sent on behalf of a chat: the person is not known
        if chat.type == "private":
            return chat.id == user.id
        places = self.admins[user.id]
        return places is None or chat.id in places

    # -- a group's administrators ------------------------------------------------------------------
    async def may_change_settings(self, update: Update, bot) -> bool:
        """Whether the sender of this update may change its chat's settings; raises
        `MemberLookupFailed` when Telegram could not be asked."""
        chat = update.effective_chat
        if chat is None:
            return False
        if chat.type not in GROUP_KINDS or self.everyone_in_groups:
            return True  # private chats, and channels (only their administrators post)
        message = update.effective_message if update.callback_query is None else None
        if message is not None and message.sender_chat is not None:
            return message.sender_chat.id == chat.id  # an anonymous administrator of this group
        user = update.effective_user
        if user is None:
            return False
        return await self.is_group_admin(bot, chat.id, user.id)

    async def is_group_admin(self, bot, chat_id: int, user_id: int) -> bool:
        now = self.clock.now()
        known = self._known.get((chat_id, user_id))
        if known is not None and known[1] > now:
            return known[0]
        try:
            member = await bot.get_chat_member(chat_id, user_id)
        except TelegramError as exc:
            log.warning("chat %s: could not ask whether user %s administers it: %s", chat_id, user_id, exc)
            raise MemberLookupFailed(str(exc)) from exc
        admin = member.status in (ChatMember.ADMINISTRATOR, ChatMember.OWNER)
        self._remember((chat_id, user_id), admin, now + MEMBER_TTL, now)
        return admin

    def _remember(self, key: tuple[int, int], admin: bool, until: datetime, now: datetime) -> None:
        if len(self._known) >= MAX_REMEMBERED:
            self._known = {k: v for k, v in self._known.items() if v[1] > now}
            if len(self._known) >= MAX_REMEMBERED:
                self._known.clear()
        self._known[key] = (admin, until)
