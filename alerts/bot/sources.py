"""The sources, for the bot's admins: /sources with each one's health, /addsource,
/disablesource and /enablesource.

Changes are kept by `newswatch.alerts.runtime_sources` (they survive a restart) and passed
to the daemon's scheduler at once (`BotState.sources_changed`).
"""

from __future__ import annotations

import logging

from telegram import Chat as TelegramChat
from telegram import Message, Update
from telegram.ext import ContextTypes

from newswatch.alerts.bot.guards import admin, needs_chat
from newswatch.alerts.bot.replies import ago, every, reply
from newswatch.alerts.bot.state import state_of
from newswatch.alerts.deliver.format import TELEGRAM_TEXT_LIMIT, escape, fit, plural
from newswatch.alerts.runtime_sources import SourceRefused
from newswatch.crawler.urls import redact_url

log = logging.getLogger("newswatch.bot")


@admin
@needs_chat
async def sources(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message) -> None:
    state = state_of(context)
    now = state.clock.now()
    zone_name = state.zone_name(chat.id)
    known = state.runtime_sources.all()
    health = state.history.health([(k.config.name, k.config.url, k.config.enabled, k.runtime) for k in known])
    intervals = {k.config.name: k.config.interval for k in known}
    lines = [f"<b>Sources</b> ({sum(1 for h in health if h.enabled)} polled of {len(health)})"]
    for h in health:
        fetched = h.state
        if not h.enabled:
            mark, detail = "⏸", "disabled"
        elif fetched.failures:
            mark = "⚠️"
            detail = f"failing {fetched.failures}× in a row: {escape(redact_url(fetched.last_error)[:120] or 'error')}"
        elif fetched.last_attempt is None:
            mark, detail = "⏳", "not fetched yet"
        else:
            mark = "✅"
            detail = (f"ok, last fetch {ago(fetched.last_attempt, now, zone_name)}, "
                      f"{plural(fetched.stories_total, 'story')}")
        origin = " · added from Telegram" if h.runtime else ""
        lines.append(f"{mark} <b>{escape(h.name)}</b> every {every(intervals[h.name])}{origin}\n    {detail}")
    lines.append("/addsource name url [interval], /disablesource name, /enablesource name")
    await reply(message, fit("\n".join(lines), TELEGRAM_TEXT_LIMIT))


@admin
@needs_chat
async def add_source(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat,
                     message: Message) -> None:
    state = state_of(context)
    args = context.args or []
    if len(args) not in (2, 3):
        await reply(message, "Write /addsource NAME URL [INTERVAL], e.g. "
                             "/addsource nk-news-feed https://www.nknews.org/feed/ 10m")
        return
    try:
        source = await state.runtime_sources.add(args[0], args[1], args[2] if len(args) == 3 else None,
                                                 by=update.effective_user.id, now=state.clock.now())
    except SourceRefused as exc:
        await reply(message, f"Source not added: {escape(str(exc))}")
        return
    state.sources_changed()
    log.info("source %s added by user %s in chat %s: %s every %ss", source.name, update.effective_user.id, chat.id,
             redact_url(source.url), source.interval)
    await reply(message, f"Added source <b>{escape(source.name)}</b>: {escape(redact_url(source.url))}, "
                         f"polled every {every(source.interval)}, starting now. It is kept across restarts; "
                         f"/disablesource {escape(source.name)} stops it.")


@admin
@needs_chat
async def disable_source(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat,
                         message: Message) -> None:
    await _set_source(update, context, chat, message, enabled=False)


@admin
@needs_chat
async def enable_source(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat,
                        message: Message) -> None:
    await _set_source(update, context, chat, message, enabled=True)


async def _set_source(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message, *,
                      enabled: bool) -> None:
    state = state_of(context)
    verb = "enablesource" if enabled else "disablesource"
    if not context.args:
        await reply(message, f"Which source? /{verb} NAME (/sources lists them).")
        return
    before = state.runtime_sources.find(context.args[0])
    try:
        known = state.runtime_sources.set_enabled(context.args[0], enabled, by=update.effective_user.id,
                                                  now=state.clock.now())
    except SourceRefused as exc:
        await reply(message, escape(str(exc)))
        return
    name = escape(known.config.name)
    if before is not None and before.config.enabled == enabled:
        await reply(message, f"{name} was already {'enabled' if enabled else 'disabled'}.")
        return
    state.sources_changed()
    log.info("source %s %s by user %s in chat %s", known.config.name, "enabled" if enabled else "disabled",
             update.effective_user.id, chat.id)
    await reply(message, f"{name} {'enabled: polling again' if enabled else 'disabled: no longer polled'}, "
                         "and it stays so across restarts.")
