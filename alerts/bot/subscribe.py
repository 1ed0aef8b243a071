"""Which topics a chat follows: /start, /stop, /topics with its buttons, /subscribe,
/unsubscribe, and /threshold (the chat's own score bar for a topic).

/start subscribes the chat to every topic and remembers the forum topic it was sent in
(alerts go there); /stop deactivates the chat but keeps its watches for a later /start.
In a channel /topics shows no buttons, since every reader could press them.
"""

from __future__ import annotations

import logging

from telegram import Chat as TelegramChat
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from newswatch.alerts.bot.guards import NOT_STARTED, needs_chat, settings_change
from newswatch.alerts.bot.replies import num, reply, thread_of, title_of
from newswatch.alerts.bot.state import BotState, state_of
from newswatch.alerts.deliver.format import escape, plural

log = logging.getLogger("newswatch.bot")

TOPIC_BUTTON = "topic:"
MAX_THRESHOLD = 1000.0


@settings_change()
@needs_chat
async def start(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message) -> None:
    state = state_of(context)
    thread_id = thread_of(message)
    state.subscriptions.start(chat.id, state.topics, kind=chat.type, title=title_of(chat),
                              thread_id=thread_id, now=state.clock.now())
    log.info("chat %s (%s): subscribed to all topics", chat.id, chat.type)
    where = " in this topic" if thread_id is not None else " here"
    await reply(message,
                f"Subscribed to all topics: {escape(', '.join(state.topics))}.\n"
                f"Alerts arrive{where} as stories break. /topics switches topics on and off, "
                "/watch adds your own words, /stop ends alerts, /help explains.")


@settings_change()
@needs_chat
async def stop(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message) -> None:
    state = state_of(context)
    state.subscriptions.stop(chat.id)
    log.info("chat %s: unsubscribed from everything", chat.id)
    kept = len(state.watches.of(chat.id))
    extra = f" This chat keeps its {plural(kept, 'watch')} for then." if kept else ""
    await reply(message, f"Unsubscribed: no more alerts here. /start subscribes again.{extra}")


@needs_chat
async def list_topics(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat,
                      message: Message) -> None:
    state = state_of(context)
    if chat.type == "channel":  # every reader of a channel could press its buttons
        await reply(message, topics_text(state, chat.id) + "\n\n/subscribe and /unsubscribe change them here.")
        return
    await reply(message, topics_text(state, chat.id), reply_markup=topics_keyboard(state, chat.id))


def topics_text(state: BotState, chat_id: int) -> str:
    mine = state.subscriptions.topics_of(chat_id)
    chat = state.subscriptions.chat(chat_id)
    active = chat is not None and chat.active
    lines = ["<b>Topics</b> (✅ followed here; tap a button to switch)"]
    for name, description in state.topics.items():
        mark = "✅" if name in mine and active else "▫️"
        own = mine.get(name)
        bar = f"threshold {num(own)} (yours; topic {num(state.thresholds[name])})" if own is not None \
            else f"threshold {num(state.thresholds[name])}"
        lines.append(f"{mark} <b>{escape(name)}</b> — {escape(description)} <i>{bar}</i>")
    if not active:
        lines.append("\nThis chat gets no alerts now: /start subscribes it to every topic.")
    return "\n".join(lines)


def topics_keyboard(state: BotState, chat_id: int) -> InlineKeyboardMarkup:
    mine = state.subscriptions.topics_of(chat_id)
    chat = state.subscriptions.chat(chat_id)
    active = chat is not None and chat.active
    rows = []
    for name in state.topics:
        on = name in mine and active
        rows.append([InlineKeyboardButton(f"{'✅' if on else '▫️'} {name}", callback_data=f"{TOPIC_BUTTON}{name}")])
    return InlineKeyboardMarkup(rows)


@settings_change()
async def on_topic_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query, chat = update.callback_query, update.effective_chat
    if query is None or chat is None:
        return
    state = state_of(context)
    name = (query.data or "")[len(TOPIC_BUTTON):]
    if name not in state.topics:
        await query.answer("That topic no longer exists; send /topics again.")
        return
    if chat.type == "channel":
        await query.answer("In a channel, post /subscribe or /unsubscribe instead.")
        return
    message = query.message if isinstance(query.message, Message) else None
    was_active = (c := state.subscriptions.chat(chat.id)) is not None and c.active
    state.subscriptions.ensure(chat.id, kind=chat.type, title=title_of(chat),
                               thread_id=thread_of(message) if message else None, now=state.clock.now())
    if name in state.subscriptions.topics_of(chat.id) and was_active:
        state.subscriptions.unsubscribe(chat.id, name)
        note = f"{name}: off"
    else:
        state.subscriptions.subscribe(chat.id, name)
        note = f"{name}: on"
    log.info("chat %s: topic button %s", chat.id, note)
    await query.answer(note)
    if message is not None:
        try:
            await query.edit_message_text(topics_text(state, chat.id), parse_mode=ParseMode.HTML,
                                          reply_markup=topics_keyboard(state, chat.id))
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():
                log.warning("chat %s: could not update the topics message: %s", chat.id, exc)


