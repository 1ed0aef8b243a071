"""The one table of the bot's commands, and what is built from it: Telegram's command menu
(`publish_menu`) and the /help text (`help_text`); `core.BotCommands.install` registers the
handlers it names.

Each row gives a command's name, its line in the menu, its line in /help (none for /help
itself, nor for /enablesource, which shares /disablesource's line), the /help section it is
listed under, its handler (in the module of its family) and who may use it:
  * EVERYONE: anyone in the chat.
  * GROUP_ADMINS: it changes what the chat receives, so in a group only the group's
    administrators may use it (`@settings_change`; some only show the setting when typed
    without arguments, and that is open to all).
  * BOT_ADMINS: the persons in `telegram.admins` (`@admin`); only their menus and their /help
    list these commands.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import groupby

from telegram import Bot, BotCommand, BotCommandScopeChat, BotCommandScopeChatMember, BotCommandScopeDefault, Update
from telegram import Chat as TelegramChat
from telegram import Message
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from newswatch.alerts.bot import feedback, settings, sources, subscribe, views, watching
from newswatch.alerts.bot.admin import broadcast
from newswatch.alerts.bot.guards import Callback, needs_chat
from newswatch.alerts.bot.replies import command_of, reply
from newswatch.alerts.bot.state import state_of
from newswatch.alerts.deliver.format import escape

log = logging.getLogger("newswatch.bot")

EVERYONE, GROUP_ADMINS, BOT_ADMINS = "everyone", "group admins", "bot admins"
TOPICS, TIMING, LOOKING_BACK, WATCHES, ADMIN = "topics", "timing", "looking back", "watches", "admin"

INTRO = ("<b>newswatch</b> watches news sources and alerts this chat when a story about Korea diplomacy "
         "matches a topic it follows, or one of its own watches.")
HEADINGS = {
    TOPICS: "<b>Topics</b>",
    TIMING: "<b>When alerts arrive</b>",
    LOOKING_BACK: "<b>Looking back</b>",
    WATCHES: "<b>Your own watches</b> (alerts for this chat only)",
    ADMIN: "<b>Admin</b>",
}
GROUP_NOTE = "In a group, only its administrators change its topics, timing and watches; everyone can look."
WATCH_RULES = (
    "Rules: every word must appear (<code>Hanoi summit</code>); <code>\"exact phrase\"</code>; "
    "<code>Hanoi OR Hue</code> for either; <code>-G20</code> leaves out stories with G20; "
    "<code>sanction*</code> for any ending; <code>visit(s)</code> for an optional part. "
    "Case does not matter; English words match whole words; Korean, Chinese and Japanese "
    "words also match inside longer words."
)


@needs_chat
async def show_help(update: Update, context: ContextTypes.DEFAULT_TYPE, chat: TelegramChat, message: Message) -> None:
    permissions = state_of(context).permissions
    await reply(message, help_text(admin=permissions.is_bot_admin(update),
                                   group_admins_only=not permissions.everyone_in_groups))


@dataclass(frozen=True)
class Command:
    name: str
    menu: str              # the line in Telegram's command menu
    help: str | None       # the line in /help (HTML), None when it has none of its own
    section: str | None    # the /help section it is listed under
    handler: Callback
    who: str = EVERYONE
    needs_votes: bool = False  # registered only where votes are kept (`BotState.keeps_votes`)


COMMANDS = (
    Command("start", "Subscribe this chat to every topic", "/start — subscribe this chat to every topic",
            TOPICS, subscribe.start, GROUP_ADMINS),
    Command("stop", "Stop all alerts in this chat", "/stop — stop all alerts here", TOPICS, subscribe.stop, GROUP_ADMINS),
    Command("topics", "List topics, with buttons to switch each on or off",
            "/topics — list topics, with buttons to switch each on or off", TOPICS, subscribe.list_topics),
    Command("subscribe", "Follow one topic: /subscribe summit",
            "/subscribe <i>topic</i> — follow one topic (<code>all</code> for every one)",
            TOPICS, subscribe.subscribe, GROUP_ADMINS),
    Command("unsubscribe", "Stop following one topic", "/unsubscribe <i>topic</i> — stop following one topic",
            TOPICS, subscribe.unsubscribe, GROUP_ADMINS),
    Command("threshold", "This chat's own score bar: /threshold summit 10",
            "/threshold <i>topic</i> <i>score</i> — this chat's own bar for a topic (<code>default</code> resets it)",
            TOPICS, subscribe.threshold, GROUP_ADMINS),
    Command("mute", "Pause alerts for a while: /mute 2h", "/mute <i>duration</i> — no alerts for a while: 30m, 2h, 1d",
            TIMING, settings.mute, GROUP_ADMINS),
    Command("unmute", "Resume alerts after /mute", "/unmute — alerts again", TIMING, settings.unmute, GROUP_ADMINS),
    Command("quiet", "Hold alerts at night: /quiet 23:00-07:00 Asia/Seoul",
            "/quiet 23:00-07:00 [<i>Area/City</i>] — hold alerts at night and deliver them after "
            "(<code>/quiet off</code>)", TIMING, settings.quiet, GROUP_ADMINS),
    Command("digest", "Batch alerts: /digest off, hourly or daily 08:00",
            "/digest off|hourly|daily HH:MM — one batch instead of instant alerts", TIMING, settings.digest,
            GROUP_ADMINS),
    Command("timezone", "This chat's time zone: /timezone Asia/Seoul",
            "/timezone <i>Area/City</i> — this chat's time zone, e.g. Asia/Seoul", TIMING, settings.timezone,
            GROUP_ADMINS),
    Command("settings", "Show this chat's settings", "/settings — this chat's settings", TIMING, settings.settings),
    Command("latest", "The last matched stories: /latest [topic]",
            "/latest [<i>topic</i>] [<i>n</i>] — the last matched stories", LOOKING_BACK, views.latest),
    Command("search", "Search stored stories: /search Hanoi summit", "/search <i>words</i> — search the stored stories",
            LOOKING_BACK, views.search),
    Command("trend", "Chart of matched stories per day: /trend [topic] [days]",
            "/trend [<i>topic</i>] [<i>days</i>] — a chart of matched stories per day", LOOKING_BACK, views.trend),
    Command("status", "Sources, last fetch and alert queue", "/status — sources, last fetch and the alert queue",
            LOOKING_BACK, views.status),
    Command("feedback", "Votes on alerts here and the precision they imply",
            "/feedback — the 👍/👎 given under alerts here, and the precision they imply per topic",
            LOOKING_BACK, feedback.show, needs_votes=True),
    Command("watch", "Watch your own words: /watch Hanoi summit",
            "/watch <i>rule</i> — e.g. <code>/watch Hanoi summit</code> or <code>/watch 개성공단</code>",
            WATCHES, watching.watch, GROUP_ADMINS),
    Command("watches", "List this chat's watches", "/watches — list them", WATCHES, watching.list_watches),
    Command("unwatch", "Remove a watch: /unwatch 1", "/unwatch <i>n</i> — remove watch n", WATCHES, watching.unwatch,
            GROUP_ADMINS),
    Command("help", "What this bot does and how to use it", None, None, show_help),
    Command("sources", "Every source with its health", "/sources — every source with its health",
            ADMIN, sources.sources, BOT_ADMINS),
    Command("addsource", "Poll a new feed: /addsource name url [interval]",
            "/addsource <i>name</i> <i>url</i> [<i>interval</i>] — poll a new feed (kept across restarts)",
            ADMIN, sources.add_source, BOT_ADMINS),
    Command("disablesource", "Stop polling a source: /disablesource name",
            "/disablesource <i>name</i>, /enablesource <i>name</i> — stop or resume polling a source",
            ADMIN, sources.disable_source, BOT_ADMINS),
    Command("enablesource", "Poll a disabled source again", None, ADMIN, sources.enable_source, BOT_ADMINS),
    Command("broadcast", "Send a message to every active chat", "/broadcast <i>text</i> — send a message to every "
            "active chat", ADMIN, broadcast, BOT_ADMINS),
)


def menu(*, admin: bool = False) -> list[BotCommand]:
    """The command menu: everyone's, or a bot admin's (everyone's and the admin commands)."""
    return [BotCommand(c.name, c.menu) for c in COMMANDS if admin or c.who != BOT_ADMINS]


def help_text(*, admin: bool = False, group_admins_only: bool = True) -> str:
    """/help: the commands by section, with the notes that close a section."""
    notes = {TOPICS: [GROUP_NOTE] if group_admins_only else [], WATCHES: [WATCH_RULES]}
    listed = [c for c in COMMANDS if c.help is not None and (admin or c.who != BOT_ADMINS)]
    lines = [INTRO]
    for section, commands in groupby(listed, key=lambda c: c.section):
        lines += ["", HEADINGS[section], *(c.help for c in commands), *notes.get(section, [])]
    return "\n".join(lines)


async def publish_menu(bot: Bot, admins: dict[int, frozenset[int] | None]) -> None:
    """Everyone's menu by default; each bot admin's own, in the private chat with the bot and
    in each chat their entry names."""
    await bot.set_my_commands(menu(), scope=BotCommandScopeDefault())
    full = menu(admin=True)
    for user_id, chats in sorted(admins.items()):
        scopes = [BotCommandScopeChat(user_id)] + [BotCommandScopeChatMember(c, user_id) for c in sorted(chats or ())]
        for scope in scopes:
            try:
                await bot.set_my_commands(full, scope=scope)
            except TelegramError as exc:  # an admin who never opened a chat with the bot
                log.info("admin menu for user %s not set: %s", user_id, exc)


async def unknown(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A command not in the table, in a private chat."""
    message = update.effective_message
    if message is None or not message.text:
        return
    await reply(message, f"I don't know {escape(command_of(message))}. /help lists what I understand.")


async def not_a_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A plain message in a private chat: a pointer to /help."""
    message = update.effective_message
    if message is None or message.migrate_from_chat_id or message.migrate_to_chat_id:
        return
    await reply(message, "I answer commands only, such as /latest or /search Hanoi summit. "
                         "/help lists them all.")
