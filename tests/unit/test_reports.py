"""`newswatch stats` and `newswatch export`: the queries, the health rule, and the files read back."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from newswatch.alerts.deliver.outbox import Outbox
from newswatch.reports import (
    collect_stats, matched_stories, parse_since, render_stats, source_health, write_csv, write_jsonl,
)
from newswatch.alerts.subscriptions import Subscriptions
from newswatch.crawler.sources import SourceConfig
from newswatch.crawler.store import FetchState
from newswatch.storage import open_storage
from newswatch.crawler.story import Story, story_id

NOW = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("value, expected", [
    ("7d", NOW - timedelta(days=7)),
    ("12h", NOW - timedelta(hours=12)),
    ("90m", NOW - timedelta(minutes=90)),
    ("3600", NOW - timedelta(hours=1)),
    ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
    ("2026-03-01T09:00+09:00", datetime(2026, 3, 1, tzinfo=UTC)),
])
def test_parse_since(value: str, expected: datetime) -> None:
    assert parse_since(value, NOW) == expected


@pytest.mark.parametrize("value", ["last week", "", "-3d", "2026-13-01"])
def test_parse_since_refuses(value: str) -> None:
    with pytest.raises(ValueError, match="--since"):
        parse_since(value, NOW)


FEED = SourceConfig(name="wire", url="https://wire.example.com/rss", interval=300)


@pytest.mark.parametrize("source, state, expected", [
    (FEED.model_copy(update={"enabled": False}), None, "disabled"),
    (FEED, None, "not fetched yet"),
    (FEED, FetchState("wire", last_attempt=NOW, last_success=NOW - timedelta(minutes=5)), "ok"),
    (FEED, FetchState("wire", last_attempt=NOW, last_success=NOW - timedelta(hours=2)), "stale"),
    (FEED, FetchState("wire", last_attempt=NOW, last_success=NOW - timedelta(hours=2),
                      not_before=NOW + timedelta(minutes=10)), "ok"),
    (FEED, FetchState("wire", last_attempt=NOW, failures=2, last_error="HTTP 503"), "failing"),
])
def test_source_health(source: SourceConfig, state: FetchState | None, expected: str) -> None:
    assert source_health(source, state, NOW) == expected


class Db:
    def __init__(self, path: Path) -> None:
        self.db = open_storage(path)
        self.store = self.db.stories
        self.outbox = Outbox(self.db.alerts)
        self.subs = Subscriptions(self.db.alerts)

    def story(self, n: int, title: str, *, at: datetime, text: str = "") -> Story:
        url = f"https://wire.example.com/{n}"
        story = Story(id=story_id("wire", url, ""), source="wire", url=url, title=title, text=text or title,
                      published=at - timedelta(minutes=30))
        self.store.record_success("wire", at=at, status=200, etag=None, last_modified=None, stories=[story])
        return story


@pytest.fixture
def db(tmp_path: Path) -> Db:
    db = Db(tmp_path / "newswatch.db")
    day = timedelta(days=1)
    old = db.story(4, "2018 Singapore summit", at=NOW - 30 * day)
    summit = db.story(1, "Kim and Trump meet, a summit, in Hanoi", at=NOW - 2 * day, text="Text, with \"quotes\"\nand lines")
    sanctions = db.story(2, "UN passes new sanctions on North Korea", at=NOW - day)
    db.story(3, "G20 summit opens in Rio", at=NOW - timedelta(minutes=10))
    db.outbox.record_match(summit.id, "summit", 8.0, ["summit", "Kim Jong Un"], NOW - 2 * day)
    db.outbox.record_match(summit.id, "sanctions", 6.5, ["sanctions", "Kim Jong Un"], NOW - 2 * day)
    db.outbox.record_match(sanctions.id, "sanctions", 9.25, ["sanctions"], NOW - day)
    db.outbox.record_match(old.id, "summit", 7.0, ["summit"], NOW - 30 * day)
    db.subs.start(7, ["summit"], now=NOW - 3 * day)
    db.outbox.enqueue(7, summit.id, [("summit", 8.0)], ["summit"], NOW - 2 * day)
    db.outbox.enqueue(7, sanctions.id, [("sanctions", 9.25)], ["sanctions"], NOW - day)
    first = db.outbox.due_heads(NOW)[0]
    db.outbox.mark_sent(first.id, 11, NOW - 2 * day)
    db.outbox.reschedule(first.id + 1, NOW + timedelta(minutes=5), "Telegram unreachable: TimedOut")
    return db


def test_matched_stories_one_record_per_story(db: Db) -> None:
    records = matched_stories(db.db, NOW - timedelta(days=7))
    assert [r["title"] for r in records] == ["Kim and Trump meet, a summit, in Hanoi", "UN passes new sanctions on North Korea"]
    first = records[0]
    assert first["topics"] == [{"topic": "summit", "score": 8.0}, {"topic": "sanctions", "score": 6.5}]
    assert first["terms"] == ["summit", "Kim Jong Un", "sanctions"]
    assert "text" not in first
    assert [r["title"] for r in matched_stories(db.db, NOW - timedelta(days=7), topics=["summit"])] == [first["title"]]
    assert len(matched_stories(db.db, NOW - timedelta(days=60))) == 3
    assert matched_stories(db.db, NOW) == []


def test_jsonl_and_csv_read_back(db: Db) -> None:
    records = matched_stories(db.db, NOW - timedelta(days=7), with_text=True)
    out = io.StringIO()
    assert write_jsonl(records, out) == 2
    assert [json.loads(line) for line in out.getvalue().splitlines()] == records

    out = io.StringIO()
    assert write_csv(records, out) == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["title"] for r in rows] == [r["title"] for r in records]
    assert rows[0]["topics"] == "summit:8.0;sanctions:6.5"
    assert rows[0]["terms"] == "summit;Kim Jong Un;sanctions"
    assert rows[0]["text"] == "Text, with \"quotes\"\nand lines"  # quoted, not broken into rows
    assert rows[1]["published"] == records[1]["published"] and rows[1]["url"] == "https://wire.example.com/2"


def test_stats(db: Db) -> None:
    sources = [FEED, SourceConfig(name="quiet", url="https://quiet.example.com/rss")]
    stats = collect_stats(db.db, sources, NOW, days=7)
    assert [(s.name, s.health, s.stories) for s in stats.sources] == [("wire", "ok", 4), ("quiet", "not fetched yet", 0)]
    assert len(stats.days) == 7 and stats.days[-1] == NOW.date()
    assert [stats.stories_per_day[d] for d in ("2026-03-06", "2026-03-07", "2026-03-08")] == [1, 1, 1]
    assert sum(stats.stories_per_day.values()) == 3  # the one a month old is outside the window
    assert stats.topics_per_day["summit"] == {**{d.isoformat(): 0 for d in stats.days}, "2026-03-06": 1}
    assert sum(stats.topics_per_day["sanctions"].values()) == 2
    assert stats.outbox == {"sent": 1, "pending": 1}
    assert (stats.outbox_due, stats.outbox_held) == (0, 1)
    assert stats.oldest_pending == NOW - timedelta(days=1)
    assert stats.chats_active == 1
    assert stats.recent_failures == [{"chat": 7, "state": "pending", "error": "Telegram unreachable: TimedOut",
                                      "created": (NOW - timedelta(days=1)).isoformat()}]
    json.dumps(stats.as_json())  # serialisable as is

    console = Console(file=io.StringIO(), width=140)
    render_stats(stats, console)
    text = console.file.getvalue()
    for expected in ("wire", "not fetched yet", "summit", "sanctions", "03-06", "1 (0 due now, 1 waiting)",
                     "chat 7: pending: Telegram unreachable"):
        assert expected in text, expected
