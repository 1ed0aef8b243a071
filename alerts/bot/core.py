"""The subscriber's interface: Telegram commands, topic buttons and membership changes.

`BotCommands` holds the handlers (small `async def (update, context)` methods) and the state
they act on; `install()` registers them on a PTB Application and `publish_menu()` shows the
commands in Telegram's menu (`setMyCommands`; admin chats also see the admin commands).

Every command sets state that other parts read: subscriptions and per-chat thresholds (the
dispatcher), mute, quiet hours, digest and time zone (the notifier), watches (the
dispatcher, through `newswatch.alerts.match.watches`) and runtime sources (the daemon's scheduler, through
`on_sources_changed`). Nothing is kept in memory: a restart loses nothing.

Who may do what (the rules and their guards are in `newswatch.alerts.bot.permissions`):
  * `telegram.allowed_chats`, when set, limits the bot to those chats (and the chats named
    in `telegram.admins`); any other chat gets a polite refusal and nothing is stored for it.
  * Admin commands (/sources, /addsource, /disablesource, /enablesource, /broadcast) are
    for the persons listed in `telegram.admins` (`@admin_command`).
  * In groups, only the group's administrators change what the group receives
    (`@settings_change`), unless `telegram.group_settings: everyone`; what only reads
    (/help, /topics, /latest, /search, /trend, /status, /settings, /watches, /feedback) is open,
    and so are the 👍/👎 buttons under alerts (`newswatch.alerts.bot.feedback`: one vote per person).
  * A plain message in a private chat gets a pointer to /help; in groups it is ignored.
  * Commands work in private chats, groups, forum topics (alerts go to the topic where
    /start was sent) and channels (posted as the bot's administrator). Replies in a group
    quote the command; a command addressed to another bot (/start@other_bot) is ignored.
  * When the bot is blocked, kicked or leaves, the chat is deactivated; when it is added
    to a group or channel, nothing happens until someone sends /start there.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from telegram import (
    BotCommand,
    BotCommandScopeChat,
    BotCommandScopeChatMember,
    BotCommandScopeDefault,
    ChatMember,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from newswatch.alerts.bot.chat_settings import (
    SettingError,
    describe_duration,
    find_timezone,
    local_stamp,
    parse_digest,
    parse_mute,
    parse_quiet,
)
from newswatch.alerts.config import NewswatchConfig
from newswatch.alerts.feedback import VOTE_PREFIX, Votes
from newswatch.alerts.bot.feedback import FeedbackCommands
from newswatch.alerts.deliver.format import TELEGRAM_TEXT_LIMIT, escape, fit, hashtag, plural, safe_url, stamp
from newswatch.alerts.bot.history import History, search_words
from newswatch.alerts.deliver.outbox import Outbox
from newswatch.alerts.bot.permissions import Permissions, admin_command, settings_change
from newswatch.alerts.runtime_sources import RuntimeSources, SourceRefused
from newswatch.alerts.subscriptions import Chat, Subscriptions
from newswatch.alerts.deliver.timing import zone
from newswatch.alerts.bot.trend import DEFAULT_DAYS, MAX_DAYS, daily_counts, render_png
from newswatch.alerts.match.watches import RuleError, Watches, parse_rule
from newswatch.crawler.clock import Clock
from newswatch.crawler.sources import SourceConfig
from newswatch.crawler.store import HELD_BASELINE, HELD_TOO_OLD
from newswatch.crawler.urls import redact_url

log = logging.getLogger("newswatch.bot")

MENU = [
    ("start", "Subscribe this chat to every topic"),
    ("stop", "Stop all alerts in this chat"),
    ("topics", "List topics, with buttons to switch each on or off"),
    ("subscribe", "Follow one topic: /subscribe summit"),
    ("unsubscribe", "Stop following one topic"),
    ("threshold", "This chat's own score bar: /threshold summit 10"),
    ("mute", "Pause alerts for a while: /mute 2h"),
    ("unmute", "Resume alerts after /mute"),
    ("quiet", "Hold alerts at night: /quiet 23:00-07:00 Asia/Seoul"),
    ("digest", "Batch alerts: /digest off, hourly or daily 08:00"),
    ("timezone", "This chat's time zone: /timezone Asia/Seoul"),
    ("settings", "Show this chat's settings"),
    ("latest", "The last matched stories: /latest [topic]"),
    ("search", "Search stored stories: /search Hanoi summit"),
    ("trend", "Chart of matched stories per day: /trend [topic] [days]"),
    ("status", "Sources, last fetch and alert queue"),
    ("feedback", "Votes on alerts here and the precision they imply"),
    ("watch", "Watch your own words: /watch Hanoi summit"),
    ("watches", "List this chat's watches"),
    ("unwatch", "Remove a watch: /unwatch 1"),
    ("help", "What this bot does and how to use it"),
]
ADMIN_MENU = [
    ("sources", "Every source with its health"),
    ("addsource", "Poll a new feed: /addsource name url [interval]"),
    ("disablesource", "Stop polling a source: /disablesource name"),
    ("enablesource", "Poll a disabled source again"),
    ("broadcast", "Send a message to every active chat"),
]

LATEST_DEFAULT, LATEST_MAX = 5, 20
SEARCH_LIMIT = 10
MAX_THRESHOLD = 1000.0
TOPIC_BUTTON = "topic:"
TITLE_CHARS = 160
REFUSAL = ("Sorry, this newswatch bot serves a fixed list of chats, and this one is not on it. "
           "Ask the bot's operator to add chat id {chat_id} to telegram.allowed_chats.")
NOT_STARTED = "This chat has no subscriptions yet: send /start first."


class BotCommands:
    def __init__(self, *, config: NewswatchConfig, subscriptions: Subscriptions, watches: Watches,
                 history: History, runtime_sources: RuntimeSources, clock: Clock, outbox: Outbox | None = None,
                 votes: Votes | None = None,
                 on_sources_changed: Callable[[list[SourceConfig]], None] | None = None,
                 on_queued: Callable[[], None] = lambda: None) -> None:
        self.subscriptions = subscriptions
        self.watches = watches
        self.history = history
        self.runtime_sources = runtime_sources
        self.clock = clock
        self.outbox = outbox
        self.votes = votes
        self.feedback = FeedbackCommands(votes, outbox, clock) if votes is not None and outbox is not None else None
        self.on_sources_changed = on_sources_changed
        self.on_queued = on_queued  # wakes delivery after a broadcast was queued in the outbox
        self.permissions = Permissions(config.telegram, clock)
        self.apply_config(config)

    def apply_config(self, config: NewswatchConfig) -> None:
        """Take up a (re)loaded config: topics, thresholds, admins, allowed chats."""
        self.config = config
        self.topics = {name: t.description for name, t in config.topics.items()}
        self.thresholds = {name: t.threshold for name, t in config.topics.items()}
        self.permissions.apply_config(config.telegram)
        allowed = config.telegram.allowed_chats
        self.allowed = None if allowed is None else set(allowed) | config.telegram.admin_places

    # -- wiring ------------------------------------------------------------------------------
    def install(self, application: Application) -> None:
        only_new = filters.UpdateType.MESSAGE | filters.UpdateType.CHANNEL_POST
        application.add_handler(TypeHandler(Update, self.gate), group=-1)
        commands: dict[str, Callable] = {
            "start": self.start, "stop": self.stop, "topics": self.list_topics, "help": self.help,
            "subscribe": self.subscribe, "unsubscribe": self.unsubscribe, "threshold": self.threshold,
            "mute": self.mute, "unmute": self.unmute, "quiet": self.quiet, "digest": self.digest,
            "timezone": self.timezone, "settings": self.settings, "latest": self.latest,
            "search": self.search, "trend": self.trend, "status": self.status,
            "watch": self.watch, "watches": self.list_watches, "unwatch": self.unwatch,
            "sources": self.sources, "addsource": self.add_source, "disablesource": self.disable_source,
            "enablesource": self.enable_source, "broadcast": self.broadcast,
        }
        if self.feedback is not None:
            commands["feedback"] = self.feedback.show
        for name, handler in commands.items():
            application.add_handler(CommandHandler(name, handler, filters=only_new))
        application.add_handler(CallbackQueryHandler(self.on_topic_button, pattern=f"^{TOPIC_BUTTON}"))
        if self.feedback is not None:
            application.add_handler(CallbackQueryHandler(self.feedback.on_vote, pattern=f"^{VOTE_PREFIX}"))
        application.add_handler(ChatMemberHandler(self.on_membership, ChatMemberHandler.MY_CHAT_MEMBER))
        application.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, self.on_migrate))
        application.add_handler(MessageHandler(filters.COMMAND & filters.ChatType.PRIVATE & only_new, self.unknown))
        application.add_handler(MessageHandler(~filters.COMMAND & filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE,
                                               self.not_a_command))
        application.add_error_handler(self.on_error)

    async def publish_menu(self, application: Application) -> None:
        public = [BotCommand(name, text) for name, text in MENU]
        await application.bot.set_my_commands(public, scope=BotCommandScopeDefault())
        full = public + [BotCommand(name, text) for name, text in ADMIN_MENU]
        for user_id, chats in sorted(self.permissions.admins.items()):
            scopes = [BotCommandScopeChat(user_id)] + [BotCommandScopeChatMember(c, user_id) for c in sorted(chats or ())]
            for scope in scopes:
                try:
                    await application.bot.set_my_commands(full, scope=scope)
                except TelegramError as exc:  # an admin who never opened a chat with the bot
                    log.info("admin menu for user %s not set: %s", user_id, exc)

    # -- gate, errors, membership -------------------------------------------------------------
    async def gate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Refuse chats outside `telegram.allowed_chats` before any handler runs."""
        chat = update.effective_chat
        if self.allowed is None or chat is None or chat.id in self.allowed:
            return
        if update.callback_query is not None:
            await update.callback_query.answer(REFUSAL.format(chat_id=chat.id)[:200], show_alert=True)
        elif update.message or update.channel_post:
            message = update.effective_message
            if message is not None and (message.text or "").startswith("/"):
                log.info("chat %s is not in telegram.allowed_chats: refused %s", chat.id, message.text.split()[0][:40])
                await _reply(message, escape(REFUSAL.format(chat_id=chat.id)))
        raise ApplicationHandlerStop

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        error = context.error
        log.error("bot handler failed: %s: %s", type(error).__name__, error,
                  exc_info=(type(error), error, error.__traceback__) if error else None)
        if isinstance(update, Update) and update.effective_message is not None and not isinstance(error, TelegramError):
            try:
                await _reply(update.effective_message,
                             f"Sorry, that failed on our side ({escape(type(error).__name__)}); it has been logged.")
            except TelegramError:
                pass

    async def on_membership(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        change = update.my_chat_member
        if change is None:
            return
        chat, old, new = change.chat, change.old_chat_member.status, change.new_chat_member.status
        if new in (ChatMember.BANNED, ChatMember.LEFT):
            reason = "bot blocked by the user" if chat.type == "private" else f"bot removed from the {chat.type}"
            if self.subscriptions.chat(chat.id) is not None:
                self.subscriptions.deactivate(chat.id, reason)
            log.info("chat %s: %s; deactivated", chat.id, reason)
        elif old in (ChatMember.BANNED, ChatMember.LEFT) and new in (
                ChatMember.MEMBER, ChatMember.ADMINISTRATOR, ChatMember.OWNER):
            log.info("chat %s (%s): bot added; waiting for /start there", chat.id, chat.type)

    async def on_migrate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or not message.migrate_to_chat_id:
            return
        old, new = message.chat_id, message.migrate_to_chat_id
        if self.subscriptions.chat(old) is None:
            return
        self.subscriptions.migrate(old, new)
        if self.outbox is not None:
            self.outbox.migrate_chat(old, new)
        if self.votes is not None:
            self.votes.migrate_chat(old, new)
        log.info("chat %s: upgraded to supergroup %s; moved with its settings", old, new)

    async def refuse(self, update: Update, text: str) -> None:
        """Say no to a button press or a command, briefly (used by the permission guards)."""
        if update.callback_query is not None:
            await update.callback_query.answer(text[:200], show_alert=True)
        elif update.effective_message is not None:
            await _reply(update.effective_message, escape(text))

    async def not_a_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or message.migrate_from_chat_id or message.migrate_to_chat_id:
            return
        await _reply(message, "I answer commands only, such as /latest or /search Hanoi summit. "
                              "/help lists them all.")

    async def unknown(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or not message.text:
            return
        command = message.text.split()[0].split("@")[0]
        await _reply(message, f"I don't know {escape(command)}. /help lists what I understand.")

    # -- subscribing ---------------------------------------------------------------------------
    @settings_change()
    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message = update.effective_chat, update.effective_message
        if chat is None or message is None:
            return
        thread_id = _thread(message)
        self.subscriptions.start(chat.id, self.topics, kind=chat.type, title=_title(chat),
                                 thread_id=thread_id, now=self.clock.now())
        log.info("chat %s (%s): subscribed to all topics", chat.id, chat.type)
        where = " in this topic" if thread_id is not None else " here"
        await _reply(message,
                     f"Subscribed to all topics: {escape(', '.join(self.topics))}.\n"
                     f"Alerts arrive{where} as stories break. /topics switches topics on and off, "
                     "/watch adds your own words, /stop ends alerts, /help explains.")

    @settings_change()
    async def stop(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message = update.effective_chat, update.effective_message
        if chat is None or message is None:
            return
        self.subscriptions.stop(chat.id)
        log.info("chat %s: unsubscribed from everything", chat.id)
        kept = len(self.watches.of(chat.id))
        extra = f" This chat keeps its {plural(kept, 'watch')} for then." if kept else ""
        await _reply(message, f"Unsubscribed: no more alerts here. /start subscribes again.{extra}")

    async def list_topics(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message = update.effective_chat, update.effective_message
        if chat is None or message is None:
            return
        if chat.type == "channel":  # every reader of a channel could press its buttons
            await _reply(message, self._topics_text(chat.id) + "\n\n/subscribe and /unsubscribe change them here.")
            return
        await _reply(message, self._topics_text(chat.id), reply_markup=self._topics_keyboard(chat.id))

    def _topics_text(self, chat_id: int) -> str:
        mine = self.subscriptions.topics_of(chat_id)
        chat = self.subscriptions.chat(chat_id)
        active = chat is not None and chat.active
        lines = ["<b>Topics</b> (✅ followed here; tap a button to switch)"]
        for name, description in self.topics.items():
            mark = "✅" if name in mine and active else "▫️"
            own = mine.get(name)
            bar = f"threshold {_num(own)} (yours; topic {_num(self.thresholds[name])})" if own is not None \
                else f"threshold {_num(self.thresholds[name])}"
            lines.append(f"{mark} <b>{escape(name)}</b> — {escape(description)} <i>{bar}</i>")
        if not active:
            lines.append("\nThis chat gets no alerts now: /start subscribes it to every topic.")
        return "\n".join(lines)

    def _topics_keyboard(self, chat_id: int) -> InlineKeyboardMarkup:
        mine = self.subscriptions.topics_of(chat_id)
        chat = self.subscriptions.chat(chat_id)
        active = chat is not None and chat.active
        rows = []
        for name in self.topics:
            on = name in mine and active
            rows.append([InlineKeyboardButton(f"{'✅' if on else '▫️'} {name}", callback_data=f"{TOPIC_BUTTON}{name}")])
        return InlineKeyboardMarkup(rows)

    @settings_change()
    async def on_topic_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query, chat = update.callback_query, update.effective_chat
        if query is None or chat is None:
            return
        name = (query.data or "")[len(TOPIC_BUTTON):]
        if name not in self.topics:
            await query.answer("That topic no longer exists; send /topics again.")
            return
        if chat.type == "channel":
            await query.answer("In a channel, post /subscribe or /unsubscribe instead.")
            return
        message = query.message if isinstance(query.message, Message) else None
        was_active = (c := self.subscriptions.chat(chat.id)) is not None and c.active
        self.subscriptions.ensure(chat.id, kind=chat.type, title=_title(chat),
                                  thread_id=_thread(message) if message else None, now=self.clock.now())
        if name in self.subscriptions.topics_of(chat.id) and was_active:
            self.subscriptions.unsubscribe(chat.id, name)
            note = f"{name}: off"
        else:
            self.subscriptions.subscribe(chat.id, name)
            note = f"{name}: on"
        log.info("chat %s: topic button %s", chat.id, note)
        await query.answer(note)
        if message is not None:
            try:
                await query.edit_message_text(self._topics_text(chat.id), parse_mode=ParseMode.HTML,
                                              reply_markup=self._topics_keyboard(chat.id))
            except BadRequest as exc:
                if "not modified" not in str(exc).lower():
                    log.warning("chat %s: could not update the topics message: %s", chat.id, exc)

    @settings_change()
    async def subscribe(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message = update.effective_chat, update.effective_message
        if chat is None or message is None:
            return
        if not context.args:
            await _reply(message, f"Which topic? /subscribe {escape(next(iter(self.topics)))} (or /subscribe all). "
                                  f"Topics: {escape(', '.join(self.topics))}.")
            return
        names = list(self.topics) if context.args[0].lower() == "all" else [self._topic(context.args[0])]
        if names == [None]:
            await _reply(message, self._no_topic(context.args[0]))
            return
        revived = self.subscriptions.ensure(chat.id, kind=chat.type, title=_title(chat), thread_id=_thread(message),
                                            now=self.clock.now())
        added = [n for n in names if self.subscriptions.subscribe(chat.id, n)]
        log.info("chat %s: subscribed to %s", chat.id, ", ".join(names))
        if added:
            await _reply(message, f"Subscribed to {escape(', '.join(added))}. /topics shows them all.")
        elif revived:
            await _reply(message, f"Alerts are on again here for {escape(', '.join(names))}.")
        else:
            await _reply(message, f"Already subscribed to {escape(', '.join(names))}.")

    @settings_change()
    async def unsubscribe(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message = update.effective_chat, update.effective_message
        if chat is None or message is None:
            return
        if not context.args:
            await _reply(message, "Which topic? e.g. /unsubscribe summit (or /unsubscribe all).")
            return
        names = list(self.topics) if context.args[0].lower() == "all" else [self._topic(context.args[0])]
        if names == [None]:
            await _reply(message, self._no_topic(context.args[0]))
            return
        removed = [n for n in names if self.subscriptions.unsubscribe(chat.id, n)]
        log.info("chat %s: unsubscribed from %s", chat.id, ", ".join(removed) or "nothing")
        if not removed:
            await _reply(message, f"This chat was not subscribed to {escape(', '.join(names))}.")
            return
        left = self.subscriptions.topics_of(chat.id)
        rest = f"Still following: {escape(', '.join(left))}." if left else "No topics left here; /subscribe adds one."
        await _reply(message, f"Unsubscribed from {escape(', '.join(removed))}. {rest}")

    @settings_change(reads=lambda args: len(args) < 2)
    async def threshold(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message = update.effective_chat, update.effective_message
        if chat is None or message is None:
            return
        args = context.args or []
        mine = self.subscriptions.topics_of(chat.id)
        if not args:
            if not mine:
                await _reply(message, NOT_STARTED)
                return
            lines = ["<b>Thresholds here</b> (a story alerts when its score reaches it)"]
            for name, own in mine.items():
                default = self.thresholds.get(name)
                lines.append(f"{escape(name)}: {_num(own)} (yours; topic {_num(default)})" if own is not None
                             else f"{escape(name)}: {_num(default)} (topic default)")
            lines.append("Change one with /threshold summit 10, reset with /threshold summit default.")
            await _reply(message, "\n".join(lines))
            return
        name = self._topic(args[0])
        if name is None:
            await _reply(message, self._no_topic(args[0]))
            return
        if name not in mine:
            await _reply(message, f"This chat does not follow {escape(name)}; /subscribe {escape(name)} first.")
            return
        if len(args) == 1:
            own = mine[name]
            await _reply(message, f"{escape(name)}: threshold {_num(own if own is not None else self.thresholds[name])}"
                                  f"{' (yours)' if own is not None else ' (topic default)'}.")
            return
        if args[1].lower() in ("default", "reset", "off"):
            self.subscriptions.set_threshold(chat.id, name, None)
            await _reply(message, f"{escape(name)}: back to the topic's threshold, {_num(self.thresholds[name])}.")
            return
        try:
            value = float(args[1].replace(",", "."))
        except ValueError:
            value = float("nan")
        if not 0 < value <= MAX_THRESHOLD:
            await _reply(message, f"“{escape(args[1])}” is not a score; give a number above 0, e.g. "
                                  f"/threshold {escape(name)} 10 (the topic's is {_num(self.thresholds[name])}).")
            return
        self.subscriptions.set_threshold(chat.id, name, value)
        log.info("chat %s: threshold %s = %s", chat.id, name, value)
        default = self.thresholds[name]
        direction = "fewer" if value > default else "more" if value < default else "the usual"
        await _reply(message, f"{escape(name)}: alerts here now need a score of {_num(value)} "
                              f"(topic default {_num(self.thresholds[name])}), so {direction} alerts. "
                              "The topic's required words still apply.")

    # -- timing -------------------------------------------------------------------------------
    @settings_change()
    async def mute(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message, state = await self._started(update)
        if state is None:
            return
        if not context.args:
            await _reply(message, "For how long? e.g. /mute 30m, /mute 2h, /mute 1d. /unmute ends it.")
            return
        now = self.clock.now()
        try:
            until = parse_mute(" ".join(context.args), now)
        except SettingError as exc:
            await _reply(message, escape(str(exc)))
            return
        self.subscriptions.set_muted_until(chat.id, until)
        log.info("chat %s: muted until %s", chat.id, until.isoformat())
        await _reply(message, f"Muted for {describe_duration(until - now)}, until {local_stamp(until, state.timezone)}. "
                              "Alerts for stories that come in meanwhile are not sent. /unmute ends it early.")

    @settings_change()
    async def unmute(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message, state = await self._started(update)
        if state is None:
            return
        was = state.muted_until is not None and state.muted_until > self.clock.now()
        self.subscriptions.set_muted_until(chat.id, None)
        await _reply(message, "Unmuted: alerts are on again." if was else "This chat was not muted; alerts are on.")

    @settings_change(reads=lambda args: not args)
    async def quiet(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message, state = await self._started(update)
        if state is None:
            return
        if not context.args:
            await _reply(message, _quiet_text(state) + "\nSet them with /quiet 23:00-07:00 [Area/City], "
                                                       "or /quiet off.")
            return
        try:
            span, zone = parse_quiet(context.args)
        except SettingError as exc:
            await _reply(message, escape(str(exc)))
            return
        moved = zone is not None and zone != state.timezone
        if moved:
            self.subscriptions.set_timezone(chat.id, zone)
        self.subscriptions.set_quiet(chat.id, span)
        log.info("chat %s: quiet hours %s%s", chat.id,
                 f"{span[0]:%H:%M}-{span[1]:%H:%M}" if span else "off", f" ({zone})" if zone else "")
        fresh = self.subscriptions.chat(chat.id) or state
        note = (f"\nThis chat's time zone is now {escape(zone)} (it was {escape(state.timezone)}): "
                "digests and the times in alerts use it too." if moved else "")
        await _reply(message, _quiet_text(fresh) + note)

    @settings_change(reads=lambda args: not args)
    async def digest(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message, state = await self._started(update)
        if state is None:
            return
        if not context.args:
            await _reply(message, _digest_text(state) + "\nChange it with /digest off, /digest hourly or "
                                                         "/digest daily 08:00.")
            return
        try:
            mode, at = parse_digest(context.args)
        except SettingError as exc:
            await _reply(message, escape(str(exc)))
            return
        self.subscriptions.set_digest(chat.id, mode, at)
        log.info("chat %s: digest %s%s", chat.id, mode, f" at {at:%H:%M}" if at else "")
        await _reply(message, _digest_text(self.subscriptions.chat(chat.id) or state))

    @settings_change(reads=lambda args: not args)
    async def timezone(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message, state = await self._started(update)
        if state is None:
            return
        if not context.args:
            await _reply(message, f"This chat's time zone is {escape(state.timezone)} "
                                  f"(now {local_stamp(self.clock.now(), state.timezone)}). "
                                  "Change it with /timezone Area/City, e.g. /timezone Asia/Seoul.")
            return
        try:
            zone = find_timezone(" ".join(context.args))
        except SettingError as exc:
            await _reply(message, escape(str(exc)))
            return
        self.subscriptions.set_timezone(chat.id, zone)
        log.info("chat %s: time zone %s", chat.id, zone)
        await _reply(message, f"Time zone set to {escape(zone)} (now {local_stamp(self.clock.now(), zone)}). "
                              "Quiet hours, digests and the times in alerts use it.")

    async def settings(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message, state = await self._started(update)
        if state is None:
            return
        mine = self.subscriptions.topics_of(chat.id)
        topics = ", ".join(f"{n} ({_num(t)})" if t is not None else n for n, t in mine.items()) or "none"
        now = self.clock.now()
        muted = (f"until {local_stamp(state.muted_until, state.timezone)}"
                 if state.muted_until and state.muted_until > now else "no")
        lines = [
            "<b>This chat</b>",
            f"Alerts: {'on' if state.active else 'off (/start turns them on)'}",
            f"Topics: {escape(topics)}",
            f"Watches: {len(self.watches.of(chat.id))} (/watches)",
            f"Time zone: {escape(state.timezone)}",
            f"Muted: {muted}",
            _quiet_text(state),
            _digest_text(state),
        ]
        if state.thread_id is not None:
            lines.append(f"Forum topic: alerts go to thread {state.thread_id}")
        await _reply(message, "\n".join(lines))

    # -- looking back --------------------------------------------------------------------------
    async def latest(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message = update.effective_chat, update.effective_message
        if chat is None or message is None:
            return
        args = list(context.args or [])
        limit = LATEST_DEFAULT
        if args and args[-1].isdigit():
            limit = max(1, min(int(args.pop()), LATEST_MAX))
        if args:
            name = self._topic(args[0])
            if name is None:
                await _reply(message, self._no_topic(args[0]))
                return
            topics = [name]
        else:
            topics = list(self.subscriptions.topics_of(chat.id)) or list(self.topics)
        found = self.history.latest(topics, limit)
        if not found:
            await _reply(message, f"No matched stories yet for {escape(', '.join(topics))}.")
            return
        tz = self._tz(chat.id)
        lines = [f"<b>Latest matched stories</b> — {escape(', '.join(topics))}"]
        for number, item in enumerate(found, 1):
            tags = " · ".join(f"{hashtag(t)} {s:.1f}" for t, s in item.topics)
            lines.append(_story_line(number, item.stored.story, tz, tags))
        await _reply(message, fit("\n\n".join(lines), TELEGRAM_TEXT_LIMIT))

    async def search(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message = update.effective_chat, update.effective_message
        if chat is None or message is None:
            return
        words = search_words(_arg_text(message))
        if not words:
            await _reply(message, "Search for what? e.g. /search Hanoi summit, /search \"Kim Yo Jong\", /search 개성공단")
            return
        found = self.history.search(words, SEARCH_LIMIT + 1)
        shown = " ".join(f'"{w}"' if " " in w else w for w in words)
        if not found:
            await _reply(message, f"No stored story contains {escape(shown)}.")
            return
        more = len(found) > SEARCH_LIMIT
        found = found[:SEARCH_LIMIT]
        tz = self._tz(chat.id)
        head = (f"<b>Stories with {escape(shown)}</b> — "
                + (f"the newest {SEARCH_LIMIT}" if more else f"{len(found)} found") + ", newest first")
        lines = [head] + [_story_line(n, s.story, tz, "") for n, s in enumerate(found, 1)]
        await _reply(message, fit("\n\n".join(lines), TELEGRAM_TEXT_LIMIT))

    async def status(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message = update.effective_chat, update.effective_message
        if chat is None or message is None:
            return
        now = self.clock.now()
        tz_name = self._zone_name(chat.id)
        known = self.runtime_sources.all()
        polled = [k for k in known if k.config.enabled]
        health = self.history.health([(k.config.name, k.config.url, True, k.runtime) for k in polled])
        failing = [h for h in health if h.state.failures]
        never = [h for h in health if h.state.last_attempt is None]
        queue = self.history.queue()
        last = self.history.last_fetch()
        lines = [
            "<b>Status</b>",
            f"Sources: {len(polled)} polled — {len(polled) - len(failing) - len(never)} healthy, "
            f"{len(failing)} failing" + (f", {len(never)} not fetched yet" if never else "")
            + (f", {len(known) - len(polled)} disabled" if len(known) > len(polled) else ""),
        ]
        if failing:
            names = ", ".join(f"{h.name} ({h.state.failures}×)" for h in failing[:5])
            lines.append(f"Failing: {escape(names)}{' …' if len(failing) > 5 else ''}")
        lines += [
            f"Last fetch: {_ago(last, now, tz_name)}",
            f"Stories stored: {self.history.story_count():,}; matched in the last 24 h: "
            f"{self.history.matched_since(now - timedelta(days=1)):,}",
            *_held_line(self.history.held_since(now - timedelta(days=1))),
            f"Alert queue: {queue.get('pending', 0):,} waiting, {queue.get('sent', 0):,} sent"
            + (f", {queue.get('failed', 0):,} failed" if queue.get("failed") else ""),
            f"Chats: {self.subscriptions.active_count():,} active; watches: {self.watches.count():,}",
        ]
        await _reply(message, "\n".join(lines))

    async def trend(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message = update.effective_chat, update.effective_message
        if chat is None or message is None:
            return
        days, topics = DEFAULT_DAYS, None
        for arg in context.args or []:
            if arg.isdigit():
                days = int(arg)
                if not 1 <= days <= MAX_DAYS:
                    await _reply(message, f"Give a number of days from 1 to {MAX_DAYS}, e.g. /trend summit 30.")
                    return
            else:
                name = self._topic(arg)
                if name is None:
                    await _reply(message, self._no_topic(arg))
                    return
                topics = [name]
        if topics is None:
            topics = [t for t in self.topics if t in self.subscriptions.topics_of(chat.id)] or list(self.topics)
        zone_name = self._zone_name(chat.id)
        series = daily_counts(self.history.conn, topics, days, self.clock.now(), ZoneInfo(zone_name))
        totals = {t: sum(c for _, c in points) for t, points in series.items()}
        title = f"{', '.join(topics)}: matched stories per day, last {plural(days, 'day')}"
        png = await asyncio.to_thread(render_png, series, title=title)
        caption = (" · ".join(f"{hashtag(t)} {n}" for t, n in totals.items())
                   + f" — stories matched in the last {plural(days, 'day')} (days in {zone_name})")
        kwargs = _reply_kwargs(message)
        await message.reply_photo(InputFile(png, filename="trend.png"), caption=escape(caption),
                                  parse_mode=ParseMode.HTML, **kwargs)

    # -- watches -------------------------------------------------------------------------------
    @settings_change()
    async def watch(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message = update.effective_chat, update.effective_message
        if chat is None or message is None:
            return
        text = _arg_text(message)
        if not text:
            await _reply(message, "Watch for what? " + WATCH_SYNTAX)
            return
        try:
            parse_rule(text)
            if self.subscriptions.chat(chat.id) is None:
                self.subscriptions.ensure(chat.id, kind=chat.type, title=_title(chat), thread_id=_thread(message),
                                          now=self.clock.now())
            watch, rule = self.watches.add(chat.id, text, self.clock.now())
        except RuleError as exc:
            await _reply(message, f"That watch cannot be used: {escape(str(exc))}.\n{WATCH_SYNTAX}")
            return
        self.subscriptions.ensure(chat.id, kind=chat.type, title=_title(chat), thread_id=_thread(message),
                                  now=self.clock.now())
        number = len(self.watches.of(chat.id))
        log.info("chat %s: watch %d added (%s)", chat.id, watch.id, rule.describe())
        await _reply(message, f"Watch {number} added: <code>{escape(rule.text)}</code>\n"
                              f"It matches stories with {escape(rule.describe())}. "
                              "Their alerts come to this chat only. "
                              "/watches lists your watches, /unwatch removes one.")

    async def list_watches(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message = update.effective_chat, update.effective_message
        if chat is None or message is None:
            return
        mine = self.watches.of(chat.id)
        if not mine:
            await _reply(message, "No watches here yet. /watch Hanoi summit makes one.")
            return
        lines = ["<b>Watches</b> (alerts for this chat only)"]
        for number, watch in enumerate(mine, 1):
            lines.append(f"{number}. <code>{escape(watch.rule)}</code>")
        lines.append("/unwatch N removes watch N.")
        await _reply(message, "\n".join(lines))

    @settings_change()
    async def unwatch(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message = update.effective_chat, update.effective_message
        if chat is None or message is None:
            return
        count = len(self.watches.of(chat.id))
        arg = (context.args or [""])[0]
        if not arg.isdigit():
            await _reply(message, "Which one? /unwatch N, with N from /watches." if count
                         else "No watches here to remove.")
            return
        removed = self.watches.remove(chat.id, int(arg))
        if removed is None:
            span = f" (1–{count})" if count > 1 else " (1)" if count else ""
            await _reply(message, f"There is no watch {escape(arg)} here; /watches lists them{span}.")
            return
        log.info("chat %s: watch %d removed", chat.id, removed.id)
        await _reply(message, f"Removed watch {escape(arg)}: <code>{escape(removed.rule)}</code>.")

    # -- admin ---------------------------------------------------------------------------------
    @admin_command
    async def sources(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat_id, message = update.effective_chat.id, update.effective_message
        now = self.clock.now()
        zone_name = self._zone_name(chat_id)
        known = self.runtime_sources.all()
        health = self.history.health([(k.config.name, k.config.url, k.config.enabled, k.runtime) for k in known])
        intervals = {k.config.name: k.config.interval for k in known}
        lines = [f"<b>Sources</b> ({sum(1 for h in health if h.enabled)} polled of {len(health)})"]
        for h in health:
            state = h.state
            if not h.enabled:
                mark, detail = "⏸", "disabled"
            elif state.failures:
                mark = "⚠️"
                detail = f"failing {state.failures}× in a row: {escape(redact_url(state.last_error)[:120] or 'error')}"
            elif state.last_attempt is None:
                mark, detail = "⏳", "not fetched yet"
            else:
                mark = "✅"
                detail = f"ok, last fetch {_ago(state.last_attempt, now, zone_name)}, {plural(state.stories_total, 'story')}"
            origin = " · added from Telegram" if h.runtime else ""
            lines.append(f"{mark} <b>{escape(h.name)}</b> every {_every(intervals[h.name])}{origin}\n    {detail}")
        lines.append("/addsource name url [interval], /disablesource name, /enablesource name")
        await _reply(message, fit("\n".join(lines), TELEGRAM_TEXT_LIMIT))

    @admin_command
    async def add_source(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat_id, message = update.effective_chat.id, update.effective_message
        args = context.args or []
        if len(args) not in (2, 3):
            await _reply(message, "Write /addsource NAME URL [INTERVAL], e.g. "
                                  "/addsource nk-news-feed https://www.nknews.org/feed/ 10m")
            return
        try:
            source = await self.runtime_sources.add(args[0], args[1], args[2] if len(args) == 3 else None,
                                                    by=update.effective_user.id, now=self.clock.now())
        except SourceRefused as exc:
            await _reply(message, f"Source not added: {escape(str(exc))}")
            return
        self._sources_changed()
        log.info("source %s added by user %s in chat %s: %s every %ss", source.name, update.effective_user.id, chat_id,
                 redact_url(source.url), source.interval)
        await _reply(message, f"Added source <b>{escape(source.name)}</b>: {escape(redact_url(source.url))}, "
                              f"polled every {_every(source.interval)}, starting now. It is kept across restarts; "
                              f"/disablesource {escape(source.name)} stops it.")

    async def disable_source(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._set_source(update, context, enabled=False)

    async def enable_source(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._set_source(update, context, enabled=True)

    @admin_command
    async def _set_source(self, update: Update, context: ContextTypes.DEFAULT_TYPE, *, enabled: bool) -> None:
        chat_id, message = update.effective_chat.id, update.effective_message
        verb = "enablesource" if enabled else "disablesource"
        if not context.args:
            await _reply(message, f"Which source? /{verb} NAME (/sources lists them).")
            return
        before = self.runtime_sources.find(context.args[0])
        try:
            known = self.runtime_sources.set_enabled(context.args[0], enabled, by=update.effective_user.id, now=self.clock.now())
        except SourceRefused as exc:
            await _reply(message, escape(str(exc)))
            return
        name = escape(known.config.name)
        if before is not None and before.config.enabled == enabled:
            await _reply(message, f"{name} was already {'enabled' if enabled else 'disabled'}.")
            return
        self._sources_changed()
        log.info("source %s %s by user %s in chat %s", known.config.name, "enabled" if enabled else "disabled",
                 update.effective_user.id, chat_id)
        await _reply(message, f"{name} {'enabled: polling again' if enabled else 'disabled: no longer polled'}, "
                              "and it stays so across restarts.")

    def _sources_changed(self) -> None:
        if self.on_sources_changed is not None:
            self.on_sources_changed(self.runtime_sources.enabled())

    @admin_command
    async def broadcast(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Queue the text for every active chat in the outbox; the sender is told at once how many
        chats it is queued for, and again (a notice) once every copy has an outcome."""
        chat_id, message = update.effective_chat.id, update.effective_message
        text = _arg_text(message)
        if not text:
            await _reply(message, "Write the message after the command: /broadcast Maintenance tonight at 22:00 UTC.")
            return
        if self.outbox is None:
            await _reply(message, "Broadcasts are not available here.")
            return
        chats = [c.chat_id for c in self.subscriptions.active_chats()]
        queued = self.outbox.queue_notice(chats, text, self.clock.now(), report_to=chat_id)
        log.info("broadcast by user %s in chat %s: queued for %s", update.effective_user.id, chat_id,
                 plural(queued, "chat"))
        self.on_queued()
        await _reply(message, f"Broadcast queued for {plural(queued, 'chat')}; you will be told when it is delivered.")

    async def help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message = update.effective_chat, update.effective_message
        if message is None:
            return
        await _reply(message, help_text(admin=self.permissions.is_bot_admin(update),
                                        group_admins_only=not self.permissions.everyone_in_groups))

    # -- helpers -------------------------------------------------------------------------------
    async def _started(self, update: Update) -> tuple:
        """(chat, message, stored Chat) for settings commands; replies and gives None for a chat
        that was never started."""
        chat, message = update.effective_chat, update.effective_message
        if chat is None or message is None:
            return chat, message, None
        state = self.subscriptions.chat(chat.id)
        if state is None:
            await _reply(message, NOT_STARTED)
        return chat, message, state

    def _topic(self, text: str) -> str | None:
        wanted = text.strip().lstrip("#").lower().replace("_", "-")
        return wanted if wanted in self.topics else None

    def _no_topic(self, text: str) -> str:
        close = difflib.get_close_matches(text.lstrip("#").lower().replace("_", "-"), list(self.topics), n=1)
        hint = f" Did you mean {escape(close[0])}?" if close else ""
        return f"There is no topic “{escape(text)}”.{hint} Topics: {escape(', '.join(self.topics))}."

    def _zone_name(self, chat_id: int) -> str:
        state = self.subscriptions.chat(chat_id)
        return zone(state.timezone if state else "UTC").key

    def _tz(self, chat_id: int) -> ZoneInfo:
        return zone(self._zone_name(chat_id))


WATCH_SYNTAX = (
    "Examples: /watch Hanoi summit (both words) · /watch \"Hanoi summit\" (the phrase) · "
    "/watch Hanoi OR Hue summit · /watch summit -G20 (not G20) · /watch sanction* · /watch 개성공단"
)


def help_text(*, admin: bool = False, group_admins_only: bool = True) -> str:
    lines = [
        "<b>newswatch</b> watches news sources and alerts this chat when a story about Korea diplomacy "
        "matches a topic it follows, or one of its own watches.",
        "",
        "<b>Topics</b>",
        "/start — subscribe this chat to every topic",
        "/stop — stop all alerts here",
        "/topics — list topics, with buttons to switch each on or off",
        "/subscribe <i>topic</i> — follow one topic (<code>all</code> for every one)",
        "/unsubscribe <i>topic</i> — stop following one topic",
        "/threshold <i>topic</i> <i>score</i> — this chat's own bar for a topic (<code>default</code> resets it)",
        *(["In a group, only its administrators change its topics, timing and watches; everyone can look."]
          if group_admins_only else []),
        "",
        "<b>When alerts arrive</b>",
        "/mute <i>duration</i> — no alerts for a while: 30m, 2h, 1d",
        "/unmute — alerts again",
        "/quiet 23:00-07:00 [<i>Area/City</i>] — hold alerts at night and deliver them after (<code>/quiet off</code>)",
        "/digest off|hourly|daily HH:MM — one batch instead of instant alerts",
        "/timezone <i>Area/City</i> — this chat's time zone, e.g. Asia/Seoul",
        "/settings — this chat's settings",
        "",
        "<b>Looking back</b>",
        "/latest [<i>topic</i>] [<i>n</i>] — the last matched stories",
        "/search <i>words</i> — search the stored stories",
        "/trend [<i>topic</i>] [<i>days</i>] — a chart of matched stories per day",
        "/status — sources, last fetch and the alert queue",
        "/feedback — the 👍/👎 given under alerts here, and the precision they imply per topic",
        "",
        "<b>Your own watches</b> (alerts for this chat only)",
        "/watch <i>rule</i> — e.g. <code>/watch Hanoi summit</code> or <code>/watch 개성공단</code>",
        "/watches — list them",
        "/unwatch <i>n</i> — remove watch n",
        "Rules: every word must appear (<code>Hanoi summit</code>); <code>\"exact phrase\"</code>; "
        "<code>Hanoi OR Hue</code> for either; <code>-G20</code> leaves out stories with G20; "
        "<code>sanction*</code> for any ending; <code>visit(s)</code> for an optional part. "
        "Case does not matter; English words match whole words; Korean, Chinese and Japanese "
        "words also match inside longer words.",
    ]
    if admin:
        lines += [
            "",
            "<b>Admin</b>",
            "/sources — every source with its health",
            "/addsource <i>name</i> <i>url</i> [<i>interval</i>] — poll a new feed (kept across restarts)",
            "/disablesource <i>name</i>, /enablesource <i>name</i> — stop or resume polling a source",
            "/broadcast <i>text</i> — send a message to every active chat",
        ]
    return "\n".join(lines)


# -- small pieces ----------------------------------------------------------------------------------

def _reply_kwargs(message: Message) -> dict:
    if message.chat.type == "private":
        return {"do_quote": False}
    return {"reply_parameters": ReplyParameters(message.message_id, allow_sending_without_reply=True)}


async def _reply(message: Message, text: str, *, reply_markup: InlineKeyboardMarkup | None = None) -> Message:
    """Answer in the same chat (and forum topic), as HTML, without link previews."""
    return await message.reply_text(text, parse_mode=ParseMode.HTML, reply_markup=reply_markup,
                                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                                    **_reply_kwargs(message))


def _arg_text(message: Message) -> str:
    """Everything after the command, as typed (quotes and spacing kept)."""
    parts = (message.text or "").split(maxsplit=1)
    return parts[1].strip() if len(parts) == 2 else ""


def _thread(message: Message | None) -> int | None:
    if message is None:
        return None
    return message.message_thread_id if getattr(message, "is_topic_message", False) else None


def _title(chat) -> str:
    return chat.title or getattr(chat, "full_name", None) or chat.username or ""


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:g}"


def _every(seconds: int) -> str:
    return describe_duration(timedelta(seconds=seconds)) if seconds >= 60 else f"{seconds}s"


def _ago(moment: datetime | None, now: datetime, zone: str) -> str:
    if moment is None:
        return "never"
    delta = now - moment
    ago = "just now" if delta.total_seconds() < 60 else f"{describe_duration(delta)} ago"
    return f"{local_stamp(moment, zone)} ({ago})"


def _story_line(number: int, story, tz: ZoneInfo, tags: str) -> str:
    title = " ".join(story.title.split()) or "(untitled)"
    if len(title) > TITLE_CHARS:
        title = title[: TITLE_CHARS - 1] + "…"
    url = safe_url(story.url)
    head = f'<a href="{escape(url, quote=True)}">{escape(title)}</a>' if url else escape(title)
    meta = " · ".join(filter(None, [escape(story.source), stamp(story.published, tz), tags]))
    return f"{number}. {head}\n{meta}"


def _quiet_text(chat: Chat) -> str:
    if chat.quiet is None:
        return "Quiet hours: off"
    start, end = chat.quiet
    return (f"Quiet hours: {start:%H:%M}–{end:%H:%M} ({escape(chat.timezone)}); alerts that arrive then "
            f"are held and delivered at {end:%H:%M}.")


def _digest_text(chat: Chat) -> str:
    if chat.digest == "hourly":
        return "Digest: hourly; alerts are collected and sent together at the top of each hour."
    if chat.digest == "daily":
        at = chat.digest_at.strftime("%H:%M") if chat.digest_at else "08:00"
        return f"Digest: daily at {at} ({escape(chat.timezone)}); alerts are collected and sent together once a day."
    return "Digest: off; alerts arrive as stories break."


def _held_line(held: dict[str, int]) -> list[str]:
    """/status's line on stories stored in the last 24 h that may not alert (none: no line)."""
    old, baseline = held.get(HELD_TOO_OLD, 0), held.get(HELD_BASELINE, 0)
    parts = ([f"{old:,} too old (alert_max_age)"] if old else []) + (
        [f"{baseline:,} undated on a source's first fetch"] if baseline else [])
    return [f"Stored without alerting in the last 24 h: {', '.join(parts)}"] if parts else []
