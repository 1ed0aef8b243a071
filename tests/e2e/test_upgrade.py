"""The daemon started on a database of an earlier release upgrades it and carries on where it stopped.

A copy of tests/fixtures/release-<commit>.db (written by that release's own code) becomes the
daemon's database: the alerts and the admin notice that release had queued are delivered, each
once and to its chat (the forum group's into its topic), and those it had sent, failed or
dropped are not sent again.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import wait_until, write_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PLAIN, FORUM, QUIET, GONE, ADMIN = 101, -1002, 303, 404, 1001  # as tests/fixtures/make_release_db.py has them
QUEUED = {PLAIN: "Hanoi readies hotels for the summit", FORUM: "New sanctions on North Korean shipping"}
DONE = ["Kim and Trump agree to a second summit in Hanoi", "North Korea fires a missile"]  # sent, dropped, failed


def _states(db: Path) -> dict[int, tuple[int, str]]:
    """Outbox row id -> (chat, state)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {row[0]: tuple(row[1:]) for row in conn.execute("SELECT id, chat_id, state FROM outbox")}
    finally:
        conn.close()


@pytest.mark.parametrize("release", ["106f4d4", "63fe43d"])
def test_the_daemon_delivers_what_the_release_had_queued(release, tmp_path, bot_api, daemon_factory) -> None:
    db = tmp_path / "newswatch.db"
    shutil.copyfile(FIXTURES / f"release-{release}.db", db)
    before = _states(db)
    bot_api.add_chat(FORUM, "supergroup", title="Desk", is_forum=True)
    notice = release == "106f4d4"  # notices came with that release
    config = write_config(tmp_path, [], api_url=f"{bot_api.url}/bot")
    daemon = daemon_factory(config).start()

    def delivered() -> bool:
        texts = {chat: " ".join(m.get("visible") or m.get("text") or "" for m in bot_api.messages_for(chat))
                 for chat in (PLAIN, FORUM, ADMIN)}
        return all(title in texts[chat] for chat, title in QUEUED.items()) and \
            (not notice or "Source down was disabled" in texts[ADMIN])

    wait_until(delivered, timeout=40, what="the alerts the old release queued")
    time.sleep(2)  # a repeat would have come by now
    assert daemon.stop() == 0

    sent = bot_api.sent
    for chat, title in QUEUED.items():
        copies = [m for m in sent if m["chat_id"] == chat and title in (m.get("visible") or m.get("text") or "")]
        assert len(copies) == 1, f"{chat}: {title!r} sent {len(copies)} times"
    [forum] = [m for m in sent if m["chat_id"] == FORUM]
    assert forum["message_thread_id"] == 77
    for title in DONE:
        assert not any(title in (m.get("visible") or m.get("text") or "") for m in sent), f"{title!r} sent again"
    assert not [m for m in sent if m["chat_id"] in (QUIET, GONE)]
    after = _states(db)
    assert {row: after[row] for row in before} == \
        {row: (chat, "sent" if state == "pending" else state) for row, (chat, state) in before.items()}
    assert all(state != "pending" for _, state in after.values()), after
