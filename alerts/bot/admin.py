"""What only the bot's admins send to everyone: /broadcast.

The text is queued in the outbox for every active chat, like any other message to Telegram;
the sender is told at once how many chats it is queued for, and again (a notice) once every
copy has an outcome. The source commands, also admin-only, are in `sources`.
"""

from __future__ import annotations

import logging

from telegram import Chat as TelegramChat
from telegram import Message, Update
from telegram.ext import ContextTypes

from newswatch.alerts.bot.guards import admin, needs_chat
from newswatch.alerts.bot.replies import arg_text, reply
from newswatch.alerts.bot.state import state_of
from newswatch.alerts.deliver.format import plural

log = logging.getLogger("newswatch.bot")


@admin
@needs_chat
async def broadcast(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message) -> None:
    """Queue the text for every active chat; the sender hears now and once it is delivered."""
    state = state_of(context)
    text = arg_text(message)
    if not text:
        await reply(message, "Write the message after the command: /broadcast Maintenance tonight at 22:00 UTC.")
        return
    if state.outbox is None:
        await reply(message, "Broadcasts are not available here.")
        return
    chats = [c.chat_id for c in state.subscriptions.active_chats()]
    queued = state.outbox.queue_notice(chats, text, state.clock.now(), report_to=chat.id)
    log.info("broadcast by user %s in chat %s: queued for %s", update.effective_user.id, chat.id,
             plural(queued, "chat"))
    state.on_queued()
    await reply(message, f"Broadcast queued for {plural(queued, 'chat')}; you will be told when it is delivered.")
