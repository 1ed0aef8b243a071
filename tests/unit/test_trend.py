"""The /trend chart: counting matched stories per local day, and the PNG itself."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from newswatch.alerts.bot.history import History
from newswatch.alerts.deliver.outbox import Outbox
from newswatch.alerts.bot.trend import daily_counts, days_of, render_png
from newswatch.storage import open_storage
from newswatch.crawler.story import Story, story_id

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n"


def _size(png: bytes) -> tuple[int, int]:
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_one_topic_renders_a_bar_chart_png() -> None:
    series = {"summit": [(d, i % 3) for i, d in enumerate(days_of(date(2026, 3, 10), 14))]}
    png = render_png(series, title="summit: matched stories per day, last 14 days")
    assert png.startswith(PNG)
    assert _size(png) == (800, 400)
    assert len(png) > 5000


def test_several_topics_and_empty_days_render() -> None:
    days = days_of(date(2026, 3, 10), 3)
    png = render_png({"summit": [(d, 0) for d in days], "sanctions": [(d, 0) for d in days]}, title="nothing")
    assert png.startswith(PNG) and _size(png) == (800, 400)


def test_days_of_ends_today_oldest_first() -> None:
    assert days_of(date(2026, 3, 10), 3) == [date(2026, 3, 8), date(2026, 3, 9), date(2026, 3, 10)]


def test_daily_counts_by_local_day_of_the_match(tmp_path) -> None:
    db = open_storage(tmp_path / "db.sqlite")
    store, outbox = db.stories, Outbox(db.alerts)

    def matched(title: str, at: datetime, *topics: str, published: datetime = NOW - timedelta(days=40)) -> None:
        url = f"https://example.com/{title}"
        story = Story(id=story_id("s", url, url), source="s", url=url, title=title, text="", published=published,
                      guid=url)
        store.add_stories([story], at)
        for topic in topics:
            outbox.record_match(story.id, topic, 9.0, [], at)

    matched("a", NOW - timedelta(hours=1), "summit", "sanctions")
    matched("b", datetime(2026, 3, 9, 16, 0, tzinfo=UTC), "summit")   # 01:00 on the 10th in Seoul
    matched("c", datetime(2026, 3, 9, 14, 0, tzinfo=UTC), "summit")   # 23:00 on the 9th in Seoul
    matched("d", NOW - timedelta(days=30), "summit")                  # outside the window
    matched("e", NOW - timedelta(hours=2), "summit", published=NOW + timedelta(days=1))  # dated in the future

    utc = daily_counts(db.alerts, ["summit", "sanctions"], 3, NOW, ZoneInfo("UTC"))
    assert utc["summit"] == [(date(2026, 3, 8), 0), (date(2026, 3, 9), 2), (date(2026, 3, 10), 2)]
    assert utc["sanctions"] == [(date(2026, 3, 8), 0), (date(2026, 3, 9), 0), (date(2026, 3, 10), 1)]
    seoul = daily_counts(db.alerts, ["summit"], 3, NOW, ZoneInfo("Asia/Seoul"))
    assert seoul["summit"] == [(date(2026, 3, 8), 0), (date(2026, 3, 9), 1), (date(2026, 3, 10), 3)]
    assert daily_counts(db.alerts, [], 3, NOW, ZoneInfo("UTC")) == {}


def test_trend_and_status_count_the_same_stories(tmp_path) -> None:
    """A story published long ago and matched now (a feed's old item seen for the first time)
    is in /status's "matched in the last 24 h" and in today's bar of /trend alike."""
    db = open_storage(tmp_path / "db.sqlite")
    store, outbox = db.stories, Outbox(db.alerts)
    url = "https://example.com/old"
    story = Story(id=story_id("s", url, url), source="s", url=url, title="old", text="",
                  published=NOW - timedelta(days=10), guid=url)
    store.add_stories([story], NOW - timedelta(hours=1))
    outbox.record_match(story.id, "summit", 9.0, [], NOW - timedelta(hours=1))
    assert History(db.stories, db.alerts).matched_since(NOW - timedelta(days=1)) == 1
    today = daily_counts(db.alerts, ["summit"], 1, NOW, ZoneInfo("UTC"))["summit"]
    assert today == [(date(2026, 3, 10), 1)]
