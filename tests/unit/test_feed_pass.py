"""Recording a feed pass (`FeedPass`): the fetch states read at once, the successes without
stories recorded in batches, to the same rows, counts and observers as one by one; a batch the
database refuses is reported, not raised."""

from __future__ import annotations

import contextlib
import logging
import random
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from newswatch.crawler.clock import ManualClock
from newswatch.crawler.outcomes import CrawlSummary, FeedPass, FetchOutcome, OutcomeRecorder
from newswatch.crawler.sources import CrawlerConfig, SourceConfig
from newswatch.crawler.store import StoryStore
from newswatch.crawler.story import Story, story_id
from newswatch.storage import open_storage

BEFORE = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NOW = BEFORE + timedelta(hours=1)
KINDS = ["unchanged", "unchanged-new-etag", "stories", "empty", "failing", "unreachable", "first", "after-failure"]


def _source(name: str) -> SourceConfig:
    return SourceConfig(name=name, kind="feed", url=f"https://feeds.example/{name}.xml", interval=600)


def _story(source: str, n: int) -> Story:
    url = f"https://news.example/{source}/{n}"
    return Story(id=story_id(source, url, url), source=source, url=url, title=f"{source} {n}", text="x",
                 published=NOW - timedelta(minutes=n), guid=url)


def _seed(store: StoryStore, prefix: str) -> None:
    """What was stored before the pass: one success for every source but `first`."""
    for kind in KINDS:
        if kind != "first":
            store.record_success(prefix + kind, at=BEFORE, status=200, etag='"e1"', last_modified="Wed, 31 Dec 2025",
                                 stories=[_story(prefix + kind, 0)])
    store.record_failure(prefix + "after-failure", at=BEFORE, status=500, error="HTTP 500", not_before=None)


def _outcomes(prefix: str) -> list[FetchOutcome]:
    s = {kind: _source(prefix + kind) for kind in KINDS}
    return [
        FetchOutcome(s["unchanged"], status=304),
        FetchOutcome(s["stories"], status=200, stories=[_story(prefix + "stories", 0), _story(prefix + "stories", 1)],
                     etag='"e2"', bytes=900),
        FetchOutcome(s["unchanged-new-etag"], status=304, etag='"e9"', last_modified="Thu, 01 Jan 2026"),
        FetchOutcome(s["failing"], status=503, error="HTTP 503 from the feed", retry_after=300.0, bytes=40),
        FetchOutcome(s["empty"], status=200, etag='"e3"', note="the feed has no items", fresh_for=7200, bytes=120),
        FetchOutcome(s["unreachable"], error="DNS lookup failed for feeds.example (no such host, or no network)"),
        FetchOutcome(s["first"], status=304),
        FetchOutcome(s["after-failure"], status=304),
    ]


def _recorder(store: StoryStore) -> tuple[OutcomeRecorder, list[tuple[str, int | None, int]]]:
    told: list[tuple[str, int | None, int]] = []
    recorder = OutcomeRecorder(store, ManualClock(NOW), CrawlerConfig(), rng=random.Random(7))
    recorder.observers.append(lambda outcome, new: told.append((outcome.source.name, outcome.status, len(new))))
    return recorder, told


def _seen(store: StoryStore, prefix: str, summary: CrawlSummary, told: list) -> dict:
    """What a pass left: fetch states, summary and observers, with the sources' prefix taken off."""
    cut = len(prefix)
    states = {name[cut:]: replace(state, source=name[cut:])
              for name, state in store.all_fetch_states().items() if name.startswith(prefix)}
    counts = (summary.ok, summary.not_modified, summary.failed, summary.stories_seen, summary.stories_new,
              summary.bytes, summary.baseline, summary.too_old)
    return {"states": states, "counts": counts, "failures": {k[cut:]: v for k, v in summary.failures.items()},
            "first": {n[cut:] for n in summary.first_fetch}, "new": sorted(s.title[cut:] for s in summary.new),
            "told": sorted((name[cut:], status, new) for name, status, new in told)}


