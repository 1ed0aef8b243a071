"""What every handler reads: the stores, the clock, the topics and thresholds of the loaded
config, who may do what, and the callbacks into the daemon.

One `BotState` serves the whole bot; `core.BotCommands.install` keeps it in the
Application's `bot_data`, where `state_of(context)` finds it. Nothing else is kept in
memory: every command reads and writes the database, so a restart loses nothing.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from zoneinfo import ZoneInfo

from telegram.ext import ContextTypes

from newswatch.alerts.bot.history import History
from newswatch.alerts.bot.permissions import Permissions
from newswatch.alerts.config import NewswatchConfig
from newswatch.alerts.deliver.format import escape
from newswatch.alerts.deliver.outbox import Outbox
from newswatch.alerts.deliver.timing import zone
from newswatch.alerts.feedback import Votes
from newswatch.alerts.match.watches import Watches
from newswatch.alerts.runtime_sources import RuntimeSources
from newswatch.alerts.subscriptions import Subscriptions
from newswatch.crawler.clock import Clock
from newswatch.crawler.sources import SourceConfig

STATE_KEY = "newswatch"


class BotState:
    """The bot's stores and settings, shared by every handler."""

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

    @property
    def keeps_votes(self) -> bool:
        """Whether the 👍/👎 buttons and /feedback work here (they need the votes and the outbox)."""
        return self.votes is not None and self.outbox is not None

    def topic(self, text: str) -> str | None:
        """The topic a chat means by `text` (`#north_korea` is north-korea), or None."""
        wanted = text.strip().lstrip("#").lower().replace("_", "-")
        return wanted if wanted in self.topics else None

    def no_topic(self, text: str) -> str:
        """The reply to a topic name that is not one, with the closest name as a hint."""
        close = difflib.get_close_matches(text.lstrip("#").lower().replace("_", "-"), list(self.topics), n=1)
        hint = f" Did you mean {escape(close[0])}?" if close else ""
        return f"There is no topic “{escape(text)}”.{hint} Topics: {escape(', '.join(self.topics))}."

    def zone_name(self, chat_id: int) -> str:
        stored = self.subscriptions.chat(chat_id)
        return zone(stored.timezone if stored else "UTC").key

    def tz(self, chat_id: int) -> ZoneInfo:
        return zone(self.zone_name(chat_id))

    def sources_changed(self) -> None:
        """Tell the daemon's scheduler which sources to poll now."""
        if self.on_sources_changed is not None:
            self.on_sources_changed(self.runtime_sources.enabled())


def state_of(context: ContextTypes.DEFAULT_TYPE) -> BotState:
    return context.bot_data[STATE_KEY]
