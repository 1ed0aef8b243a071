"""The python-telegram-bot client: building the Application and sending alerts through it.

`build_application()` points PTB at `telegram.api_url` (Telegram, or a local Bot API
server) with PTB's `AIORateLimiter` keeping under Telegram's limits; retries are not left to
the limiter but decided durably by the notifier. `TelegramSink` sends one alert or notice and maps
PTB's exceptions onto the notifier's delivery errors: the one place Telegram's errors are
mapped, for alerts, admin notices and broadcasts alike. `TelegramLink` connects the bot beside
everything else and says whether the Bot API can be reached. The token is never logged.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import random
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from zoneinfo import ZoneInfo

os.environ.setdefault("PTB_TIMEDELTA", "1")  # retry_after as a timedelta, without deprecation noise

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder

from newswatch.alerts.config import TelegramConfig
from newswatch.alerts.feedback import DOWN, UP, vote_data
from newswatch.alerts.deliver.format import AlertView, render_alert, render_alert_plain, render_digest, render_notice
from newswatch.alerts.deliver.notifier import ChatGone, ChatMoved, Rejected, RetryLater
from newswatch.crawler.clock import Clock

def vote_keyboard(outbox_id: int, counts: tuple[int, int] | None = None) -> InlineKeyboardMarkup:
    """👍 and 👎 under an alert; with `counts` (👍, 👎), the buttons show them."""
    up, down = ("👍", "👎") if counts is None else (f"👍 {counts[0]}", f"👎 {counts[1]}")
    return InlineKeyboardMarkup([[InlineKeyboardButton(up, callback_data=vote_data(UP, outbox_id)),
                                  InlineKeyboardButton(down, callback_data=vote_data(DOWN, outbox_id))]])


log = logging.getLogger("newswatch.telegram")
# The limiter logs every 429 as an error with a traceback; the notifier reschedules those
# durably and logs them itself, once, in plain words.
logging.getLogger("telegram.ext.AIORateLimiter").setLevel(logging.CRITICAL)


def build_application(token: str, config: TelegramConfig) -> Application:
    file_url = config.api_url[: -len("bot")] + "file/bot" if config.api_url.endswith("/bot") else config.api_url
    return (
        ApplicationBuilder()
        .token(token)
        .base_url(config.api_url)
        .base_file_url(file_url)
        .rate_limiter(AIORateLimiter(
            overall_max_rate=config.overall_per_second, overall_time_period=1,
            group_max_rate=config.group_per_minute, group_time_period=60, max_retries=0,
        ))
        .connect_timeout(10)
        .read_timeout(15)
        .write_timeout(15)
        .pool_timeout(10)
        .get_updates_read_timeout(config.poll_timeout + 10)
        .connection_pool_size(64)
        .build()
    )


class TelegramLink:
    """Whether the Bot API can be reached, and the task that connects the bot to it.

    Collecting never waits for Telegram: the daemon starts the scheduler, the crawler and the
    outbox at once and runs `connect_forever()` beside them. It initialises the Application,
    publishes the command menu and starts polling as soon as the Bot API answers, retrying with
    backoff (2 s doubling to 30 s, with jitter). A send or a poll that cannot reach the Bot API
    calls `lost()`: sends pause (alerts wait in the outbox, in order) and the task probes with
    getMe until the Bot API answers again, then `on_up` wakes delivery. An outage is logged once
    when it starts and once when it ends, and `on_change(since, reason)` records it (the
    daemon keeps it in the database, where `newswatch stats` reads it).
    """

    FIRST_DELAY = 2.0
    MAX_DELAY = 30.0

    def __init__(self, application: Application, clock: Clock, *, api_url: str,
                 start: Callable[[], Awaitable[None]], on_up: Callable[[], None] = lambda: None,
                 on_change: Callable[[datetime | None, str], None] = lambda since, reason: None,
                 rng: random.Random | None = None) -> None:
        self.application = application
        self.clock = clock
        self.api_url = api_url
        self._start = start  # initialise, publish the menu, start polling: once the Bot API answers
        self.on_up = on_up
        self.on_change = on_change
        self.rng = rng or random.Random()
        self.up = False
        self.started = False
        self.down_since: datetime | None = None
        self.reason = ""
        self._lost = asyncio.Event()

    @property
    def available(self) -> bool:
        return self.up

    def describe(self) -> str:
        """"reachable", "unreachable since <time>: <reason>", or "connecting"."""
        if self.up:
            return "reachable"
        if self.down_since is not None:
            return f"unreachable since {self.down_since.isoformat(timespec='seconds')}: {self.reason}"
        return "connecting"

    def stopped(self) -> None:
        """The bot was stopped (its process stands by again): the next `connect_forever` starts it."""
        self.up = False
        self.started = False
        self._lost.clear()

    def lost(self, reason: str) -> None:
        """The Bot API could not be reached (a send, a poll or a probe failed on the network)."""
        first = self.down_since is None
        self.up = False
        self.reason = reason
        if first:
            self.down_since = self.clock.now()
            log.warning("the Telegram Bot API at %s cannot be reached (%s); sources are still polled and "
                        "alerts wait in the outbox until it answers (retrying every %.0fs at most)",
                        self.api_url, reason, self.MAX_DELAY)
            self.on_change(self.down_since, reason)
        self._lost.set()

    def _reached(self) -> None:
        if self.down_since is not None:
            seconds = (self.clock.now() - self.down_since).total_seconds()
            log.warning("the Telegram Bot API answers again after %.0fs; delivering the alerts that waited", seconds)
            self.on_change(None, "")
        self.up = True
        self.down_since = None
        self.reason = ""
        self.on_up()

    def polling_error(self, error: TelegramError) -> None:
        """PTB's `error_callback` for getUpdates: a network failure is an outage (PTB retries the poll)."""
        if isinstance(error, NetworkError):
            self.lost(f"{type(error).__name__}: {error.message}")
        else:
            log.warning("polling Telegram for updates: %s: %s", type(error).__name__, error.message)

    async def check_once(self) -> bool:
        """Initialise the Application once (for a single pass): True when the Bot API answered."""
        try:
            await self.application.initialize()
        except Exception as exc:
            self.lost(f"{type(exc).__name__}: {exc}")
            return False
        self._reached()
        return True

    async def connect_forever(self) -> None:
        """Connect, then wait for an outage and reconnect; runs until cancelled."""
        delay = self.FIRST_DELAY
        while True:
            if self.up:
                await self._lost.wait()
                self._lost.clear()
                delay = self.FIRST_DELAY
                continue
            try:
                if self.started:
                    await self.application.bot.get_me()
                else:
                    await self._start()
                    self.started = True
            except asyncio.CancelledError:
                raise
            except InvalidToken:
                self.lost("Telegram refused the bot token (check NEWSWATCH_TELEGRAM_TOKEN)")
            except Exception as exc:  # unreachable, DNS, TLS, 5xx: the same wait and retry
                self.lost(f"{type(exc).__name__}: {exc}")
                log.debug("Telegram still unreachable: %s: %s; next try in %.0fs", type(exc).__name__, exc, delay)
            else:
                self._reached()
                self._lost.clear()
                continue
            self._lost.clear()
            await asyncio.sleep(delay * self.rng.uniform(0.75, 1.25))
            delay = min(delay * 2, self.MAX_DELAY)


