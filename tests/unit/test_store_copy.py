"""`newswatch store copy`: SQLite → PostgreSQL → SQLite keeps every row, id and counter."""

from __future__ import annotations

import io
import sqlite3
from datetime import UTC, datetime

from newswatch.alerts.match.clustering import Sketch
from newswatch.crawler.story import Story

from newswatch.storage import open_storage
from newswatch.store_copy import TABLES, show_copy

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _fill(path) -> None:
    db = open_storage(path)
    for i in range(5):
        url = f"https://x.com/{i}"
        db.stories.add_stories([Story(id=f"s{i}", source="a", url=url, title=f"Summit {i}", text="talks",
                                      published=NOW, guid=url)], NOW)
    db.stories.record_failure("a", at=NOW, status=500, error="boom", not_before=NOW)
    db.stories.set_meta("dispatch_cursor", "5")
    db.alerts.start_chat(7, ["summit"], kind="private", title="", thread_id=None, now=NOW)
    db.alerts.add_watch(7, "kim summit", NOW)
    db.alerts.record_match("s1", "summit", 8.0, ["summit"], NOW)
    db.alerts.enqueue(7, "s1", [("summit", 8.0)], ["summit"], NOW)
    db.alerts.queue_notice([7], "hello", NOW, report_to=7)
    db.alerts.add_to_cluster("s1", "c1", "a", Sketch(b"\x01\x02", b"\x00\x00\x00\x01", (11, 12)), NOW)
    db.alerts.override_source_enabled("wire", False, by=1, at=NOW)
    db.alerts.record_vote(7, "s1", 9, -1, ["summit"], NOW)
    db.close()


def _contents(path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(path)
    out = {}
    for table in TABLES:
        rowid = "rowid, " if table in ("story_clusters", "runtime_sources", "votes") else ""
        out[table] = sorted(conn.execute(f"SELECT {rowid}* FROM {table}").fetchall(), key=repr)
    out["sqlite_sequence"] = sorted(conn.execute("SELECT * FROM sqlite_sequence").fetchall())
    conn.close()
    return out


def test_a_round_trip_through_postgresql_keeps_everything(tmp_path, postgres_url) -> None:
    first, back = tmp_path / "first.db", tmp_path / "back.db"
    _fill(first)
    out = io.StringIO()
    assert show_copy(str(first), postgres_url, out) == 0
    assert out.getvalue().splitlines()[0].split() == ["stories", "5"]
    assert show_copy(postgres_url, str(back), io.StringIO()) == 0
    original = _contents(first)
    original["meta"] = [row for row in original["meta"] if row[0] != "search_index_cursor"]
    assert _contents(back) == original

    pg = open_storage(postgres_url)  # the counters moved on: a new row gets the next id
    assert pg.alerts.add_watch(7, "another", NOW).id == 2
    assert pg.alerts.queue_notice([7], "again", NOW) == 1 and pg.alerts.notice_text(2) == "again"
    pg.close()


def test_a_target_with_rows_is_refused_unless_forced(tmp_path, postgres_url) -> None:
    source = tmp_path / "a.db"
    _fill(source)
    assert show_copy(str(source), postgres_url, io.StringIO()) == 0
    out = io.StringIO()
    assert show_copy(str(source), postgres_url, out) == 1
    assert "already holds rows: stories (5)" in out.getvalue() and "--force" in out.getvalue()
    assert show_copy(str(source), postgres_url, io.StringIO(), force=True) == 0
    assert open_storage(postgres_url).stories.count() == 5
