"""The one table of bot commands: the menu and /help agree with it and with each other, every
registered command is in it and every row is registered, and its "who" column says what the
handler's guards enforce."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from telegram.ext import ApplicationBuilder, CommandHandler

from newswatch.alerts.bot.commands import BOT_ADMINS, COMMANDS, EVERYONE, GROUP_ADMINS, GROUP_NOTE, help_text, menu
from newswatch.alerts.bot.core import BotCommands
from newswatch.alerts.config import load_config
from newswatch.crawler.clock import ManualClock

NAMES = [c.name for c in COMMANDS]


def commands_in_help(text: str) -> list[str]:
    """The commands /help lists, in order: each line that starts with one, and the ones on it."""
    listed = []
    for line in text.splitlines():
        if line.startswith("/"):
            listed += re.findall(r"(?:^|, )/([a-z]+)", line)
    return listed


def test_names_are_unique_and_fit_telegram() -> None:
    assert len(NAMES) == len(set(NAMES))
    for c in COMMANDS:
        assert re.fullmatch(r"[a-z0-9_]{1,32}", c.name) and 1 <= len(c.menu) <= 256, c.name


@pytest.mark.parametrize("admin", [False, True])
def test_the_menu_and_help_list_the_same_commands_in_the_same_order(admin: bool) -> None:
    in_menu = [c.command for c in menu(admin=admin)]
    assert commands_in_help(help_text(admin=admin)) == [name for name in in_menu if name != "help"]


def test_admin_commands_are_for_admins_only() -> None:
    admin_only = {c.name for c in COMMANDS if c.who == BOT_ADMINS}
    assert admin_only == {"sources", "addsource", "disablesource", "enablesource", "broadcast"}
    assert not admin_only & {c.command for c in menu()}
    assert [c.command for c in menu(admin=True)] == NAMES
    assert not admin_only & set(commands_in_help(help_text()))
    assert "<b>Admin</b>" in help_text(admin=True) and "<b>Admin</b>" not in help_text()


def test_the_group_note_follows_group_settings() -> None:
    assert GROUP_NOTE in help_text(group_admins_only=True)
    assert GROUP_NOTE not in help_text(group_admins_only=False)


def test_who_may_use_a_command_is_what_its_guards_enforce() -> None:
    for c in COMMANDS:
        guards = getattr(c.handler, "guards", frozenset())
        assert ("admin" in guards) == (c.who == BOT_ADMINS), c.name
        assert ("settings_change" in guards) == (c.who == GROUP_ADMINS), c.name
        assert c.who in (EVERYONE, GROUP_ADMINS, BOT_ADMINS)


def registered(*, votes: object | None) -> dict[str, object]:
    application = ApplicationBuilder().token("123:abc").build()
    outbox = object()  # the handlers are only registered here, never run
    BotCommands(config=load_config(), subscriptions=None, watches=None, history=None, runtime_sources=None,
                clock=ManualClock(datetime(2024, 1, 1, tzinfo=UTC)), outbox=outbox, votes=votes).install(application)
    return {name: handler.callback for group in application.handlers.values() for handler in group
            if isinstance(handler, CommandHandler) for name in handler.commands}


def test_every_registered_command_is_in_the_table_and_every_row_is_registered() -> None:
    assert registered(votes=object()) == {c.name: c.handler for c in COMMANDS}


def test_feedback_needs_the_votes() -> None:
    assert set(registered(votes=None)) == set(NAMES) - {"feedback"}
