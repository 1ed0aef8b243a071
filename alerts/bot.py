"""The subscriber's interface: Telegram commands and their replies.

`BotCommands` holds the handlers (small `async def (update, context)` methods) and the state
they act on; `install()` registers them on a PTB Application and `publish_menu()` shows them
in Telegram's command menu (`setMyCommands`).
"""

from __future__ import annotations

import html
import logging

from telegram import BotCommand, Update
from telegram.constants import ParseMode
from telegram.ext import Application, CommandHandler, ContextTypes

from alerts.subscriptions import Subscriptions
from crawler.clock import Clock

log = logging.getLogger("newswatch.bot")

MENU = [
    ("start", "Subscribe this chat to all topics"),
    ("stop", "Unsubscribe this chat from everything"),
    ("topics", "List topics and this chat's subscriptions"),
    ("help", "What this bot does and its commands"),
]


class BotCommands:
    def __init__(self, subscriptions: Subscriptions, topics: dict[str, str], clock: Clock) -> None:
        """`topics`: topic name -> one-line description, in config order."""
        self.subscriptions = subscriptions
        self.topics = topics
        self.clock = clock

    def install(self, application: Application) -> None:
        application.add_handler(CommandHandler("start", self.start))
        application.add_handler(CommandHandler("stop", self.stop))
        application.add_handler(CommandHandler("topics", self.list_topics))
        application.add_handler(CommandHandler("help", self.help))
        application.add_error_handler(self.on_error)

    async def publish_menu(self, application: Application) -> None:
        await application.bot.set_my_commands([BotCommand(name, text) for name, text in MENU])

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = update.effective_chat
        message = update.effective_message
        if chat is None or message is None:
            return
        thread_id = message.message_thread_id if getattr(message, "is_topic_message", False) else None
        self.subscriptions.start(chat.id, self.topics, kind=chat.type, title=chat.title or chat.full_name or "",
                                 thread_id=thread_id, now=self.clock.now())
        log.info("chat %s: subscribed to all topics", chat.id)
        names = ", ".join(self.topics)
        await message.reply_text(
            f"Subscribed to all topics: {html.escape(names)}.\n"
            "Alerts arrive here as stories break. /topics lists them, /stop ends alerts, /help explains.",
            parse_mode=ParseMode.HTML,
        )

    async def stop(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = update.effective_chat
        message = update.effective_message
        if chat is None or message is None:
            return
        self.subscriptions.stop(chat.id)
        log.info("chat %s: unsubscribed from everything", chat.id)
        await message.reply_text("Unsubscribed: no more alerts here. /start subscribes again.")

    async def list_topics(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = update.effective_chat
        message = update.effective_message
        if chat is None or message is None:
            return
        mine = self.subscriptions.topics_of(chat.id)
        lines = ["<b>Topics</b>"]
        for name, description in self.topics.items():
            mark = "✅" if name in mine else "▫️"
            lines.append(f"{mark} <b>{html.escape(name)}</b> — {html.escape(description)}")
        await message.reply_text("\n".join(lines), parse_mode=ParseMode.HTML)

    async def help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None:
            return
        await message.reply_text(help_text(), parse_mode=ParseMode.HTML)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("bot handler failed: %s: %s", type(context.error).__name__, context.error)


def help_text() -> str:
    lines = [
        "<b>newswatch</b> watches news sources and alerts this chat when a story matches a topic.",
        "",
    ]
    lines += [f"/{name} — {html.escape(text)}" for name, text in MENU]
    return "\n".join(lines)
