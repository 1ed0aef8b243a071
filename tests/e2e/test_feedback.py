"""End to end: the 👍/👎 buttons under alerts, against the real daemon and the fake Bot API.

An alert arrives with both buttons; a tap is stored once (the same tap again changes nothing,
the other button changes the vote) and the buttons show the counts; in a group each person
votes once; the votes survive a restart and a tap on an alert sent before it still counts;
/feedback answers with the precision per topic; `newswatch feedback export` writes labels
that `newswatch eval` reads.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from tests.e2e.conftest import ROOT, TOKEN, DaemonProcess, wait_until
from tests.fakes.bot_api import DEFAULT_USER_ID, FakeBotAPI
from tests.fakes.feed_server import FeedItem, FeedServer

ALICE = 2002
GROUP = -424242
ANN, BEN, CY = 11, 22, 33

TOPICS = {
    "summit": {
        "description": "Summits with North Korea.",
        "threshold": 6,
        "groups": {"summit": {"weight": 3, "terms": ["summit(s)"]},
                   "korea": {"weight": 1, "terms": ["North Korea(n)", "Kim Jong Un"]}},
        "require": ["korea"],
    },
    "north-korea": {
        "description": "North Korea as a main subject.",
        "threshold": 5,
        "groups": {"nk": {"weight": 3, "terms": ["North Korea(n)", "Pyongyang", "Kim Jong Un"]}},
    },
}
NOW = datetime.now(UTC).replace(microsecond=0)
SUMMIT = FeedItem(title="Kim Jong Un and Trump agree to hold a second summit",
                  link="https://wire.example.com/second-summit",
                  description="North Korean leader Kim Jong Un accepted an invitation to a second summit.",
                  published=NOW - timedelta(minutes=30))
WRONG = FeedItem(title="Pyongyang restaurant chain opens in Seoul mall",
                 link="https://wire.example.com/restaurant",
                 description="A chain named after Pyongyang cold noodles opened a branch; Pyongyang is only its name.",
                 published=NOW - timedelta(minutes=20))


def buttons(message: dict) -> list[tuple[str, str]]:
    return [(b["text"], b["callback_data"]) for row in message["reply_markup"]["inline_keyboard"] for b in row]


class Desk:
    def __init__(self, bot: FakeBotAPI, db: Path) -> None:
        self.bot = bot
        self.db = db

    def sql(self, query: str, *args) -> list[tuple]:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(query, args).fetchall()
        finally:
            conn.close()

    def ask(self, chat_id: int, text: str, expect: str) -> dict:
        before = len(self.bot.messages_for(chat_id))
        self.bot.user_message(chat_id, text)
        return wait_until(lambda: next((m for m in self.bot.messages_for(chat_id)[before:]
                                        if expect in (m.get("visible") or "")), None), 15, what=expect)

    def alert(self, chat_id: int, title: str) -> dict:
        return wait_until(lambda: next((m for m in self.bot.messages_for(chat_id)
                                        if title in (m.get("visible") or "")), None), 30, what=f"the alert {title!r}")

    def tap(self, chat_id: int, data: str, message_id: int, answer: str, *, user_id: int | None = None) -> None:
        answered = len(self.bot.answered_callbacks)
        self.bot.callback_query(chat_id, data, message_id=message_id, user_id=user_id)
        wait_until(lambda: [a for a in self.bot.answered_callbacks[answered:] if a["text"] == answer], 15,
                   what=f"the answer {answer!r}")

    def shown(self, chat_id: int, message_id: int, texts: list[str]) -> None:
        """The alert's buttons were edited to show `texts`."""
        wait_until(lambda: [e for e in self.bot.edited if e.get("chat_id") == chat_id
                            and e.get("message_id") == message_id and e.get("method") == "editMessageReplyMarkup"
                            and [t for t, _ in buttons(e)] == texts], 15, what=f"the buttons showing {texts}")

    def vote_rows(self, chat_id: int) -> list[tuple]:
        """(user, vote, the alert's topics in name order) for each vote in the chat."""
        rows = self.sql("SELECT user_id, vote, topics FROM votes WHERE chat_id = ? ORDER BY user_id", chat_id)
        return [(user, vote, sorted(json.loads(topics))) for user, vote, topics in rows]


