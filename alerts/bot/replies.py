"""How the bot answers: in the same chat and forum topic, as HTML, without link previews,
quoting the command in groups; and the small text pieces several replies share.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from telegram import InlineKeyboardMarkup, LinkPreviewOptions, Message, ReplyParameters, Update
from telegram.constants import ParseMode

from newswatch.alerts.bot.chat_settings import describe_duration, local_stamp
from newswatch.alerts.deliver.format import escape


def reply_kwargs(message: Message) -> dict:
    """No quote in a private chat; elsewhere quote the command (if it still exists)."""
    if message.chat.type == "private":
        return {"do_quote": False}
    return {"reply_parameters": ReplyParameters(message.message_id, allow_sending_without_reply=True)}


async def reply(message: Message, text: str, *, reply_markup: InlineKeyboardMarkup | None = None) -> Message:
    """Answer in the same chat (and forum topic), as HTML, without link previews."""
    return await message.reply_text(text, parse_mode=ParseMode.HTML, reply_markup=reply_markup,
                                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                                    **reply_kwargs(message))


async def refuse(update: Update, text: str) -> None:
    """Say no to a button press or a command, briefly."""
    if update.callback_query is not None:
        await update.callback_query.answer(text[:200], show_alert=True)
    elif update.effective_message is not None:
        await reply(update.effective_message, escape(text))


def arg_text(message: Message) -> str:
    """Everything after the command, as typed (quotes and spacing kept)."""
    parts = (message.text or "").split(maxsplit=1)
    return parts[1].strip() if len(parts) == 2 else ""


def command_of(message: Message | None) -> str:
    """The command a message starts with, without the bot's @name ("that" when there is none)."""
    if message is None or not message.text:
        return "that"
    return message.text.split()[0].split("@")[0]


def thread_of(message: Message | None) -> int | None:
    """The forum topic a message was sent in, if any."""
    if message is None:
        return None
    return message.message_thread_id if getattr(message, "is_topic_message", False) else None


def title_of(chat) -> str:
    """A chat's name as the chats table keeps it: a group's title, a person's name."""
    return chat.title or getattr(chat, "full_name", None) or chat.username or ""


def num(value: float | None) -> str:
    """A score or threshold as typed: 10, 2.5 (— when there is none)."""
    if value is None:
        return "—"
    return f"{value:g}"


def every(seconds: int) -> str:
    """A polling interval: 10m, 1h, 45s."""
    return describe_duration(timedelta(seconds=seconds)) if seconds >= 60 else f"{seconds}s"


def ago(moment: datetime | None, now: datetime, zone: str) -> str:
    """A past moment in the chat's time zone, and how long ago it was."""
    if moment is None:
        return "never"
    delta = now - moment
    passed = "just now" if delta.total_seconds() < 60 else f"{describe_duration(delta)} ago"
    return f"{local_stamp(moment, zone)} ({passed})"