def _named_topics(state: BotState, arg: str) -> list[str] | None:
    """Every topic for `all`, else the one named (None when there is no such topic)."""
    if arg.lower() == "all":
        return list(state.topics)
    name = state.topic(arg)
    return None if name is None else [name]


@settings_change()
@needs_chat
async def subscribe(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message) -> None:
    state = state_of(context)
    if not context.args:
        await reply(message, f"Which topic? /subscribe {escape(next(iter(state.topics)))} (or /subscribe all). "
                             f"Topics: {escape(', '.join(state.topics))}.")
        return
    names = _named_topics(state, context.args[0])
    if names is None:
        await reply(message, state.no_topic(context.args[0]))
        return
    revived = state.subscriptions.ensure(chat.id, kind=chat.type, title=title_of(chat), thread_id=thread_of(message),
                                         now=state.clock.now())
    added = [n for n in names if state.subscriptions.subscribe(chat.id, n)]
    log.info("chat %s: subscribed to %s", chat.id, ", ".join(names))
    if added:
        await reply(message, f"Subscribed to {escape(', '.join(added))}. /topics shows them all.")
    elif revived:
        await reply(message, f"Alerts are on again here for {escape(', '.join(names))}.")
    else:
        await reply(message, f"Already subscribed to {escape(', '.join(names))}.")


@settings_change()
@needs_chat
async def unsubscribe(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat,
                      message: Message) -> None:
    state = state_of(context)
    if not context.args:
        await reply(message, "Which topic? e.g. /unsubscribe summit (or /unsubscribe all).")
        return
    names = _named_topics(state, context.args[0])
    if names is None:
        await reply(message, state.no_topic(context.args[0]))
        return
    removed = [n for n in names if state.subscriptions.unsubscribe(chat.id, n)]
    log.info("chat %s: unsubscribed from %s", chat.id, ", ".join(removed) or "nothing")
    if not removed:
        await reply(message, f"This chat was not subscribed to {escape(', '.join(names))}.")
        return
    left = state.subscriptions.topics_of(chat.id)
    rest = f"Still following: {escape(', '.join(left))}." if left else "No topics left here; /subscribe adds one."
    await reply(message, f"Unsubscribed from {escape(', '.join(removed))}. {rest}")


@settings_change(reads=lambda args: len(args) < 2)
@needs_chat
async def threshold(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message) -> None:
    state = state_of(context)
    args = context.args or []
    mine = state.subscriptions.topics_of(chat.id)
    if not args:
        await reply(message, _thresholds_text(state, mine) if mine else NOT_STARTED)
        return
    name = state.topic(args[0])
    if name is None:
        await reply(message, state.no_topic(args[0]))
        return
    if name not in mine:
        await reply(message, f"This chat does not follow {escape(name)}; /subscribe {escape(name)} first.")
        return
    if len(args) == 1:
        own = mine[name]
        await reply(message, f"{escape(name)}: threshold {num(own if own is not None else state.thresholds[name])}"
                             f"{' (yours)' if own is not None else ' (topic default)'}.")
        return
    if args[1].lower() in ("default", "reset", "off"):
        state.subscriptions.set_threshold(chat.id, name, None)
        await reply(message, f"{escape(name)}: back to the topic's threshold, {num(state.thresholds[name])}.")
        return
    await _set_threshold(state, chat.id, message, name, args[1])


def _thresholds_text(state: BotState, mine: dict[str, float | None]) -> str:
    lines = ["<b>Thresholds here</b> (a story alerts when its score reaches it)"]
    for name, own in mine.items():
        default = state.thresholds.get(name)
        lines.append(f"{escape(name)}: {num(own)} (yours; topic {num(default)})" if own is not None
                     else f"{escape(name)}: {num(default)} (topic default)")
    lines.append("Change one with /threshold summit 10, reset with /threshold summit default.")
    return "\n".join(lines)


async def _set_threshold(state: BotState, chat_id: int, message: Message, name: str, typed: str) -> None:
    try:
        value = float(typed.replace(",", "."))
    except ValueError:
        value = float("nan")
    if not 0 < value <= MAX_THRESHOLD:
        await reply(message, f"“{escape(typed)}” is not a score; give a number above 0, e.g. "
                             f"/threshold {escape(name)} 10 (the topic's is {num(state.thresholds[name])}).")
        return
    state.subscriptions.set_threshold(chat_id, name, value)
    log.info("chat %s: threshold %s = %s", chat_id, name, value)
    default = state.thresholds[name]
    direction = "fewer" if value > default else "more" if value < default else "the usual"
    await reply(message, f"{escape(name)}: alerts here now need a score of {num(value)} "
                         f"(topic default {num(state.thresholds[name])}), so {direction} alerts. "
                         "The topic's required words still apply.")
