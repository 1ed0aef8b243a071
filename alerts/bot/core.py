"""The subscriber's interface: Telegram commands, topic buttons and membership changes.

`BotCommands` is where the bot is put together: it holds the `BotState` every handler reads,
`install()` registers the handlers on a PTB Application (the commands from the one table in
`newswatch.alerts.bot.commands`, the buttons, membership changes, the allowed-chats gate and
the one error handler) and `publish_menu()` shows the commands in Telegram's menu
(`setMyCommands`; admins also see the admin commands). The handlers are small
`async def (update, context)` functions in one module per family: `subscribe`, `settings`,
`views`, `watching`, `feedback`, `sources`, `admin`, `membership`; the checks that run before
them are the decorators in `guards`.

Every command sets state that other parts read: subscriptions and per-chat thresholds (the
dispatcher), mute, quiet hours, digest and time zone (the notifier), watches (the
dispatcher, through `newswatch.alerts.match.watches`) and runtime sources (the daemon's scheduler, through
`on_sources_changed`). Nothing is kept in memory: a restart loses nothing.

Who may do what (the rules are in `newswatch.alerts.bot.permissions`, their guards in `guards`):
  * `telegram.allowed_chats`, when set, limits the bot to those chats (and the chats named
    in `telegram.admins`); any other chat gets a polite refusal and nothing is stored for it.
  * Admin commands (/sources, /addsource, /disablesource, /enablesource, /broadcast) are
    for the persons listed in `telegram.admins` (`@admin`).
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

import logging
from collections.abc import Callable

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from newswatch.alerts.bot import feedback, membership
from newswatch.alerts.bot.commands import COMMANDS, not_a_command, publish_menu, unknown
from newswatch.alerts.bot.guards import gate
from newswatch.alerts.bot.history import History
from newswatch.alerts.bot.replies import reply
from newswatch.alerts.bot.state import STATE_KEY, BotState
from newswatch.alerts.bot.subscribe import TOPIC_BUTTON, on_topic_button
from newswatch.alerts.config import NewswatchConfig
from newswatch.alerts.deliver.format import escape
from newswatch.alerts.deliver.outbox import Outbox
from newswatch.alerts.feedback import VOTE_PREFIX, Votes
from newswatch.alerts.match.watches import Watches
from newswatch.alerts.runtime_sources import RuntimeSources
from newswatch.alerts.subscriptions import Subscriptions
from newswatch.crawler.clock import Clock
from newswatch.crawler.sources import SourceConfig

log = logging.getLogger("newswatch.bot")


class BotCommands:
    """The bot of one daemon: its state, its handlers on an Application, its menu."""

    def __init__(self, *, config: NewswatchConfig, subscriptions: Subscriptions, watches: Watches,
                 history: History, runtime_sources: RuntimeSources, clock: Clock, outbox: Outbox | None = None,
                 votes: Votes | None = None,
                 on_sources_changed: Callable[[list[SourceConfig]], None] | None = None,
                 on_queued: Callable[[], None] = lambda: None) -> None:
        self.state = BotState(config=config, subscriptions=subscriptions, watches=watches, history=history,
                              runtime_sources=runtime_sources, clock=clock, outbox=outbox, votes=votes,
                              on_sources_changed=on_sources_changed, on_queued=on_queued)

    def apply_config(self, config: NewswatchConfig) -> None:
        """Take up a (re)loaded config: topics, thresholds, admins, allowed chats."""
        self.state.apply_config(config)

    def install(self, application: Application) -> None:
        application.bot_data[STATE_KEY] = self.state
        only_new = filters.UpdateType.MESSAGE | filters.UpdateType.CHANNEL_POST
        application.add_handler(TypeHandler(Update, gate), group=-1)
        for command in COMMANDS:
            if command.needs_votes and not self.state.keeps_votes:
                continue
            application.add_handler(CommandHandler(command.name, command.handler, filters=only_new))
        application.add_handler(CallbackQueryHandler(on_topic_button, pattern=f"^{TOPIC_BUTTON}"))
        if self.state.keeps_votes:
            application.add_handler(CallbackQueryHandler(feedback.on_vote, pattern=f"^{VOTE_PREFIX}"))
        application.add_handler(ChatMemberHandler(membership.on_membership, ChatMemberHandler.MY_CHAT_MEMBER))
        application.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, membership.on_migrate))
        application.add_handler(MessageHandler(filters.COMMAND & filters.ChatType.PRIVATE & only_new, unknown))
        application.add_handler(MessageHandler(~filters.COMMAND & filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE,
                                               not_a_command))
        application.add_error_handler(on_error)

    async def publish_menu(self, application: Application) -> None:
        await publish_menu(application.bot, self.state.permissions.admins)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log a handler's failure; tell the chat, unless the failure was Telegram's own."""
    error = context.error
    log.error("bot handler failed: %s: %s", type(error).__name__, error,
              exc_info=(type(error), error, error.__traceback__) if error else None)
    if isinstance(update, Update) and update.effective_message is not None and not isinstance(error, TelegramError):
        try:
            await reply(update.effective_message,
                        f"Sorry, that failed on our side ({escape(type(error).__name__)}); it has been logged.")
        except TelegramError:
            pass
