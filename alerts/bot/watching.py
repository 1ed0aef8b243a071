"""A chat's own watches: /watch adds a rule, /watches lists them, /unwatch removes one.

A watch alerts only the chat that made it; the rules are read and matched by
`newswatch.alerts.match.watches`. Adding the first watch creates the chat if needed.
"""

from __future__ import annotations

import logging

from telegram import Chat as TelegramChat
from telegram import Message, Update
from telegram.ext import ContextTypes

from newswatch.alerts.bot.guards import needs_chat, settings_change
from newswatch.alerts.bot.replies import arg_text, reply, thread_of, title_of
from newswatch.alerts.bot.state import state_of
from newswatch.alerts.deliver.format import escape
from newswatch.alerts.match.watches import RuleError, parse_rule

log = logging.getLogger("newswatch.bot")

WATCH_SYNTAX = (
    "Examples: /watch Hanoi summit (both words) · /watch \"Hanoi summit\" (the phrase) · "
    "/watch Hanoi OR Hue summit · /watch summit -G20 (not G20) · /watch sanction* · /watch 개성공단"
)


@settings_change()
@needs_chat
async def watch(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message) -> None:
    state = state_of(context)
    text = arg_text(message)
    if not text:
        await reply(message, "Watch for what? " + WATCH_SYNTAX)
        return
    try:
        parse_rule(text)
        if state.subscriptions.chat(chat.id) is None:
            state.subscriptions.ensure(chat.id, kind=chat.type, title=title_of(chat), thread_id=thread_of(message),
                                       now=state.clock.now())
        added, rule = state.watches.add(chat.id, text, state.clock.now())
    except RuleError as exc:
        await reply(message, f"That watch cannot be used: {escape(str(exc))}.\n{WATCH_SYNTAX}")
        return
    state.subscriptions.ensure(chat.id, kind=chat.type, title=title_of(chat), thread_id=thread_of(message),
                               now=state.clock.now())
    number = len(state.watches.of(chat.id))
    log.info("chat %s: watch %d added (%s)", chat.id, added.id, rule.describe())
    await reply(message, f"Watch {number} added: <code>{escape(rule.text)}</code>\n"
                         f"It matches stories with {escape(rule.describe())}. "
                         "Their alerts come to this chat only. "
                         "/watches lists your watches, /unwatch removes one.")


@needs_chat
async def list_watches(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat,
                       message: Message) -> None:
    mine = state_of(context).watches.of(chat.id)
    if not mine:
        await reply(message, "No watches here yet. /watch Hanoi summit makes one.")
        return
    lines = ["<b>Watches</b> (alerts for this chat only)"]
    for number, kept in enumerate(mine, 1):
        lines.append(f"{number}. <code>{escape(kept.rule)}</code>")
    lines.append("/unwatch N removes watch N.")
    await reply(message, "\n".join(lines))


@settings_change()
@needs_chat
async def unwatch(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message) -> None:
    state = state_of(context)
    count = len(state.watches.of(chat.id))
    arg = (context.args or [""])[0]
    if not arg.isdigit():
        await reply(message, "Which one? /unwatch N, with N from /watches." if count
                    else "No watches here to remove.")
        return
    removed = state.watches.remove(chat.id, int(arg))
    if removed is None:
        span = f" (1–{count})" if count > 1 else " (1)" if count else ""
        await reply(message, f"There is no watch {escape(arg)} here; /watches lists them{span}.")
        return
    log.info("chat %s: watch %d removed", chat.id, removed.id)
    await reply(message, f"Removed watch {escape(arg)}: <code>{escape(removed.rule)}</code>.")
