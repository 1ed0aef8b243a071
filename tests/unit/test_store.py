"""The story store: each source's dedup by id, canonical URL and GUID; fetch state; failures."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from newswatch.storage import open_storage
from newswatch.crawler.store import QuietSuccess
from newswatch.crawler.story import Story, claimant_id, story_id

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _story(source: str, url: str, guid: str, title: str = "t") -> Story:
    return Story(id=story_id(source, url, guid), source=source, url=url, title=title, text="x",
                 published=NOW, guid=guid)


def test_dedup_by_url_guid_and_id(database) -> None:
    store = open_storage(database).stories
    first = _story("a", "https://x.com/1", "g1")
    assert store.add_stories([first], NOW) == [first]
    assert store.add_stories([first], NOW) == []                                  # same story
    assert store.add_stories([_story("a", "https://x.com/1", "g-new")], NOW) == []  # GUID rewritten
    assert store.add_stories([_story("a", "https://x.com/other", "g1")], NOW) == []  # link changed, same GUID
    fresh = _story("a", "https://x.com/2", "g2")
    assert store.add_stories([fresh], NOW) == [fresh]
    assert store.count() == 2
    assert [s.story.id for s in store.stories_after(0)] == [first.id, fresh.id]
    assert store.known_urls(["https://x.com/2", "https://x.com/3"]) == {"https://x.com/2"}


def test_a_url_claimed_by_one_source_does_not_keep_another_sources_story_out(database) -> None:
    store = open_storage(database).stories
    junk = _story("junk", "https://x.com/1", "j1", title="junk")
    assert store.add_stories([junk], NOW) == [junk]
    real = _story("wire", "https://x.com/1", "w1", title="real")
    [stored] = store.add_stories([real], NOW)
    assert stored.id == claimant_id("wire", "https://x.com/1") != junk.id and stored.title == "real"
    assert store.get(stored.id).story.source == "wire" and store.get(junk.id).story.source == "junk"
    # each source's own dedup holds: the same story again, a new GUID, a changed link
    assert store.add_stories([real], NOW) == []
    assert store.add_stories([_story("wire", "https://x.com/1", "w-new")], NOW) == []
    assert store.add_stories([_story("wire", "https://x.com/other", "w1")], NOW) == []
    assert store.add_stories([junk], NOW) == []
    assert store.count() == 2
    assert store.known_urls(["https://x.com/1"], "wire") == {"https://x.com/1"}
    assert store.known_urls(["https://x.com/1"], "third") == set()  # a feed's item: the page is still fetched
    page = _story("site", "https://x.com/3", "https://x.com/3")
    assert store.add_stories([page], NOW, from_page=True) == [page]
    assert store.known_urls(["https://x.com/3"], "sitemap") == {"https://x.com/3"}  # read from the page already


def test_a_database_of_an_earlier_release_keeps_urls_unique_per_source_only(tmp_path) -> None:
    path = tmp_path / "db.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE stories (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
        " source TEXT NOT NULL, guid TEXT NOT NULL, url TEXT NOT NULL, title TEXT NOT NULL, text TEXT NOT NULL,"
        " published TEXT NOT NULL, fetched TEXT NOT NULL, language TEXT NOT NULL DEFAULT '',"
        " author TEXT NOT NULL DEFAULT '');"
        "CREATE UNIQUE INDEX stories_url ON stories(url) WHERE url != '';"
        "CREATE UNIQUE INDEX stories_source_guid ON stories(source, guid) WHERE guid != '';"
    )
    junk = _story("junk", "https://x.com/1", "j1")
    old.execute("INSERT INTO stories (id, source, guid, url, title, text, published, fetched)"
                " VALUES (?,?,?,?,?,?,?,?)", (junk.id, "junk", "j1", junk.url, "junk", "x", NOW.isoformat(),
                                              NOW.isoformat()))
    old.commit()
    old.close()
    store = open_storage(path).stories
    [stored] = store.add_stories([_story("wire", "https://x.com/1", "w1")], NOW)
    assert stored.source == "wire" and store.count() == 2
    assert store.add_stories([_story("junk", "https://x.com/1", "j2")], NOW) == []
    indexes = {r[1]: r[2] for r in store.conn.execute("PRAGMA index_list(stories)")}
    assert "stories_url" not in indexes and indexes["stories_source_url"] == 1


def test_story_round_trips_with_aware_dates(database) -> None:
    store = open_storage(database).stories
    story = _story("a", "https://x.com/1", "g1", title="북한 정상회담 <b>&</b>")
    store.add_stories([story], NOW)
    back = store.get(story.id)
    assert back is not None and back.story == story and back.story.published.tzinfo is not None


def test_fetch_state_success_then_failures(database) -> None:
    store = open_storage(database).stories
    store.record_success("a", at=NOW, status=200, etag='"e1"', last_modified="Wed, 01 Jan 2026 00:00:00 GMT", stories=[])
    assert store.record_failure("a", at=NOW, status=500, error="HTTP 500", not_before=NOW + timedelta(minutes=5)) == 1
    assert store.record_failure("a", at=NOW, status=None, error="timed out", not_before=None) == 2
    state = store.fetch_state("a")
    assert state.failures == 2 and state.etag == '"e1"' and state.last_error == "timed out"
    store.record_success("a", at=NOW, status=304, etag=None, last_modified=None, stories=[])
    state = store.fetch_state("a")
    assert state.failures == 0 and state.etag == '"e1"' and state.last_status == 304


def test_reopening_keeps_everything(database) -> None:
    path = database
    open_storage(path).stories.add_stories([_story("a", "https://x.com/1", "g1")], NOW)
    assert open_storage(path).stories.count() == 1


def test_titles_are_capped_like_texts(database) -> None:
    from newswatch.crawler.store import MAX_TITLE_CHARS

    store = open_storage(database).stories
    story = _story("a", "https://x.com/1", "g1", title="Summit " + "x" * 1_000_000)
    store.add_stories([story], NOW)
    back = store.get(story.id)
    assert back is not None and len(back.story.title) == MAX_TITLE_CHARS == 1_000
    assert back.story.title.startswith("Summit xx")


def test_an_unreachable_postgresql_is_unavailable_naming_host_and_port() -> None:
    import pytest

    from newswatch.crawler.store import StorageUnavailable

    pytest.importorskip("psycopg")
    with pytest.raises(StorageUnavailable, match=r"PostgreSQL at 127\.0\.0\.1:1/test does not answer"):
        open_storage("postgresql://postgres@127.0.0.1:1/test")


def test_a_reader_following_seq_misses_no_story_of_writers_committing_out_of_order(postgres_url) -> None:
    """Two workers store stories at once on PostgreSQL: the first draws its seq, then takes a
    while to commit; the second stores and commits meanwhile. A dispatcher that reads in seq
    order and keeps a cursor (`stories_after`) must still read both."""
    import threading
    import time

    first, second, reader = (open_storage(postgres_url) for _ in range(3))
    try:
        reader.stories.conn.execute(
            "CREATE FUNCTION slow_commit() RETURNS trigger AS $$ BEGIN IF NEW.title = 'slow' THEN"
            " PERFORM pg_sleep(1); END IF; RETURN NEW; END $$ LANGUAGE plpgsql")
        reader.stories.conn.execute("CREATE TRIGGER slow_commit AFTER INSERT ON stories FOR EACH ROW"
                                    " EXECUTE FUNCTION slow_commit()")
        now = datetime.now(UTC)
        slow, fast = _story("a", "https://a.example/1", "1", "slow"), _story("b", "https://b.example/1", "1", "fast")
        storing = threading.Thread(target=first.stories.add_stories, args=([slow], now))
        storing.start()
        time.sleep(0.3)  # the first transaction has its seq and sleeps in the trigger
        second.stories.add_stories([fast], now)
        cursor, read = 0, []
        for _ in range(2):  # a look right after the second commit, and one after both
            for stored in reader.stories.stories_after(cursor):
                read.append(stored.story.title)
                cursor = stored.seq
            storing.join(10)
        assert read == ["slow", "fast"]
    finally:
        for storage in (first, second, reader):
            storage.close()


def test_fetch_states_reads_the_states_of_many_sources_at_once(database) -> None:
    store = open_storage(database).stories
    store.record_success("a", at=NOW, status=200, etag='"e1"', last_modified=None, stories=[_story("a", "https://x/1", "1")])
    store.record_failure("b", at=NOW, status=500, error="HTTP 500", not_before=NOW + timedelta(minutes=5))
    names = ["a", "b", "never fetched", "a", *(f"n{i}" for i in range(1200))]  # more than one SQLite chunk
    states = store.fetch_states(names)
    assert set(states) == {"a", "b"}
    assert states == {"a": store.fetch_state("a"), "b": store.fetch_state("b")}
    assert states["a"].conditional_headers() == {"If-None-Match": '"e1"'} and states["a"].stories_total == 1
    assert store.fetch_states([]) == {}


def test_quiet_successes_write_the_rows_record_success_writes(database) -> None:
    """For each case, `r-` sources get `record_success` with no stories, `q-` sources one batch
    of `record_quiet_successes`: every column of their fetch state ends up the same."""
    store = open_storage(database).stories
    later = NOW + timedelta(hours=1)
    cases = {  # name -> (what was stored before, the success)
        "new": (None, dict(status=304, etag=None, last_modified=None)),
        "keeps-validators": ("success", dict(status=304, etag=None, last_modified=None)),
        "new-validators": ("success", dict(status=200, etag='"e2"', last_modified="Thu, 01 Jan 2026 13:00:00 GMT",
                                           not_before=later + timedelta(hours=2), note="3 items unreadable")),
        "after-failures": ("failures", dict(status=304, etag='"e3"', last_modified=None)),
    }
    for prefix in ("r-", "q-"):
        for name, (before, _) in cases.items():
            if before:
                store.record_success(prefix + name, at=NOW, status=200, etag='"e1"', last_modified="Wed, 31 Dec 2025",
                                     stories=[_story(prefix + name, f"https://x/{prefix}{name}", "1")])
            if before == "failures":
                store.record_failure(prefix + name, at=NOW, status=503, error="HTTP 503", not_before=later)
                store.record_failure(prefix + name, at=NOW, status=None, error="timed out", not_before=later)
    for name, (_, success) in cases.items():
        assert store.record_success("r-" + name, at=later, stories=[], **success) == []
    store.record_quiet_successes([QuietSuccess("q-" + name, at=later, **success) for name, (_, success) in cases.items()])
    store.record_quiet_successes([])
    for name in cases:
        assert replace(store.fetch_state("q-" + name), source=name) == replace(store.fetch_state("r-" + name), source=name)
    state = store.fetch_state("q-after-failures")
    assert (state.failures, state.last_error, state.etag, state.stories_total) == (0, "", '"e3"', 1)
    assert store.fetch_state("q-keeps-validators").etag == '"e1"'
    assert store.fetch_state("q-new-validators").last_error == "3 items unreadable"
