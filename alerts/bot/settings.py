"""When a chat's alerts arrive: /mute, /unmute, /quiet, /digest, /timezone, and /settings
that shows them all.

Each works only in a chat that has sent /start (`@started`); what the chat types is read by
`newswatch.alerts.bot.chat_settings`, and the notifier applies what is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from telegram import Chat as TelegramChat
from telegram import Message, Update
from telegram.ext import ContextTypes

from newswatch.alerts.bot.chat_settings import (
    SettingError,
    describe_duration,
    find_timezone,
    local_stamp,
    parse_digest,
    parse_mute,
    parse_quiet,
)
from newswatch.alerts.bot.guards import settings_change, started
from newswatch.alerts.bot.replies import num, reply
from newswatch.alerts.bot.state import state_of
from newswatch.alerts.deliver.format import escape
from newswatch.alerts.subscriptions import Chat

log = logging.getLogger("newswatch.bot")

Value = TypeVar("Value")


async def _typed_value(message: Message, args: list[str], shown: str, parse: Callable[..., Value],
                       *typed) -> Value | None:
    """`parse(*typed)`; or None once the chat has been answered: with `shown` when nothing was
    typed after the command, or with what to type instead."""
    if not args:
        await reply(message, shown)
        return None
    try:
        return parse(*typed)
    except SettingError as exc:
        await reply(message, escape(str(exc)))
        return None


@settings_change()
@started
async def mute(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message,
               stored: Chat) -> None:
    state = state_of(context)
    now = state.clock.now()
    until = await _typed_value(message, context.args, "For how long? e.g. /mute 30m, /mute 2h, /mute 1d. "
                               "/unmute ends it.", parse_mute, " ".join(context.args), now)
    if until is None:
        return
    state.subscriptions.set_muted_until(chat.id, until)
    log.info("chat %s: muted until %s", chat.id, until.isoformat())
    await reply(message, f"Muted for {describe_duration(until - now)}, until {local_stamp(until, stored.timezone)}. "
                         "Alerts for stories that come in meanwhile are not sent. /unmute ends it early.")


@settings_change()
@started
async def unmute(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message,
                 stored: Chat) -> None:
    state = state_of(context)
    was = stored.muted_until is not None and stored.muted_until > state.clock.now()
    state.subscriptions.set_muted_until(chat.id, None)
    await reply(message, "Unmuted: alerts are on again." if was else "This chat was not muted; alerts are on.")


@settings_change(reads=lambda args: not args)
@started
async def quiet(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message,
                stored: Chat) -> None:
    state = state_of(context)
    shown = quiet_text(stored) + "\nSet them with /quiet 23:00-07:00 [Area/City], or /quiet off."
    parsed = await _typed_value(message, context.args, shown, parse_quiet, context.args)
    if parsed is None:
        return
    span, zone = parsed
    moved = zone is not None and zone != stored.timezone
    if moved:
        state.subscriptions.set_timezone(chat.id, zone)
    state.subscriptions.set_quiet(chat.id, span)
    log.info("chat %s: quiet hours %s%s", chat.id,
             f"{span[0]:%H:%M}-{span[1]:%H:%M}" if span else "off", f" ({zone})" if zone else "")
    fresh = state.subscriptions.chat(chat.id) or stored
    note = (f"\nThis chat's time zone is now {escape(zone)} (it was {escape(stored.timezone)}): "
            "digests and the times in alerts use it too." if moved else "")
    await reply(message, quiet_text(fresh) + note)


@settings_change(reads=lambda args: not args)
@started
async def digest(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message,
                 stored: Chat) -> None:
    state = state_of(context)
    shown = digest_text(stored) + "\nChange it with /digest off, /digest hourly or /digest daily 08:00."
    parsed = await _typed_value(message, context.args, shown, parse_digest, context.args)
    if parsed is None:
        return
    mode, at = parsed
    state.subscriptions.set_digest(chat.id, mode, at)
    log.info("chat %s: digest %s%s", chat.id, mode, f" at {at:%H:%M}" if at else "")
    await reply(message, digest_text(state.subscriptions.chat(chat.id) or stored))


@settings_change(reads=lambda args: not args)
@started
async def timezone(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message,
                   stored: Chat) -> None:
    state = state_of(context)
    shown = (f"This chat's time zone is {escape(stored.timezone)} "
             f"(now {local_stamp(state.clock.now(), stored.timezone)}). "
             "Change it with /timezone Area/City, e.g. /timezone Asia/Seoul.")
    zone = await _typed_value(message, context.args, shown, find_timezone, " ".join(context.args))
    if zone is None:
        return
    state.subscriptions.set_timezone(chat.id, zone)
    log.info("chat %s: time zone %s", chat.id, zone)
    await reply(message, f"Time zone set to {escape(zone)} (now {local_stamp(state.clock.now(), zone)}). "
                         "Quiet hours, digests and the times in alerts use it.")


@started
async def settings(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message,
                   stored: Chat) -> None:
    state = state_of(context)
    mine = state.subscriptions.topics_of(chat.id)
    topics = ", ".join(f"{n} ({num(t)})" if t is not None else n for n, t in mine.items()) or "none"
    now = state.clock.now()
    muted = (f"until {local_stamp(stored.muted_until, stored.timezone)}"
             if stored.muted_until and stored.muted_until > now else "no")
    lines = [
        "<b>This chat</b>",
        f"Alerts: {'on' if stored.active else 'off (/start turns them on)'}",
        f"Topics: {escape(topics)}",
        f"Watches: {len(state.watches.of(chat.id))} (/watches)",
        f"Time zone: {escape(stored.timezone)}",
        f"Muted: {muted}",
        quiet_text(stored),
        digest_text(stored),
    ]
    if stored.thread_id is not None:
        lines.append(f"Forum topic: alerts go to thread {stored.thread_id}")
    await reply(message, "\n".join(lines))


def quiet_text(chat: Chat) -> str:
    if chat.quiet is None:
        return "Quiet hours: off"
    start, end = chat.quiet
    return (f"Quiet hours: {start:%H:%M}–{end:%H:%M} ({escape(chat.timezone)}); alerts that arrive then "
            f"are held and delivered at {end:%H:%M}.")


def digest_text(chat: Chat) -> str:
    if chat.digest == "hourly":
        return "Digest: hourly; alerts are collected and sent together at the top of each hour."
    if chat.digest == "daily":
        at = chat.digest_at.strftime("%H:%M") if chat.digest_at else "08:00"
        return f"Digest: daily at {at} ({escape(chat.timezone)}); alerts are collected and sent together once a day."
    return "Digest: off; alerts arrive as stories break."
