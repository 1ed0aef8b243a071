"""The python-telegram-bot client: building the Application and sending alerts through it.

`build_application()` points PTB at `telegram.api_url` (Telegram, or a local Bot API
server) with PTB's `AIORateLimiter` keeping under Telegram's limits; retries are not left to
the limiter but decided durably by the notifier. `TelegramSink` sends one alert and maps
PTB's exceptions onto the notifier's delivery errors. The token is never logged.
"""

from __future__ import annotations

import html
import logging
import os
import re
from collections.abc import Callable
from zoneinfo import ZoneInfo

os.environ.setdefault("PTB_TIMEDELTA", "1")  # retry_after as a timedelta, without deprecation noise

from telegram import LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder

from alerts.config import TelegramConfig
from alerts.format import AlertView, render_alert, render_alert_plain, render_digest
from alerts.notifier import ChatGone, ChatMoved, Rejected, RetryLater

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


class TelegramSink:
    """Sends alerts with the Application's bot; HTML first, plain text if the markup is refused."""

    def __init__(self, application: Application) -> None:
        self.bot = application.bot

    async def send(self, chat_id: int, thread_id: int | None, view: AlertView, tz: ZoneInfo) -> int | None:
        return await self._send(chat_id, thread_id, render_alert(view, tz=tz), lambda: render_alert_plain(view, tz=tz))

    async def send_digest(self, chat_id: int, thread_id: int | None, views: list[AlertView], tz: ZoneInfo,
                          title: str) -> int | None:
        message_id = None
        for page in render_digest(views, title=title, tz=tz):
            message_id = await self._send(chat_id, thread_id, page, lambda page=page: _plain(page))
        return message_id

    async def _send(self, chat_id: int, thread_id: int | None, html_text: str, plain: Callable[[], str]) -> int:
        try:
            try:
                message = await self.bot.send_message(
                    chat_id=chat_id, text=html_text, parse_mode=ParseMode.HTML, message_thread_id=thread_id,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                )
            except BadRequest as exc:
                if "parse entities" not in str(exc).lower():
                    raise
                log.warning("chat %s: HTML refused (%s); sending plain text", chat_id, exc)
                message = await self.bot.send_message(
                    chat_id=chat_id, text=plain(), message_thread_id=thread_id,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
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
            raise RetryLater(None, f"Telegram unreachable: {type(exc).__name__}: {exc.message}") from None
        except TelegramError as exc:
            raise RetryLater(None, f"Telegram error: {exc.message}") from None
        return message.message_id


def _plain(html_text: str) -> str:
    """Visible text of an HTML message, for the plain-text fallback."""
    return html.unescape(re.sub(r"<[^>]+>", "", html_text))


def _seconds(value: object) -> float:
    total = getattr(value, "total_seconds", None)
    return float(total()) if total else float(value)  # type: ignore[arg-type]