class TelegramSink:
    """Sends alerts and notices with the Application's bot; HTML first, plain text if the markup is refused.
    A single alert carries the 👍/👎 vote buttons (on the plain-text fallback too); digests and notices do not."""

    def __init__(self, application: Application, link: TelegramLink | None = None) -> None:
        self.bot = application.bot
        self.link = link

    @property
    def available(self) -> bool:
        """False while the Bot API cannot be reached: the notifier then holds Telegram alerts."""
        return self.link is None or self.link.available

    async def send(self, chat_id: int, thread_id: int | None, view: AlertView, tz: ZoneInfo) -> int | None:
        markup = vote_keyboard(view.outbox_id) if view.outbox_id is not None else None
        return await self._send(chat_id, thread_id, render_alert(view, tz=tz), lambda: render_alert_plain(view, tz=tz),
                                markup)

    async def send_digest(self, chat_id: int, thread_id: int | None, views: list[AlertView], tz: ZoneInfo,
                          title: str) -> int | None:
        message_id = None
        for page in render_digest(views, title=title, tz=tz):
            message_id = await self._send(chat_id, thread_id, page, lambda page=page: _plain(page))
        return message_id

    async def send_notice(self, chat_id: int, thread_id: int | None, text: str) -> int | None:
        return await self._send(chat_id, thread_id, render_notice(text), lambda: text)

    async def _send(self, chat_id: int, thread_id: int | None, html_text: str, plain: Callable[[], str],
                    markup: InlineKeyboardMarkup | None = None) -> int:
        try:
            try:
                message = await self.bot.send_message(
                    chat_id=chat_id, text=html_text, parse_mode=ParseMode.HTML, message_thread_id=thread_id,
                    link_preview_options=LinkPreviewOptions(is_disabled=True), reply_markup=markup,
                )
            except BadRequest as exc:
                if "parse entities" not in str(exc).lower():
                    raise
                log.warning("chat %s: HTML refused (%s); sending plain text", chat_id, exc)
                message = await self.bot.send_message(
                    chat_id=chat_id, text=plain(), message_thread_id=thread_id,
                    link_preview_options=LinkPreviewOptions(is_disabled=True), reply_markup=markup,
                )
        except RetryAfter as exc:
            raise RetryLater(_seconds(exc.retry_after), f"Telegram flood control: retry after {exc.retry_after}",
                             count_attempt=False, flood=True) from None
        except ChatMigrated as exc:
            raise ChatMoved(exc.new_chat_id) from None
        except Forbidden as exc:
            raise ChatGone(f"Telegram: {exc.message}") from None
        except BadRequest as exc:
            text = exc.message.lower()
            if any(gone in text for gone in ("chat not found", "bot was kicked", "chat_write_forbidden",
                                              "have no rights to send", "not enough rights")):
                raise ChatGone(f"Telegram: {exc.message}") from None
            if "thread not found" in text:
                raise Rejected(f"Telegram: {exc.message} (the forum topic was deleted)") from None
            raise Rejected(f"Telegram: {exc.message}") from None
        except InvalidToken:
            raise RetryLater(None, "Telegram refused the bot token (check NEWSWATCH_TELEGRAM_TOKEN)") from None
        except (TimedOut, NetworkError) as exc:
            reason = f"Telegram unreachable: {type(exc).__name__}: {exc.message}"
            if self.link is None:
                raise RetryLater(None, reason) from None
            self.link.lost(f"{type(exc).__name__}: {exc.message}")  # sends pause until the link is back
            raise RetryLater(0, reason, count_attempt=False, outage=True) from None
        except TelegramError as exc:
            raise RetryLater(None, f"Telegram error: {exc.message}") from None
        return message.message_id


def _plain(html_text: str) -> str:
    """Visible text of an HTML message, for the plain-text fallback."""
    return html.unescape(re.sub(r"<[^>]+>", "", html_text))


def _seconds(value: object) -> float:
    total = getattr(value, "total_seconds", None)
    return float(total()) if total else float(value)  # type: ignore[arg-type]
