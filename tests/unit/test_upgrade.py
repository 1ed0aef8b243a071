"""Databases written by earlier releases (tests/fixtures/release-*.db) upgrade in place, losing nothing.

Each test works on a copy: opened with this release, every row of every table is still there
with the same values, the new columns have their defaults, the schema is the one a new database
gets, the versions are current, and opening again changes nothing. The read-only commands work
on it (upgrading a copy nobody opened yet), and a database of a newer release is refused.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from newswatch.alerts.config import load_config
from newswatch.alerts.store import MIGRATIONS as ALERTS_MIGRATIONS
from newswatch.alerts.deliver.outbox import Outbox
from newswatch.alerts.subscriptions import Subscriptions
from newswatch.crawler.migrations import SchemaTooNew

from newswatch.cli import main
from newswatch.reports import show_stats
from newswatch.storage import PARTS, open_storage

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RELEASES = ["106f4d4", "63fe43d"]
CURRENT = {part: max(m[0] for m in migrations) for part, migrations in PARTS.items()}
ADDED = {("stories", "held"): "", ("stories", "from_page"): 0, ("outbox", "kind"): "alert",
         ("outbox", "notice_id"): None, ("story_clusters", "title"): b"\x00\x00\x00\x00"}


def _copy(release: str, tmp_path: Path) -> Path:
    path = tmp_path / "newswatch.db"
    shutil.copyfile(FIXTURES / f"release-{release}.db", path)
    return path


def _tables(path: Path) -> dict[str, list[dict]]:
    """Every row of every table (the search index's shadow tables aside), in a stable order."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                            " AND name NOT LIKE 'stories_fts%' ORDER BY name")]
        return {name: sorted((dict(r) for r in conn.execute(f"SELECT * FROM [{name}]")), key=repr) for name in names}
    finally:
        conn.close()


def _schema(path: Path) -> dict[str, object]:
    """Each table's columns (name, type, not null, default, key) and each index's definition."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {r[0]: sorted(tuple(c[1:]) for c in conn.execute(f"PRAGMA table_info([{r[0]}])"))
                  for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        indexes = {r[0]: " ".join(r[1].split()) for r in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
        return {"tables": tables, "indexes": indexes}
    finally:
        conn.close()


@pytest.mark.parametrize("release", RELEASES)
def test_every_row_is_kept_with_its_values(release: str, tmp_path: Path) -> None:
    path = _copy(release, tmp_path)
    before = _tables(path)
    assert "schema_migrations" not in before and before["stories"] and before["outbox"]
    open_storage(path).close()
    after = _tables(path)
    for table, rows in before.items():
        if table == "sqlite_sequence":
            assert {r["name"]: r["seq"] for r in rows}.items() <= {r["name"]: r["seq"] for r in after[table]}.items()
            continue
        kept = [{column: row[column] for column in rows[0]} for row in after[table]] if rows else after[table]
        assert kept == rows, table
        for (added_to, column), default in ADDED.items():
            if added_to == table and column not in rows[0]:
                assert {row[column] for row in after[table]} == {default}, f"{table}.{column}"
    assert {r["part"]: r["version"] for r in after["schema_migrations"]} == CURRENT


@pytest.mark.parametrize("release", RELEASES)
def test_the_schema_is_a_new_databases_and_opening_again_changes_nothing(release: str, tmp_path: Path) -> None:
    path = _copy(release, tmp_path)
    storage = open_storage(path)
    assert storage.versions() == CURRENT
    storage.close()
    fresh = tmp_path / "fresh.db"
    open_storage(fresh).close()
    assert _schema(path) == _schema(fresh)
    rows, data = _tables(path), path.read_bytes()
    again = open_storage(path)
    assert again.versions() == CURRENT and again.pending == []
    again.close()
    assert _tables(path) == rows
    assert path.read_bytes() == data, "a second open wrote to the file"


@pytest.mark.parametrize("release", RELEASES)
def test_the_upgraded_stores_read_what_the_release_wrote(release: str, tmp_path: Path) -> None:
    storage = open_storage(_copy(release, tmp_path))
    chat = Subscriptions(storage.alerts).chat(-1002)
    assert chat is not None and (chat.thread_id, chat.timezone, chat.kind) == (77, "Asia/Seoul", "supergroup")
    quiet = Subscriptions(storage.alerts).chat(303)
    assert quiet is not None and quiet.digest == "daily" and quiet.quiet is not None
    assert Subscriptions(storage.alerts).topics_of(-1002) == {"sanctions": 4.5, "summit": None}
    heads = Outbox(storage.alerts).due_heads(datetime(2030, 1, 1, tzinfo=UTC))
    assert sorted((i.chat_id, i.kind) for i in heads) == \
        [(-1002, "alert"), (101, "alert"), *([(1001, "notice")] if release == "106f4d4" else [])]
    counts = Outbox(storage.alerts).counts()
    assert (counts["sent"], counts["failed"], counts["dropped"]) == ((3, 1, 1) if release == "106f4d4" else (2, 1, 1))
    assert storage.stories.count() == (7 if release == "106f4d4" else 5)
    assert [w.rule for w in storage.alerts.all_watches()] == ["Hanoi summit"]
    assert storage.stories.fetch_state("down").failures == 2
    held = {s.held for s in storage.stories.stories_after(0)}
    assert held == ({"", "too old", "first fetch"} if release == "106f4d4" else {""})


def _config(tmp_path: Path, path: Path) -> Path:
    config = tmp_path / "newswatch.yaml"
    topics = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "newswatch.yaml").read_text("utf-8"))
    config.write_text(yaml.safe_dump({"storage": {"path": str(path)}, "sources": [
        {"name": "wire", "url": "https://wire.example.com/rss"},
        {"name": "herald", "url": "https://herald.example.com/feed"}], "topics": topics["topics"]}), "utf-8")
    return config


@pytest.mark.parametrize("release", RELEASES)
def test_the_read_only_commands_work_on_a_copy_never_opened(release: str, tmp_path: Path, capsys) -> None:
    path = _copy(release, tmp_path)
    config = _config(tmp_path, path)
    assert main(["stats", "--json", "-c", str(config)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["outbox"]["pending"] == (3 if release == "106f4d4" else 2)
    assert {s["name"]: s["enabled"] for s in stats["sources"]} == {"wire": True, "herald": False, "local": False}
    assert stats["chats_active"] == 3
    out = io.StringIO()
    assert show_stats(load_config(config), out, as_json=True, now=datetime(2026, 3, 2, tzinfo=UTC)) == 0
    stats = json.loads(out.getvalue())
    assert sum(stats["stories_per_day"].values()) == (7 if release == "106f4d4" else 5)
    assert stats["topics_per_day"]["summit"]["2026-03-01"] == 2
    assert main(["stats", "-c", str(config)]) == 0
    assert "Outbox" in capsys.readouterr().out
    assert main(["export", "--since", "2026-02-01", "--format", "jsonl", "-c", str(config)]) == 0
    exported = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(exported) == 4 and {t["topic"] for r in exported for t in r["topics"]} >= {"summit", "sanctions"}
    out = tmp_path / "votes.jsonl"
    assert main(["feedback", "export", "-c", str(config), "-o", str(out)]) == 0
    assert len(out.read_text("utf-8").splitlines()) == (1 if release == "106f4d4" else 0)
    assert open_storage(path, upgrade=False).pending == []  # the first command upgraded it, once


def test_a_database_of_a_newer_release_is_refused(tmp_path: Path, capsys) -> None:
    path = tmp_path / "newswatch.db"
    open_storage(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_migrations (part, version, name, applied_at)"
                 " VALUES ('alerts', 99, 'from the future', '2030-01-01T00:00:00+00:00')")
    conn.commit()
    conn.close()
    data = path.read_bytes()
    for read_only in (False, True):
        with pytest.raises(SchemaTooNew, match=r"newswatch\.db: was written by a newer release of newswatch "
                                               r"\(its alerts schema is at version 99, 'from the future'; "
                                               rf"this release knows versions up to {ALERTS_MIGRATIONS[-1][0]}\)"):
            open_storage(path, read_only=read_only)
    assert main(["stats", "-c", str(_config(tmp_path, path))]) == 2  # as for any database it cannot use
    assert "was written by a newer release of newswatch" in capsys.readouterr().err
    assert path.read_bytes() == data


def test_a_part_this_release_does_not_know_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newswatch.db"
    open_storage(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_migrations VALUES ('archive', 1, 'baseline', '2030-01-01T00:00:00+00:00')")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNew, match="its archive schema is at version 1, 'baseline'; this release knows no such part"):
        open_storage(path)


def test_processes_that_start_together_on_a_new_database_migrate_it_once(database) -> None:
    """Several roles started at once on an empty database (a deployment): every one opens it,
    and each migration is applied and recorded exactly once."""
    import threading

    starters = 6
    ready = threading.Barrier(starters)
    errors: list[BaseException] = []

    def start() -> None:
        ready.wait()
        try:
            open_storage(database).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    storage = open_storage(database)
    try:
        rows = storage.alerts.conn.execute("SELECT part, version FROM schema_migrations").fetchall()
    finally:
        storage.close()
    recorded = sorted((part, version) for part, version in rows)
    assert recorded == sorted((part, m[0]) for part, migrations in PARTS.items() for m in migrations)