def test_a_batched_pass_stores_and_counts_what_recording_one_by_one_does(database) -> None:
    store = open_storage(database).stories
    for prefix in ("one-", "batch-"):
        _seed(store, prefix)
    recorder, told = _recorder(store)
    summary = CrawlSummary(sources=len(KINDS))
    for outcome in _outcomes("one-"):
        recorder.record_safely(outcome, summary)
    one_by_one = _seen(store, "one-", summary, told)

    recorder, told = _recorder(store)
    summary = CrawlSummary(sources=len(KINDS))
    recording = FeedPass(recorder, ["batch-" + kind for kind in KINDS], summary, batch=2)
    assert recording.conditional_headers("batch-unchanged") == {"If-None-Match": '"e1"',
                                                                "If-Modified-Since": "Wed, 31 Dec 2025"}
    assert recording.conditional_headers("batch-first") == {}
    for outcome in _outcomes("batch-"):
        recording.record(outcome)
    recording.close()
    batched = _seen(store, "batch-", summary, told)

    assert batched == one_by_one
    assert batched["counts"][:3] == (2, 4, 2) and batched["first"] == {"first"}
    assert batched["states"]["empty"].not_before == NOW + timedelta(seconds=7200)


def test_a_batch_is_stored_when_full_and_the_rest_when_the_pass_ends(database) -> None:
    store = open_storage(database).stories
    names = [f"s{i}" for i in range(5)]
    for name in names:
        store.record_success(name, at=BEFORE, status=200, etag='"e1"', last_modified=None, stories=[])
    recorder, told = _recorder(store)
    summary = CrawlSummary(sources=5)
    recording = FeedPass(recorder, names, summary, batch=2)
    for name in names:
        recording.record(FetchOutcome(_source(name), status=304))
    assert [store.fetch_state(n).last_attempt for n in names] == [NOW] * 4 + [BEFORE]
    assert summary.not_modified == 4 and len(told) == 4
    recording.close()
    assert store.fetch_state("s4").last_attempt == NOW and summary.not_modified == 5 and len(told) == 5
    recording.record(FetchOutcome(_source("late"), status=304))  # after the end: recorded at once
    assert store.fetch_state("late").last_status == 304 and summary.not_modified == 6


@contextlib.contextmanager
def _writes_locked(database):
    """Another connection holds the write lock of the fetch states (SQLite: of the database)."""
    if isinstance(database, str):
        import psycopg

        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("BEGIN")
            conn.execute("LOCK TABLE fetch_state IN EXCLUSIVE MODE")  # reads go on, writes wait
            yield
            conn.execute("ROLLBACK")
        return
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def test_a_batch_the_database_refuses_is_reported_and_its_sources_fetched_again(database, caplog) -> None:
    store = open_storage(database, busy_timeout=0.2).stories
    names = ["a", "b", "c"]
    for name in names:
        store.record_success(name, at=BEFORE, status=200, etag='"e1"', last_modified=None, stories=[])
    recorder, told = _recorder(store)
    summary = CrawlSummary(sources=3)
    with _writes_locked(database), caplog.at_level(logging.ERROR, logger="newswatch.crawler"):
        recording = FeedPass(recorder, names, summary, batch=10)
        for name in names:
            recording.record(FetchOutcome(_source(name), status=304, bytes=10))
        recording.close()  # the batch is refused: reported, not raised
    assert (summary.failed, summary.not_modified, summary.bytes, told) == (3, 0, 30, [])
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("sources a, b, c: the database refused 3 fetches")
    assert "fetched again next time" in errors[0]
    assert all(store.fetch_state(n).last_attempt == BEFORE for n in names)  # nothing of the batch was kept


def test_a_pass_whose_states_cannot_be_read_at_once_reads_each_when_needed(postgres_url, caplog) -> None:
    import psycopg

    store = open_storage(postgres_url, busy_timeout=0.2).stories
    store.record_success("a", at=BEFORE, status=200, etag='"e1"', last_modified=None, stories=[])
    recorder, _ = _recorder(store)
    summary = CrawlSummary(sources=2)
    with psycopg.connect(postgres_url, autocommit=True) as conn, \
            caplog.at_level(logging.WARNING, logger="newswatch.crawler"):
        conn.execute("BEGIN")
        conn.execute("LOCK TABLE fetch_state IN ACCESS EXCLUSIVE MODE")  # reads wait too
        recording = FeedPass(recorder, ["a", "b"], summary)
        conn.execute("ROLLBACK")
    assert recording.states == {}
    assert any("could not be read at once" in r.getMessage() for r in caplog.records)
    assert recording.conditional_headers("a") == {"If-None-Match": '"e1"'}  # read when needed
    recording.record(FetchOutcome(_source("a"), status=304))
    recording.record(FetchOutcome(_source("b"), status=304))
    recording.close()
    assert summary.not_modified == 2 and store.fetch_state("a").last_attempt == NOW
    assert summary.first_fetch == {"b"}