def newswatch(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSWATCH_")}
    return subprocess.run([sys.executable, "-m", "newswatch.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_votes_under_alerts_from_tap_to_eval(tmp_path: Path) -> None:
    with FeedServer() as feeds, FakeBotAPI(token=TOKEN) as bot:
        feeds.set_feed("/wire.xml", [])
        config = tmp_path / "newswatch.yaml"
        config.write_text(yaml.safe_dump({
            "storage": {"path": "newswatch.db"},
            "telegram": {"api_url": f"{bot.url}/bot", "poll_timeout": 1, "admins": [1001],
                         "allow_private_source_networks": ["127.0.0.0/8"]},
            "sources": [{"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 1}],
            "topics": TOPICS,
        }, allow_unicode=True, sort_keys=False), "utf-8")
        bot.set_member(GROUP, DEFAULT_USER_ID, "creator")
        daemon = DaemonProcess(config, token=TOKEN, log_dir=tmp_path).start()
        desk = Desk(bot, tmp_path / "newswatch.db")
        try:
            wait_until(lambda: bot.calls_to("getUpdates"), 30, what="the bot to start polling")
            desk.ask(ALICE, "/start", "Subscribed to all topics")
            desk.ask(GROUP, "/start", "Subscribed to all topics")
            feeds.set_feed("/wire.xml", [WRONG, SUMMIT])
            first_taps(desk)
            daemon.stop()
            assert desk.vote_rows(ALICE) == [(ALICE, -1, ["north-korea", "summit"])]

            polls = len(bot.calls_to("getUpdates"))
            daemon.start()
            wait_until(lambda: len(bot.calls_to("getUpdates")) > polls, 30, what="the bot to poll again")
            after_restart(desk)
            export_and_eval(config, tmp_path)
        finally:
            daemon.finish()


def first_taps(desk: Desk) -> None:
    alert = desk.alert(ALICE, SUMMIT.title)
    [(outbox_id,)] = desk.sql("SELECT o.id FROM outbox o JOIN stories s ON s.id = o.story_id"
                              " WHERE o.chat_id = ? AND s.url = ?", ALICE, SUMMIT.link)
    assert buttons(alert) == [("👍", f"vote:+:{outbox_id}"), ("👎", f"vote:-:{outbox_id}")]
    message_id = alert["message_id"]

    desk.tap(ALICE, f"vote:+:{outbox_id}", message_id, "Thanks — marked relevant")
    desk.shown(ALICE, message_id, ["👍 1", "👎 0"])
    desk.tap(ALICE, f"vote:+:{outbox_id}", message_id, "You already marked it relevant")
    assert desk.vote_rows(ALICE) == [(ALICE, 1, ["north-korea", "summit"])]
    desk.tap(ALICE, f"vote:-:{outbox_id}", message_id, "Thanks — marked not relevant")
    desk.shown(ALICE, message_id, ["👍 0", "👎 1"])
    assert desk.vote_rows(ALICE) == [(ALICE, -1, ["north-korea", "summit"])]

    # in a group, each person votes once; voting is not a setting, so no administrator is needed
    group_alert = desk.alert(GROUP, SUMMIT.title)
    [data_up, data_down] = [d for _, d in buttons(group_alert)]
    for user, data, answer in ((ANN, data_up, "Thanks — marked relevant"), (BEN, data_up, "Thanks — marked relevant"),
                               (CY, data_down, "Thanks — marked not relevant"),
                               (ANN, data_up, "You already marked it relevant")):
        desk.tap(GROUP, data, group_alert["message_id"], answer, user_id=user)
    desk.shown(GROUP, group_alert["message_id"], ["👍 2", "👎 1"])
    assert [(u, v) for u, v, _ in desk.vote_rows(GROUP)] == [(ANN, 1), (BEN, 1), (CY, -1)]

    wrong = desk.alert(GROUP, WRONG.title)
    assert "#north_korea" in wrong["visible"]
    desk.tap(GROUP, buttons(wrong)[1][1], wrong["message_id"], "Thanks — marked not relevant", user_id=ANN)
    desk.tap(GROUP, "vote:+:999999", wrong["message_id"],
             "This alert is no longer known here; votes count on alerts sent to this chat.", user_id=ANN)


def after_restart(desk: Desk) -> None:
    assert sorted((u, v) for u, v, _ in desk.vote_rows(GROUP)) == [(ANN, -1), (ANN, 1), (BEN, 1), (CY, -1)]
    # an alert sent before the restart still takes votes, and the counts include the stored ones
    group_alert = desk.alert(GROUP, SUMMIT.title)
    data_up = buttons(group_alert)[0][1]
    desk.tap(GROUP, data_up, group_alert["message_id"], "Thanks — marked relevant", user_id=CY)
    desk.shown(GROUP, group_alert["message_id"], ["👍 3", "👎 0"])

    reply = desk.ask(GROUP, "/feedback", "Feedback on alerts here")["visible"]
    assert "#summit: 👍 3, 👎 0, precision 100%" in reply
    assert "#north_korea: 👍 3, 👎 1, precision 75%" in reply
    assert WRONG.title in reply.split("Last marked 👎")[1]
    reply = desk.ask(ALICE, "/feedback", "Feedback on alerts here")["visible"]
    assert "#summit: 👍 0, 👎 1, precision 0%" in reply


def export_and_eval(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "votes.jsonl"
    done = newswatch("feedback", "export", "-c", str(config), "--chat", str(GROUP), "-o", str(out))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    by_title = {r["title"]: r for r in rows}
    assert set(by_title) == {SUMMIT.title, WRONG.title}
    assert (by_title[SUMMIT.title]["summit"], by_title[SUMMIT.title]["north-korea"]) == (1, 1)
    assert by_title[WRONG.title]["north-korea"] == 0 and "summit" not in by_title[WRONG.title]
    assert by_title[SUMMIT.title]["text"] and by_title[SUMMIT.title]["id"]

    done = newswatch("eval", "-c", str(config), str(out), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["stories"] == 2
    assert result["topics"]["north-korea"]["fp"] == 1 and result["topics"]["north-korea"]["tp"] == 1
    assert result["topics"]["summit"]["tp"] == 1

    everyone = tmp_path / "all.jsonl"
    assert newswatch("feedback", "export", "-c", str(config), "-o", str(everyone)).returncode == 0
    assert len(everyone.read_text("utf-8").splitlines()) == 2  # ALICE's 👎 on the summit is outvoted
