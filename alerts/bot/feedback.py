"""The vote buttons under alerts and the /feedback command.

`vote_keyboard()` builds the two buttons (the Telegram sink sends them with every single
alert); `on_vote` stores a tap (see `newswatch.alerts.feedback`), answers it and shows
the counts on the buttons; `show` answers /feedback with the chat's votes per topic, the
precision they imply and the threshold they raise (`raised_threshold`). Voting is not a
settings change: in a group everyone may vote, once each (a later tap replaces the earlier
vote).
"""

from __future__ import annotations

import logging

from telegram import Chat as TelegramChat
from telegram import Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import ContextTypes

from newswatch.alerts.bot.guards import needs_chat
from newswatch.alerts.bot.replies import reply_kwargs
from newswatch.alerts.bot.state import state_of
from newswatch.alerts.deliver.format import TELEGRAM_TEXT_LIMIT, escape, fit, hashtag
from newswatch.alerts.deliver.outbox import ALERT
from newswatch.alerts.deliver.telegram import vote_keyboard
from newswatch.alerts.feedback import DOWN, MIN_VOTES, TARGET_PRECISION, UP, Votes, parse_vote_data, raised_threshold

log = logging.getLogger("newswatch.feedback")

THANKS = {UP: "Thanks — marked relevant", DOWN: "Thanks — marked not relevant"}
ALREADY = {UP: "You already marked it relevant", DOWN: "You already marked it not relevant"}
UNKNOWN = "This alert is no longer known here; votes count on alerts sent to this chat."
TITLE_CHARS = 120


async def on_vote(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query, chat, user = update.callback_query, update.effective_chat, update.effective_user
    if query is None or chat is None or user is None:
        return
    state = state_of(context)
    parsed = parse_vote_data(query.data or "")
    item = state.outbox.get(parsed[1]) if parsed else None
    if parsed is None or item is None or item.kind != ALERT or item.chat_id != chat.id:
        await query.answer(UNKNOWN)
        return
    vote, outbox_id = parsed
    before = state.votes.record(chat.id, item.story_id, user.id, vote, [t for t, _ in item.topics],
                                state.clock.now())
    log.info("chat %s: user %s voted %+d on story %s", chat.id, user.id, vote, item.story_id)
    await query.answer(ALREADY[vote] if before == vote else THANKS[vote])
    if before == vote or not isinstance(query.message, Message):
        return
    counts = state.votes.counts(chat.id, item.story_id)
    try:
        await query.edit_message_reply_markup(reply_markup=vote_keyboard(outbox_id, counts))
    except BadRequest as exc:
        if "not modified" not in str(exc).lower():
            log.warning("chat %s: could not show the votes on the alert: %s", chat.id, exc)
    except TelegramError as exc:  # the vote is stored; the buttons show it at the next tap
        log.warning("chat %s: could not show the votes on the alert: %s", chat.id, exc)


@needs_chat
async def show(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message) -> None:
    """/feedback: per topic, 👍 and 👎 given here, the precision they imply, the last 👎 titles."""
    await message.reply_text(fit(feedback_text(state_of(context).votes, chat.id), TELEGRAM_TEXT_LIMIT),
                             parse_mode=ParseMode.HTML, **reply_kwargs(message))


def feedback_text(votes: Votes, chat_id: int) -> str:
    summary = votes.summary(chat_id)
    if not summary:
        return "No votes here yet. Tap 👍 or 👎 under an alert to say whether it was worth sending."
    lines = ["<b>Feedback on alerts here</b> (👍 relevant, 👎 not; precision = 👍 / all votes)"]
    scored = votes.scored(chat_id)
    for topic in summary:
        precision = topic.precision
        share = f"{precision:.0%}" if precision is not None else "—"
        lines.append(f"{escape(hashtag(topic.topic))}: 👍 {topic.up}, 👎 {topic.down}, precision {share}"
                     + threshold_note(scored.get((chat_id, topic.topic), [])))
    lines.append(f"<i>Once {MIN_VOTES} alerts of a topic are voted on here and fewer than "
                 f"{TARGET_PRECISION:.0%} are 👍, its threshold here rises to the score from which they are.</i>")
    titles = votes.recent_down(chat_id)
    if titles:
        lines.append("")
        lines.append("<b>Last marked 👎</b>")
        for title in titles:
            title = " ".join(title.split()) or "(untitled)"
            lines.append("· " + escape(title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1] + "…"))
    return "\n".join(lines)


def threshold_note(scored: list[tuple[float, bool]]) -> str:
    """What the chat's votes on a topic do to its threshold (see `raised_threshold`)."""
    cut = raised_threshold(scored)
    return f"; the votes raise its threshold here to {cut:g}" if cut is not None else ""
