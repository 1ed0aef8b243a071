"""The feed reader against a real local HTTP server: conditional GET, statuses, size cap,
per-host pacing and proxies from the environment."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from newswatch.crawler.clock import ManualClock
from newswatch.crawler.fetch.feed_reader import FeedReader
from newswatch.crawler.outcomes import CrawlSummary, OutcomeRecorder
from newswatch.crawler.parse.pool import ParsePool
from newswatch.crawler.sources import CrawlerConfig, SourceConfig
from newswatch.crawler.store import StoryStore
from newswatch.storage import open_storage
from tests.fakes.feed_server import FeedItem, FeedServer

NOW = datetime(2019, 1, 8, 3, 0, tzinfo=UTC)


@pytest.fixture
def feeds():
    with FeedServer() as server:
        yield server


def _reader(tmp_path, **config) -> tuple[FeedReader, StoryStore]:
    crawler = CrawlerConfig(**{"delay": 0, "timeout": 5, **config})
    store = open_storage(tmp_path / "nw.db").stories
    return FeedReader(crawler, OutcomeRecorder(store, ManualClock(NOW), crawler), ParsePool(workers=0)), store


def _source(name: str, url: str) -> SourceConfig:
    return SourceConfig(name=name, kind="feed", url=url, interval=60)


def _read(reader: FeedReader, sources: list[SourceConfig]) -> CrawlSummary:
    async def run() -> CrawlSummary:
        summary = CrawlSummary(sources=len(sources))
        try:
            await reader.read(sources, summary)
        finally:
            await reader.close()
        return summary

    return asyncio.run(run())


def test_conditional_get_stores_once_then_gets_304(tmp_path, feeds: FeedServer) -> None:
    feeds.set_feed("/a.xml", [FeedItem("Kim and Xi meet in Beijing", "https://news.example/1")])
    reader, store = _reader(tmp_path)
    source = _source("a", feeds.url("/a.xml"))
    first = _read(reader, [source])
    second = _read(reader, [source])
    assert (first.ok, first.stories_new, [s.title for s in first.new]) == (1, 1, ["Kim and Xi meet in Beijing"])
    assert (second.not_modified, second.stories_new) == (1, 0)
    hits = feeds.hits_for("/a.xml")
    assert [h.status for h in hits] == [200, 304]
    assert "If-None-Match" not in hits[0].headers and hits[1].headers["If-None-Match"].startswith('"')
    assert hits[0].headers["User-Agent"].startswith("newswatch/")
    assert store.fetch_state("a").etag is not None


def test_statuses_and_faults_are_recorded_per_source(tmp_path, feeds: FeedServer) -> None:
    feeds.set("/busy.xml", "slow down", status=429, headers={"Retry-After": "120"})
    feeds.set("/gone.xml", "", status=404)
    feeds.set("/drop.xml", "", drop=True)
    feeds.set("/big.xml", b"<rss>" + b"x" * 20_000 + b"</rss>")
    feeds.set("/loop.xml", "", status=302, headers={"Location": "/loop.xml"})
    feeds.set_feed("/good.xml", [FeedItem("Pyongyang talks", "https://news.example/2")])
    reader, store = _reader(tmp_path, max_bytes=10_000)
    names = ["busy", "gone", "drop", "big", "loop", "good"]
    summary = _read(reader, [_source(n, feeds.url(f"/{n}.xml")) for n in names])
    assert (summary.ok, summary.failed, summary.stories_new) == (1, 5, 1)
    assert summary.failures["busy"] == f"HTTP 429 from {feeds.url('/busy.xml')}"
    assert store.fetch_state("busy").not_before >= NOW + timedelta(seconds=120)
    assert summary.failures["gone"].startswith("HTTP 404")
    assert "ServerDisconnected" in summary.failures["drop"] or "Connection" in summary.failures["drop"]
    assert summary.failures["big"].startswith("response too large")
    assert summary.failures["loop"].startswith("too many redirects, or a redirect loop (more than 5")
    assert len(feeds.hits_for("/loop.xml")) == 6


def test_requests_to_one_host_are_spaced_by_the_delay(tmp_path, feeds: FeedServer) -> None:
    for i in range(3):
        feeds.set_feed(f"/{i}.xml", [FeedItem(f"Story {i}", f"https://news.example/{i}")])
    reader, _ = _reader(tmp_path, delay=0.3, per_host=4)
    _read(reader, [_source(f"s{i}", feeds.url(f"/{i}.xml")) for i in range(3)])
    times = sorted(h.at for h in feeds.hits)
    assert len(times) == 3
    assert all(later - earlier >= 0.25 for earlier, later in itertools.pairwise(times)), times


def test_proxy_from_the_environment_is_used_unless_bypassed(tmp_path, feeds: FeedServer, monkeypatch) -> None:
    feeds.set_feed("/p.xml", [FeedItem("Through the proxy", "https://news.example/p")])
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{feeds.port}")
    monkeypatch.setenv("NO_PROXY", "direct.invalid")
    reader, _ = _reader(tmp_path)
    summary = _read(reader, [_source("proxied", "http://feeds.invalid/p.xml"),
                             _source("bypassed", "http://direct.invalid/p.xml")])
    assert summary.ok == 1 and [s.title for s in summary.new] == ["Through the proxy"]
    assert summary.failures["bypassed"].startswith("DNS lookup failed for direct.invalid")


class _CountingConnection:
    """A store's connection that counts the statements sent through it."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.statements: list[str] = []

    def execute(self, sql: str, params=()):
        self.statements.append(sql.split()[0].upper())
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows):
        self.statements.append("MANY " + sql.split()[0].upper())
        return self.conn.executemany(sql, rows)

    def __getattr__(self, name: str):
        return getattr(self.conn, name)


def test_a_pass_of_unchanged_feeds_reads_the_validators_once_and_records_them_in_one_transaction(
        database, feeds: FeedServer) -> None:
    for i in range(30):
        feeds.set_feed(f"/{i}.xml", [FeedItem(f"Story {i}", f"https://news.example/{i}")])
    crawler = CrawlerConfig(delay=0, timeout=5)
    store = open_storage(database).stories
    reader = FeedReader(crawler, OutcomeRecorder(store, ManualClock(NOW), crawler), ParsePool(workers=0))
    sources = [_source(f"s{i}", feeds.url(f"/{i}.xml")) for i in range(30)]
    assert _read(reader, sources).ok == 30
    store.conn = counting = _CountingConnection(store.conn)
    second = _read(reader, sources)
    assert (second.not_modified, second.failed) == (30, 0)
    assert all(h.headers.get("If-None-Match") for h in feeds.hits if h.status == 304)
    assert counting.statements == ["SELECT", "BEGIN", "MANY INSERT", "COMMIT"]
    assert all(store.fetch_state(s.name).last_status == 304 for s in sources)
