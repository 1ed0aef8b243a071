"""The chat's side of the bot's life in it: blocked, kicked or removed (the chat is
deactivated), added (nothing happens until someone sends /start there), and a group that
becomes a supergroup (the chat moves to its new id with its settings, queue and votes).
"""

from __future__ import annotations

import logging

from telegram import ChatMember, Update
from telegram.ext import ContextTypes

from newswatch.alerts.bot.state import state_of

log = logging.getLogger("newswatch.bot")


async def on_membership(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    change = update.my_chat_member
    if change is None:
        return
    subscriptions = state_of(context).subscriptions
    chat, old, new = change.chat, change.old_chat_member.status, change.new_chat_member.status
    if new in (ChatMember.BANNED, ChatMember.LEFT):
        reason = "bot blocked by the user" if chat.type == "private" else f"bot removed from the {chat.type}"
        if subscriptions.chat(chat.id) is not None:
            subscriptions.deactivate(chat.id, reason)
        log.info("chat %s: %s; deactivated", chat.id, reason)
    elif old in (ChatMember.BANNED, ChatMember.LEFT) and new in (
            ChatMember.MEMBER, ChatMember.ADMINISTRATOR, ChatMember.OWNER):
        log.info("chat %s (%s): bot added; waiting for /start there", chat.id, chat.type)


async def on_migrate(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is None or not message.migrate_to_chat_id:
        return
    state = state_of(context)
    old, new = message.chat_id, message.migrate_to_chat_id
    if state.subscriptions.chat(old) is None:
        return
    state.subscriptions.migrate(old, new)
    if state.outbox is not None:
        state.outbox.migrate_chat(old, new)
    if state.votes is not None:
        state.votes.migrate_chat(old, new)
    log.info("chat %s: upgraded to supergroup %s; moved with its settings", old, new)
