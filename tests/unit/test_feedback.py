"""Votes under alerts: stored once per person and replaced by a later tap, kept across reopening,
added in place to an earlier database, summed per topic, turned into labels (majority, ties
left out) that `load_labels` and `evaluate` read, and the buttons sent with an alert, on the
plain-text fallback too."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from telegram.ext import ApplicationBuilder

from newswatch.alerts.config import load_config
from newswatch.alerts.match.evaluation import evaluate, load_labels
from newswatch.alerts.feedback import DOWN, UP, Votes, export_labels, parse_vote_data, vote_data
from newswatch.alerts.bot.feedback import feedback_text
from newswatch.alerts.deliver.telegram import vote_keyboard
from newswatch.alerts.deliver.format import AlertView
from newswatch.alerts.match.matcher import Matcher
from newswatch.alerts.deliver.outbox import Outbox
from newswatch.alerts.deliver.telegram import TelegramSink
from newswatch.storage import open_storage
from newswatch.crawler.story import Story
from tests.fakes.bot_api import FakeBotAPI

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
DESK, HOME = -1001234567, 77
ANN, BEN, CY = 11, 22, 33


def story(story_id: str, title: str, text: str = "", language: str = "en") -> Story:
    return Story(id=story_id, source="wire", url=f"https://wire.example.com/{story_id}", title=title, text=text,
                 published=NOW - timedelta(hours=1), language=language)


@pytest.fixture
def db(database):
    db = open_storage(database)
    db.stories.add_stories([
        story("s1", "Kim and Trump agree to a second summit", "North Korea's leader accepted a summit."),
        story("s2", "Summit of the Alps draws climbers", "A mountain summit, not a meeting."),
        story("s3", "New sanctions on North Korean shipping", "The UN widened sanctions on North Korea."),
        story("s4", "북한, 미사일 발사", "북한이 동해상으로 탄도미사일을 발사했다.", language="ko"),
    ], NOW)
    yield db.alerts
    db.close()


def test_vote_data_fits_telegrams_64_bytes_and_reads_back() -> None:
    assert vote_data(UP, 12) == "vote:+:12" and vote_data(DOWN, 12) == "vote:-:12"
    assert len(vote_data(DOWN, 2**63 - 1).encode()) <= 64
    assert parse_vote_data("vote:+:12") == (UP, 12)
    assert parse_vote_data("vote:-:9223372036854775807") == (DOWN, 2**63 - 1)
    for wrong in ("vote:*:1", "vote:+:", "vote:+:x", "topic:summit", "vote:+:1:2", ""):
        assert parse_vote_data(wrong) is None
    buttons = vote_keyboard(5).inline_keyboard[0]
    assert [(b.text, b.callback_data) for b in buttons] == [("👍", "vote:+:5"), ("👎", "vote:-:5")]
    assert [b.text for b in vote_keyboard(5, (2, 1)).inline_keyboard[0]] == ["👍 2", "👎 1"]


def test_a_vote_is_kept_once_per_person_and_a_later_tap_replaces_it(db) -> None:
    votes = Votes(db)
    assert votes.record(DESK, "s1", ANN, UP, ["summit"], NOW) is None
    assert votes.record(DESK, "s1", ANN, UP, ["summit"], NOW + timedelta(seconds=1)) == UP
    assert votes.counts(DESK, "s1") == (1, 0)
    assert votes.record(DESK, "s1", ANN, DOWN, ["summit"], NOW + timedelta(seconds=2)) == UP
    assert votes.counts(DESK, "s1") == (0, 1)
    votes.record(DESK, "s1", BEN, UP, ["summit"], NOW)
    votes.record(HOME, "s1", ANN, UP, ["summit"], NOW)  # another chat: its own vote
    assert votes.counts(DESK, "s1") == (1, 1)
    assert votes.counts(HOME, "s1") == (1, 0)
    rows = db.conn.execute("SELECT chat_id, user_id, vote, topics, at FROM votes WHERE chat_id = ? ORDER BY user_id",
                      (DESK,)).fetchall()
    assert [(r[0], r[1], r[2], json.loads(r[3])) for r in rows] == [(DESK, ANN, -1, ["summit"]),
                                                                    (DESK, BEN, 1, ["summit"])]
    assert rows[0]["at"] == (NOW + timedelta(seconds=2)).isoformat()
    with pytest.raises(ValueError):
        votes.record(DESK, "s1", CY, 2, ["summit"], NOW)


def test_votes_survive_reopening_and_an_earlier_database_gains_the_table(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)  # an outbox as a release before votes made it
    old.executescript("CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, chat_id INTEGER NOT NULL,"
                      " story_id TEXT NOT NULL, topics TEXT NOT NULL, terms TEXT NOT NULL, created TEXT NOT NULL,"
                      " not_before TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
                      " state TEXT NOT NULL DEFAULT 'pending', sent_at TEXT, message_id INTEGER,"
                      " last_error TEXT NOT NULL DEFAULT '', UNIQUE (chat_id, story_id));")
    old.close()
    db = open_storage(path, read_only=True)  # as `newswatch feedback export` opens it: upgraded in place
    assert list(Votes(db.alerts).labels()) == []
    db.close()
    db = open_storage(path)
    Outbox(db.alerts).enqueue(DESK, "s1", [("summit", 8.0)], ["summit"], NOW)
    Votes(db.alerts).record(DESK, "s1", ANN, DOWN, ["summit"], NOW)
    db.close()

    db = open_storage(path)
    try:
        votes = Votes(db.alerts)
        assert votes.counts(DESK, "s1") == (0, 1)
        assert db.alerts.outbox_counts() == {"pending": 1}
    finally:
        db.close()


def test_summary_per_topic_and_the_last_stories_marked_down(db) -> None:
    votes = Votes(db)
    votes.record(DESK, "s1", ANN, UP, ["summit", "north-korea"], NOW)
    votes.record(DESK, "s1", BEN, UP, ["summit", "north-korea"], NOW)
    votes.record(DESK, "s2", ANN, DOWN, ["summit"], NOW + timedelta(minutes=1))
    votes.record(DESK, "s3", ANN, UP, ["sanctions"], NOW + timedelta(minutes=2))
    votes.record(HOME, "s3", ANN, DOWN, ["sanctions"], NOW)  # another chat's vote is not counted here
    summary = {t.topic: (t.up, t.down, t.precision) for t in votes.summary(DESK)}
    assert summary == {"north-korea": (2, 0, 1.0), "sanctions": (1, 0, 1.0), "summit": (2, 1, pytest.approx(2 / 3))}
    assert votes.recent_down(DESK) == ["Summit of the Alps draws climbers"]
    text = feedback_text(votes, DESK)
    assert "#summit: 👍 2, 👎 1, precision 67%" in text
    assert "Summit of the Alps draws climbers" in text
    assert "No votes here yet" in feedback_text(votes, -5)


def test_labels_follow_the_majority_and_leave_ties_out(db) -> None:
    votes = Votes(db)
    for user, vote in ((ANN, UP), (BEN, UP), (CY, DOWN)):   # s1: 2 to 1 relevant
        votes.record(DESK, "s1", user, vote, ["summit", "watch Hanoi"], NOW)
    for user, vote in ((ANN, UP), (BEN, DOWN)):              # s2: a tie, left out
        votes.record(DESK, "s2", user, vote, ["summit"], NOW)
    votes.record(HOME, "s3", ANN, DOWN, ["sanctions"], NOW)  # s3: not relevant, in another chat
    votes.record(DESK, "gone", ANN, UP, ["summit"], NOW)     # a story no longer stored
    labels = {row["id"]: row for row in votes.labels()}
    assert set(labels) == {"s1", "s3"}
    assert labels["s1"]["summit"] == 1 and labels["s1"]["watch Hanoi"] == 1
    assert labels["s3"]["sanctions"] == 0 and "summit" not in labels["s3"]
    assert labels["s1"]["title"] == "Kim and Trump agree to a second summit" and labels["s1"]["lang"] == "en"
    assert [r["id"] for r in votes.labels(DESK)] == ["s1"]
    only_topics = next(votes.labels(DESK, topics=["summit", "sanctions", "north-korea"]))
    assert "watch Hanoi" not in only_topics


def test_one_person_voting_in_two_chats_counts_once(db) -> None:
    votes = Votes(db)
    votes.record(HOME, "s2", ANN, UP, ["summit"], NOW)
    votes.record(DESK, "s2", ANN, DOWN, ["summit"], NOW + timedelta(minutes=1))  # changed their mind
    votes.record(DESK, "s2", BEN, DOWN, ["summit"], NOW)
    assert [r["summit"] for r in votes.labels()] == [0]
    votes.record(DESK, "s2", BEN, UP, ["summit"], NOW + timedelta(minutes=2))
    assert list(votes.labels()) == []  # one to one: a tie


def test_exported_labels_are_read_by_load_labels_and_evaluate(db, tmp_path: Path) -> None:
    votes = Votes(db)
    votes.record(DESK, "s1", ANN, UP, ["summit", "north-korea"], NOW)
    votes.record(DESK, "s2", ANN, DOWN, ["summit"], NOW)
    votes.record(DESK, "s3", ANN, UP, ["sanctions", "north-korea"], NOW)
    votes.record(DESK, "s4", ANN, UP, ["north-korea"], NOW)
    topics = load_config(ROOT / "config" / "newswatch.yaml").topics
    out = io.StringIO()
    assert export_labels(votes, out, chat_id=DESK, topics=topics) == 4
    path = tmp_path / "votes.jsonl"
    path.write_text(out.getvalue(), "utf-8")
    rows = load_labels(path)
    assert [r["id"] for r in rows] == ["s1", "s2", "s3", "s4"]
    assert {k for k in rows[0] if k in topics} == {"summit", "north-korea"}
    result = evaluate(Matcher(topics), rows)
    assert result["stories"] == 4
    assert set(result["topics"]) == {"summit", "sanctions", "north-korea"}
    assert result["topics"]["north-korea"]["positives"] == 3
    assert result["topics"]["summit"]["positives"] == 1


def test_a_single_alert_carries_the_vote_buttons_on_the_plain_text_fallback_too_and_a_digest_none(tmp_path: Path) -> None:
    async def scenario(fake: FakeBotAPI) -> None:
        app = ApplicationBuilder().token(fake.token).base_url(fake.api_base).build()
        await app.initialize()
        try:
            sink = TelegramSink(app)
            await sink._send(HOME, None, "<b>refused", lambda: "plain alert", vote_keyboard(3))
            await sink._send(HOME, None, "<b>accepted</b>", lambda: "accepted", vote_keyboard(4))
            view = AlertView(title="Second summit", url="https://wire.example.com/s", source="wire",
                             published=NOW, topics=(("summit", 8.0),), outbox_id=5)
            await sink.send(HOME, None, view, ZoneInfo("UTC"))
            await sink.send_digest(HOME, None, [view], ZoneInfo("UTC"), "Hourly digest: 1 story")
        finally:
            await app.shutdown()

    with FakeBotAPI() as fake:
        asyncio.run(scenario(fake))
        sent = fake.sent
    assert [m["visible"] for m in sent[:2]] == ["plain alert", "accepted"]
    assert [[b["callback_data"] for b in m["reply_markup"]["inline_keyboard"][0]] for m in sent[:3]] == [
        ["vote:+:3", "vote:-:3"], ["vote:+:4", "vote:-:4"], ["vote:+:5", "vote:-:5"]]
    assert "Hourly digest" in sent[3]["visible"] and sent[3]["reply_markup"] is None  # a digest has none
