"""What runs before a handler: the allowed-chats gate, and the decorators that let a command
run only where and for whom it may.

  * `gate` runs before every handler (a `TypeHandler` in group -1): a chat outside
    `telegram.allowed_chats` gets a polite refusal to a command or a button, and nothing else.
  * `@needs_chat` runs the handler only for an update with a chat and a message, and hands
    both to it: `handler(update, context, chat, message)`.
  * `@started` also needs the chat to have sent /start (a stored chat, handed on as a fifth
    argument); any other chat is told to send /start first.
  * `@admin` runs the handler only for a person listed in `telegram.admins`
    (`Permissions.is_bot_admin`); anyone else is told so.
  * `@settings_change(reads=...)` runs the handler only for a person who may change the chat's
    settings (`Permissions.may_change_settings`: in a group, its administrators);
    `reads(args)` true means this use only shows them, open to all.

The decorated function is a PTB callback `(update, context)`; stack `@admin` or
`@settings_change` above `@needs_chat` or `@started`, so that rights are checked first. Each
guard adds its name to the callback's `guards`, which the command table's tests read.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

from telegram import Chat as TelegramChat
from telegram import Message, Update
from telegram.ext import ApplicationHandlerStop, ContextTypes

from newswatch.alerts.bot.permissions import GROUP_ADMINS_ONLY, NOT_ADMIN, NOT_CHECKED, MemberLookupFailed
from newswatch.alerts.bot.replies import command_of, refuse, reply
from newswatch.alerts.bot.state import state_of
from newswatch.alerts.deliver.format import escape

log = logging.getLogger("newswatch.bot")
permission_log = logging.getLogger("newswatch.permissions")

Callback = Callable[[Update, ContextTypes.DEFAULT_TYPE], Awaitable[None]]

REFUSAL = ("Sorry, this newswatch bot serves a fixed list of chats, and this one is not on it. "
           "Ask the bot's operator to add chat id {chat_id} to telegram.allowed_chats.")
NOT_STARTED = "This chat has no subscriptions yet: send /start first."


async def gate(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Refuse chats outside `telegram.allowed_chats` before any handler runs."""
    chat = update.effective_chat
    allowed = state_of(context).allowed
    if allowed is None or chat is None or chat.id in allowed:
        return
    if update.callback_query is not None:
        await update.callback_query.answer(REFUSAL.format(chat_id=chat.id)[:200], show_alert=True)
    elif update.message or update.channel_post:
        message = update.effective_message
        if message is not None and (message.text or "").startswith("/"):
            log.info("chat %s is not in telegram.allowed_chats: refused %s", chat.id, message.text.split()[0][:40])
            await reply(message, escape(REFUSAL.format(chat_id=chat.id)))
    raise ApplicationHandlerStop


def _guarded_by(name: str, handler: Callable, guarded: Callable) -> Callback:
    """`guarded` under the handler's name, with `name` added to the guards it carries."""
    guards = frozenset(getattr(handler, "guards", ())) | frozenset(getattr(guarded, "guards", ())) | {name}
    functools.update_wrapper(guarded, handler)
    guarded.guards = guards
    return guarded


def needs_chat(handler: Callable[..., Awaitable[None]]) -> Callback:
    """Run `handler(update, context, chat, message)` for an update that has both; else nothing."""
    async def guarded(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message = update.effective_chat, update.effective_message
        if chat is None or message is None:
            return
        await handler(update, context, chat, message)
    return _guarded_by("needs_chat", handler, guarded)


def started(handler: Callable[..., Awaitable[None]]) -> Callback:
    """Run `handler(update, context, chat, message, stored)` for a chat that has sent /start
    (`stored` is its `subscriptions.Chat`); tell any other chat to send /start first."""
    async def guarded(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat,
                      message: Message) -> None:
        stored = state_of(context).subscriptions.chat(chat.id)
        if stored is None:
            await reply(message, NOT_STARTED)
            return
        await handler(update, context, chat, message, stored)
    return _guarded_by("started", handler, needs_chat(guarded))


def admin(handler: Callback) -> Callback:
    """Run the handler only for a sender listed in `telegram.admins` (see `is_bot_admin`)."""
    async def guarded(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if state_of(context).permissions.is_bot_admin(update):
            await handler(update, context)
            return
        chat, user = update.effective_chat, update.effective_user
        command = command_of(update.effective_message)
        permission_log.info("chat %s: admin command %s refused for user %s", chat.id if chat else None, command,
                 user.id if user else None)
        await refuse(update, NOT_ADMIN.format(command=command))
    return _guarded_by("admin", handler, guarded)


def settings_change(reads: Callable[[list[str]], bool] | None = None) -> Callable[[Callback], Callback]:
    """Run the handler only for a sender who may change the chat's settings (see
    `may_change_settings`); `reads(args)` true means this use only shows them, open to all."""
    def wrap(handler: Callback) -> Callback:
        async def guarded(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            if reads is not None and update.callback_query is None and reads(list(context.args or [])):
                await handler(update, context)
                return
            try:
                allowed = await state_of(context).permissions.may_change_settings(update, context.bot)
            except MemberLookupFailed:
                await refuse(update, NOT_CHECKED)
                return
            if allowed:
                await handler(update, context)
                return
            chat, user = update.effective_chat, update.effective_user
            permission_log.info("chat %s: %s refused for user %s, not an administrator", chat.id if chat else None,
                     handler.__name__, user.id if user else None)
            await refuse(update, GROUP_ADMINS_ONLY)
        return _guarded_by("settings_change", handler, guarded)
    return wrap
