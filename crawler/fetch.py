"""Fetching sources with Scrapy inside the daemon's asyncio loop.

Owns the Scrapy side: the settings (one place), the feed spider, the pipeline that records
each fetch outcome, and `Crawler`, which runs one Scrapy crawl over a batch of due sources
and can be awaited again and again in the same process.

Scrapy runs reactorless (`TWISTED_REACTOR_ENABLED=False`) so that it shares the plain
asyncio loop with python-telegram-bot and APScheduler; no module may import
`twisted.internet.reactor`. The RemoteControl and telnet extensions are off.

Per request: conditional GET from the stored ETag / Last-Modified (304 means unchanged and
nothing is parsed), a total timeout, a body-size cap applied after decompression, no
retries (the backoff in `crawler.health` decides when to try again), every status handled
by our callback so it can be recorded.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import scrapy
from scrapy.crawler import AsyncCrawlerRunner

from crawler.clock import Clock
from crawler.feeds import parse_feed
from crawler.health import backoff_delay, freshness_floor, not_before, retry_after_seconds
from crawler.sources import CrawlerConfig, SourceConfig
from crawler.store import StoryStore
from crawler.story import Story

log = logging.getLogger("newswatch.crawler")


def scrapy_settings(config: CrawlerConfig) -> dict[str, Any]:
    """All Scrapy settings newswatch uses, in one place."""
    return {
        "TWISTED_REACTOR_ENABLED": False,
        "REMOTE_CONTROL_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_ENABLED": False,
        "ROBOTSTXT_OBEY": False,  # feeds are published to be polled; crawled pages obey robots.txt
        "COOKIES_ENABLED": False,
        "RETRY_ENABLED": False,
        "REDIRECT_MAX_TIMES": 5,
        "USER_AGENT": config.user_agent,
        "DOWNLOAD_TIMEOUT": config.timeout,
        "DOWNLOAD_MAXSIZE": config.max_bytes,
        "DOWNLOAD_WARNSIZE": 0,
        "CONCURRENT_REQUESTS": config.concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": config.per_host,
        "DOWNLOAD_DELAY": 0,
        "HTTPCACHE_ENABLED": False,
        "STATS_DUMP": False,
        "LOGSTATS_INTERVAL": 0,
        "MEMUSAGE_ENABLED": False,
        "DEFAULT_REQUEST_HEADERS": {
            "Accept": "application/rss+xml, application/atom+xml, application/feed+json, "
            "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5",
        },
        "ITEM_PIPELINES": {"crawler.fetch.OutcomePipeline": 100},
        "EXTENSIONS": {
            "scrapy.extensions.telnet.TelnetConsole": None,
            "scrapy.extensions.logstats.LogStats": None,
            "scrapy.extensions.memusage.MemoryUsage": None,
        },
    }


@dataclass
class FetchOutcome:
    """What one request to one source produced (a Scrapy item)."""

    source: SourceConfig
    status: int | None = None
    stories: list[Story] = field(default_factory=list)
    etag: str | None = None
    last_modified: str | None = None
    error: str = ""
    note: str = ""
    retry_after: float | None = None
    fresh_for: int = 0
    bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class CrawlSummary:
    sources: int = 0
    ok: int = 0
    not_modified: int = 0
    failed: int = 0
    stories_seen: int = 0
    stories_new: int = 0
    bytes: int = 0
    seconds: float = 0.0
    new: list[Story] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)


class OutcomeRecorder:
    """Persists fetch outcomes: new stories and validators on success, failure counts and
    backoff otherwise; tells `on_new_stories` right after each source's stories are stored."""

    def __init__(
        self, store: StoryStore, clock: Clock, config: CrawlerConfig,
        on_new_stories: Callable[[str, list[Story]], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.config = config
        self.on_new_stories = on_new_stories
        self.rng = rng or random.Random()

    def record(self, outcome: FetchOutcome, summary: CrawlSummary) -> None:
        now = self.clock.now()
        source = outcome.source
        summary.bytes += outcome.bytes
        if outcome.ok:
            new = self.store.record_success(
                source.name, at=now, status=outcome.status or 0, etag=outcome.etag,
                last_modified=outcome.last_modified, stories=outcome.stories,
                not_before=not_before(now, outcome.fresh_for if outcome.fresh_for > source.interval else 0),
                note=outcome.note,
            )
            if outcome.status == 304:
                summary.not_modified += 1
            else:
                summary.ok += 1
            summary.stories_seen += len(outcome.stories)
            summary.stories_new += len(new)
            summary.new.extend(new)
            if outcome.note:
                log.warning("source %s: %s", source.name, outcome.note)
            if new and self.on_new_stories:
                self.on_new_stories(source.name, new)
            return
        previous = self.store.fetch_state(source.name).failures
        delay = backoff_delay(previous + 1, source.interval, self.config.failure_backoff_max, self.rng)
        if outcome.retry_after is not None:
            delay = max(delay, outcome.retry_after)
        failures = self.store.record_failure(
            source.name, at=now, status=outcome.status, error=outcome.error, not_before=not_before(now, delay)
        )
        summary.failed += 1
        summary.failures[source.name] = outcome.error
        wait = f"; next try in {delay:.0f}s" if delay else ""
        log.warning("source %s: %s (failure %d in a row%s) url=%s", source.name, outcome.error, failures, wait, source.url)


class FeedSpider(scrapy.Spider):
    """Fetches each given feed source once and yields a `FetchOutcome` per source."""

    name = "feeds"

    def __init__(self, sources: Sequence[SourceConfig], recorder: OutcomeRecorder, summary: CrawlSummary, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sources = list(sources)
        self.recorder = recorder
        self.summary = summary

    async def start(self):
        for source in self.sources:
            state = self.recorder.store.fetch_state(source.name)
            headers = {}
            if state.etag:
                headers["If-None-Match"] = state.etag
            if state.last_modified:
                headers["If-Modified-Since"] = state.last_modified
            yield scrapy.Request(
                source.url, headers=headers, callback=self.parse, errback=self.failed, dont_filter=True,
                meta={"source": source, "handle_httpstatus_all": True},
            )

    def parse(self, response: scrapy.http.Response, **kwargs: Any):
        source: SourceConfig = response.meta["source"]
        status = response.status
        headers = response.headers
        etag = _header(headers, b"ETag")
        last_modified = _header(headers, b"Last-Modified")
        if status == 304:
            yield FetchOutcome(source, status=304, etag=etag, last_modified=last_modified)
            return
        if not 200 <= status < 300:
            yield FetchOutcome(
                source, status=status, error=f"HTTP {status} from {response.url}",
                retry_after=retry_after_seconds(headers.get(b"Retry-After"), self.recorder.clock.now())
                if status in (429, 503) else None,
                bytes=len(response.body),
            )
            return
        parsed = parse_feed(
            response.body, source=source.name, url=response.url,
            content_type=_header(headers, b"Content-Type") or "", now=self.recorder.clock.now(),
        )
        if not parsed.stories and parsed.problem:
            yield FetchOutcome(source, status=status, error=parsed.problem, bytes=len(response.body))
            return
        yield FetchOutcome(
            source, status=status, stories=parsed.stories, etag=etag, last_modified=last_modified,
            note=parsed.problem, fresh_for=freshness_floor(headers.get(b"Cache-Control"), parsed.ttl_seconds),
            bytes=len(response.body),
        )

    def failed(self, failure):
        request = failure.request
        source: SourceConfig = request.meta["source"]
        yield FetchOutcome(source, error=describe_failure(failure))


def _header(headers: Any, name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value else None


def describe_failure(failure: Any) -> str:
    """A short, precise description of a download failure (no traceback)."""
    exc = failure.value
    name = type(exc).__name__
    text = str(exc).strip()
    if "maxsize" in text.lower() or "max size" in text.lower() or "exceeds" in text.lower():
        return f"response too large ({text})"
    if "timeout" in name.lower() or "timed out" in text.lower():
        return f"timed out ({text or name})"
    return f"{name}: {text}" if text else name


class OutcomePipeline:
    """Hands each `FetchOutcome` to the spider's recorder (one transaction per source)."""

    def __init__(self, crawler: Any) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Any) -> OutcomePipeline:
        return cls(crawler)

    def process_item(self, item: FetchOutcome) -> FetchOutcome:
        spider: FeedSpider = self.crawler.spider
        try:
            spider.recorder.record(item, spider.summary)
        except Exception:  # a storage error must not kill the crawl; it is logged once per source
            log.exception("source %s: could not store the fetch outcome", item.source.name)
            spider.summary.failed += 1
        return item


class Crawler:
    """Runs Scrapy crawls over batches of sources, in-process, as often as needed."""

    def __init__(self, config: CrawlerConfig, recorder: OutcomeRecorder) -> None:
        self.recorder = recorder
        self.runner = AsyncCrawlerRunner(scrapy_settings(config))

    async def crawl(self, sources: Sequence[SourceConfig]) -> CrawlSummary:
        summary = CrawlSummary(sources=len(sources))
        if not sources:
            return summary
        started = time.perf_counter()
        feeds = [s for s in sources if s.kind == "feed"]
        if feeds:
            await self.runner.crawl(FeedSpider, sources=feeds, recorder=self.recorder, summary=summary)
        summary.seconds = time.perf_counter() - started
        return summary
