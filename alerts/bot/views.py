"""Looking back: /latest, /search, /trend and /status, open to everyone in a chat.

They only read: the matched and stored stories through `newswatch.alerts.bot.history`, the
chart through `newswatch.alerts.bot.trend`, and show times in the chat's time zone.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from telegram import Chat as TelegramChat
from telegram import InputFile, Message, Update
from telegram.constants import ParseMode
from telegram.ext import ContextTypes

from newswatch.alerts.bot.guards import needs_chat
from newswatch.alerts.bot.history import search_words
from newswatch.alerts.bot.replies import ago, arg_text, reply, reply_kwargs
from newswatch.alerts.bot.state import BotState, state_of
from newswatch.alerts.bot.trend import DEFAULT_DAYS, MAX_DAYS, daily_counts, render_png
from newswatch.alerts.deliver.format import TELEGRAM_TEXT_LIMIT, escape, fit, hashtag, plural, safe_url, stamp
from newswatch.crawler.store import HELD_BASELINE, HELD_TOO_OLD

LATEST_DEFAULT, LATEST_MAX = 5, 20
SEARCH_LIMIT = 10
TITLE_CHARS = 160


@needs_chat
async def latest(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message) -> None:
    state = state_of(context)
    args = list(context.args or [])
    limit = LATEST_DEFAULT
    if args and args[-1].isdigit():
        limit = max(1, min(int(args.pop()), LATEST_MAX))
    if args:
        name = state.topic(args[0])
        if name is None:
            await reply(message, state.no_topic(args[0]))
            return
        topics = [name]
    else:
        topics = list(state.subscriptions.topics_of(chat.id)) or list(state.topics)
    found = state.history.latest(topics, limit)
    if not found:
        await reply(message, f"No matched stories yet for {escape(', '.join(topics))}.")
        return
    tz = state.tz(chat.id)
    lines = [f"<b>Latest matched stories</b> — {escape(', '.join(topics))}"]
    for number, item in enumerate(found, 1):
        tags = " · ".join(f"{hashtag(t)} {s:.1f}" for t, s in item.topics)
        lines.append(story_line(number, item.stored.story, tz, tags))
    await reply(message, fit("\n\n".join(lines), TELEGRAM_TEXT_LIMIT))


@needs_chat
async def search(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message) -> None:
    state = state_of(context)
    words = search_words(arg_text(message))
    if not words:
        await reply(message, "Search for what? e.g. /search Hanoi summit, /search \"Kim Yo Jong\", /search 개성공단")
        return
    found = state.history.search(words, SEARCH_LIMIT + 1)
    shown = " ".join(f'"{w}"' if " " in w else w for w in words)
    if not found:
        await reply(message, f"No stored story contains {escape(shown)}.")
        return
    more = len(found) > SEARCH_LIMIT
    found = found[:SEARCH_LIMIT]
    tz = state.tz(chat.id)
    head = (f"<b>Stories with {escape(shown)}</b> — "
            + (f"the newest {SEARCH_LIMIT}" if more else f"{len(found)} found") + ", newest first")
    lines = [head] + [story_line(n, s.story, tz, "") for n, s in enumerate(found, 1)]
    await reply(message, fit("\n\n".join(lines), TELEGRAM_TEXT_LIMIT))


@needs_chat
async def status(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message) -> None:
    state = state_of(context)
    now = state.clock.now()
    known = state.runtime_sources.all()
    polled = [k for k in known if k.config.enabled]
    health = state.history.health([(k.config.name, k.config.url, True, k.runtime) for k in polled])
    failing = [h for h in health if h.state.failures]
    never = [h for h in health if h.state.last_attempt is None]
    lines = [
        "<b>Status</b>",
        f"Sources: {len(polled)} polled — {len(polled) - len(failing) - len(never)} healthy, "
        f"{len(failing)} failing" + (f", {len(never)} not fetched yet" if never else "")
        + (f", {len(known) - len(polled)} disabled" if len(known) > len(polled) else ""),
    ]
    if failing:
        names = ", ".join(f"{h.name} ({h.state.failures}×)" for h in failing[:5])
        lines.append(f"Failing: {escape(names)}{' …' if len(failing) > 5 else ''}")
    lines += _store_lines(state, chat.id, now)
    await reply(message, "\n".join(lines))


def _store_lines(state: BotState, chat_id: int, now: datetime) -> list[str]:
    """/status's lines on the last fetch, the stored stories, the alert queue and the chats."""
    tz_name = state.zone_name(chat_id)
    queue = state.history.queue()
    last = state.history.last_fetch()
    return [
        f"Last fetch: {ago(last, now, tz_name)}",
        (f"Stories stored: {state.history.story_count():,}; matched in the last 24 h: "
         f"{state.history.matched_since(now - timedelta(days=1)):,}"),
        *_held_line(state.history.held_since(now - timedelta(days=1))),
        f"Alert queue: {queue.get('pending', 0):,} waiting, {queue.get('sent', 0):,} sent"
        + (f", {queue.get('failed', 0):,} failed" if queue.get("failed") else ""),
        f"Chats: {state.subscriptions.active_count():,} active; watches: {state.watches.count():,}",
    ]


@needs_chat
async def trend(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message) -> None:
    state = state_of(context)
    days, topics = DEFAULT_DAYS, None
    for arg in context.args or []:
        if arg.isdigit():
            days = int(arg)
            if not 1 <= days <= MAX_DAYS:
                await reply(message, f"Give a number of days from 1 to {MAX_DAYS}, e.g. /trend summit 30.")
                return
        else:
            name = state.topic(arg)
            if name is None:
                await reply(message, state.no_topic(arg))
                return
            topics = [name]
    if topics is None:
        topics = [t for t in state.topics if t in state.subscriptions.topics_of(chat.id)] or list(state.topics)
    zone_name = state.zone_name(chat.id)
    series = daily_counts(state.history.alerts, topics, days, state.clock.now(), ZoneInfo(zone_name))
    totals = {t: sum(c for _, c in points) for t, points in series.items()}
    title = f"{', '.join(topics)}: matched stories per day, last {plural(days, 'day')}"
    png = await asyncio.to_thread(render_png, series, title=title)
    caption = (" · ".join(f"{hashtag(t)} {n}" for t, n in totals.items())
               + f" — stories matched in the last {plural(days, 'day')} (days in {zone_name})")
    kwargs = reply_kwargs(message)
    await message.reply_photo(InputFile(png, filename="trend.png"), caption=escape(caption),
                              parse_mode=ParseMode.HTML, **kwargs)


def story_line(number: int, story, tz: ZoneInfo, tags: str) -> str:
    title = " ".join(story.title.split()) or "(untitled)"
    if len(title) > TITLE_CHARS:
        title = title[: TITLE_CHARS - 1] + "…"
    url = safe_url(story.url)
    head = f'<a href="{escape(url, quote=True)}">{escape(title)}</a>' if url else escape(title)
    meta = " · ".join(filter(None, [escape(story.source), stamp(story.published, tz), tags]))
    return f"{number}. {head}\n{meta}"


def _held_line(held: dict[str, int]) -> list[str]:
    """/status's line on stories stored in the last 24 h that may not alert (none: no line)."""
    old, baseline = held.get(HELD_TOO_OLD, 0), held.get(HELD_BASELINE, 0)
    parts = ([f"{old:,} too old (alert_max_age)"] if old else []) + (
        [f"{baseline:,} undated on a source's first fetch"] if baseline else [])
    return [f"Stored without alerting in the last 24 h: {', '.join(parts)}"] if parts else []
