"""Fetching sources with Scrapy inside the daemon's asyncio loop.

Owns the Scrapy side: the settings (one place), the feed spider, the pipeline that records
each fetch outcome, and `Crawler`, which runs one Scrapy crawl per source kind over a batch
of due sources (feeds with `FeedSpider`; sites and sitemaps with the spiders in
`crawler.sites`) and can be awaited again and again in the same process.

Scrapy runs reactorless (`TWISTED_REACTOR_ENABLED=False`) so that it shares the plain
asyncio loop with python-telegram-bot and APScheduler; no module may import
`twisted.internet.reactor`. The RemoteControl and telnet extensions are off.

Per feed request: conditional GET from the stored ETag / Last-Modified (304 means unchanged and
nothing is parsed), a total timeout, a body-size cap applied after decompression, no
retries (the backoff in `crawler.health` decides when to try again), every status handled
by our callback so it can be recorded.

Politeness, for every kind: a User-Agent naming the project, at most `per_host` requests at
once per host, `delay` seconds between them (AutoThrottle raises it for slow hosts),
robots.txt obeyed for crawled pages (not for feeds, which are published to be polled),
429/503 `Retry-After` honoured, and a failing source backed off with jitter.
A `FetchOutcome` with `article` set is about one article page of the source; its failure
is logged but does not count against the source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import scrapy
from scrapy.crawler import AsyncCrawlerRunner

from crawler.clock import Clock
from crawler.parse_pool import ParsePool
from crawler.health import backoff_delay, freshness_floor, not_before, retry_after_seconds
from crawler.sites import ROBOTS_FORBIDDEN, ArticlePages, PageKit, SiteSpider, SitemapSpider
from crawler.sources import CrawlerConfig, SourceConfig
from crawler.store import StoryStore
from crawler.story import Story

log = logging.getLogger("newswatch.crawler")


# Every status reaches our callback to be recorded, except redirects, which Scrapy follows
# (up to REDIRECT_MAX_TIMES; a loop ends as a clear error).
HANDLED_STATUSES = [code for code in range(200, 600) if code not in (301, 302, 303, 307, 308)]


def scrapy_settings(config: CrawlerConfig) -> dict[str, Any]:
    """All Scrapy settings newswatch uses, in one place."""
    return {
        "TWISTED_REACTOR_ENABLED": False,
        "REMOTE_CONTROL_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_ENABLED": False,
        "ROBOTSTXT_OBEY": True,  # feed requests carry dont_obey_robotstxt: they are published to be polled
        "COOKIES_ENABLED": False,
        "RETRY_ENABLED": False,
        "REDIRECT_MAX_TIMES": 5,
        "USER_AGENT": config.user_agent,
        "DOWNLOAD_TIMEOUT": config.timeout,
        "DOWNLOAD_MAXSIZE": config.max_bytes,
        "DOWNLOAD_WARNSIZE": 0,
        "CONCURRENT_REQUESTS": config.concurrency,
        "CONCURRENT_ITEMS": 4,  # a callback yields one outcome; Scrapy's default 100 starts 100 tasks per response
        "CONCURRENT_REQUESTS_PER_DOMAIN": config.per_host,
        "DOWNLOAD_DELAY": config.delay,
        "AUTOTHROTTLE_ENABLED": config.autothrottle,
        "AUTOTHROTTLE_START_DELAY": config.delay,
        "AUTOTHROTTLE_MAX_DELAY": 30.0,
        "AUTOTHROTTLE_TARGET_CONCURRENCY": 1.0,
        "HTTPCACHE_ENABLED": False,
        "STATS_DUMP": False,
        "LOGSTATS_INTERVAL": 0,
        "MEMUSAGE_ENABLED": False,
        "DEFAULT_REQUEST_HEADERS": {
            "Accept": "application/rss+xml, application/atom+xml, application/feed+json, "
            "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5",
        },
        "ITEM_PIPELINES": {"crawler.fetch.OutcomePipeline": 100},
        "DOWNLOADER_MIDDLEWARES": {
            "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
            "crawler.sites.CachedRobotsTxtMiddleware": 100,
        },
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
    article: str = ""

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
    pages: int = 0
    pages_failed: int = 0
    seconds: float = 0.0
    new: list[Story] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)


OutcomeObserver = Callable[[FetchOutcome, list[Story]], None]
"""Told of every recorded outcome and the new stories it stored (metrics, progress display)."""


class OutcomeRecorder:
    """Persists fetch outcomes: new stories and validators on success, failure counts and
    backoff otherwise; tells `on_new_stories` right after each source's stories are stored,
    and each of `observers` after each outcome is recorded."""

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
        self.observers: list[OutcomeObserver] = []

    def record(self, outcome: FetchOutcome, summary: CrawlSummary) -> None:
        stored = len(summary.new)
        self._record(outcome, summary)
        for observer in self.observers:
            try:
                observer(outcome, summary.new[stored:])
            except Exception:
                log.exception("source %s: an outcome observer failed", outcome.source.name)

    def _record(self, outcome: FetchOutcome, summary: CrawlSummary) -> None:
        now = self.clock.now()
        source = outcome.source
        summary.bytes += outcome.bytes
        if outcome.article:
            self._record_page(outcome, summary, now)
            return
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

    def _record_page(self, outcome: FetchOutcome, summary: CrawlSummary, now: Any) -> None:
        """One article page: store its story; a failure is logged, not held against the source."""
        source = outcome.source
        if outcome.status:
            summary.pages += 1
        if outcome.error:
            summary.pages_failed += 1
            level = logging.DEBUG if outcome.error == ROBOTS_FORBIDDEN else logging.INFO
            log.log(level, "source %s: article %s not fetched: %s", source.name, outcome.article, outcome.error)
        elif outcome.note:
            log.info("source %s: %s", source.name, outcome.note)
        if not outcome.stories:
            return
        new = self.store.add_stories(outcome.stories, now)
        summary.stories_seen += len(outcome.stories)
        summary.stories_new += len(new)
        summary.new.extend(new)
        if new and self.on_new_stories:
            self.on_new_stories(source.name, new)


class FeedSpider(ArticlePages, scrapy.Spider):
    """Fetches each given feed source once and yields a `FetchOutcome` per source; for
    `full_text` sources, each new item's page is fetched and its story stored with the
    page's whole text (with the feed's text when the page cannot be had)."""

    name = "feeds"

    def __init__(self, sources: Sequence[SourceConfig], recorder: OutcomeRecorder, summary: CrawlSummary,
                 kit: PageKit | None = None, parser: ParsePool | None = None, **kwargs: Any) -> None:
        super().__init__(sources, recorder, summary, kit, **kwargs)
        self.parser = parser or ParsePool(workers=0)

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
                meta={"source": source, "handle_httpstatus_list": HANDLED_STATUSES, "dont_obey_robotstxt": True},
            )

    async def parse(self, response: scrapy.http.Response, **kwargs: Any):
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
        parsed = await self.parser.parse(
            response.body, source=source.name, url=response.url,
            content_type=_header(headers, b"Content-Type") or "", now=self.recorder.clock.now(),
        )
        if not parsed.stories and parsed.problem:
            yield FetchOutcome(source, status=status, error=parsed.problem, bytes=len(response.body))
            return
        stories, follow = parsed.stories, []
        if source.full_text:
            fresh = set(self.new_urls(source, [s.url for s in stories if s.url]))
            follow = [s for s in stories if s.url in fresh]
            stories = [s for s in stories if s.url not in fresh]
        yield FetchOutcome(
            source, status=status, stories=stories, etag=etag, last_modified=last_modified,
            note=parsed.problem, fresh_for=freshness_floor(headers.get(b"Cache-Control"), parsed.ttl_seconds),
            bytes=len(response.body),
        )
        for request in self.release(source, [self.article_request(source, s.url, story=s) for s in follow]):
            yield request

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
    if "CannotResolveHost" in name or "Name or service not known" in text or "nodename nor servname" in text:
        host = re.search(r"host ([^\s:]+)", text)
        return f"DNS lookup failed for {host.group(1) if host else 'the host'} (no such host, or no network)"
    if "redirect" in text.lower():
        return f"too many redirects, or a redirect loop ({text})"
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
        spider: Any = self.crawler.spider
        try:
            spider.recorder.record(item, spider.summary)
        except sqlite3.Error as exc:  # disk full, database locked or damaged: say so, keep crawling
            log.error("source %s: the database refused the fetch (%s: %s); nothing of it was kept, so it is "
                      "fetched again next time", item.source.name, type(exc).__name__, exc)
            spider.summary.failed += 1
        except Exception:  # any other storage error must not kill the crawl either
            log.exception("source %s: could not store the fetch outcome", item.source.name)
            spider.summary.failed += 1
        return item


STOP_TIMEOUT = 3.0
SPIDERS: dict[str, type[scrapy.Spider]] = {"feed": FeedSpider, "site": SiteSpider, "sitemap": SitemapSpider}


class Crawler:
    """Runs Scrapy crawls over batches of sources, in-process, as often as needed: one crawl
    per source kind, the kinds side by side."""

    def __init__(self, config: CrawlerConfig, recorder: OutcomeRecorder) -> None:
        self.recorder = recorder
        self.runner = AsyncCrawlerRunner(scrapy_settings(config))
        self.pages = PageKit.create(config.robots_cache)
        self.parser = ParsePool(workers=config.parse_workers, timeout=config.parse_timeout)

    def close(self) -> None:
        self.parser.close()

    async def crawl(self, sources: Sequence[SourceConfig]) -> CrawlSummary:
        summary = CrawlSummary(sources=len(sources))
        if not sources:
            return summary
        started = time.perf_counter()
        tasks, crawlers = [], []
        for kind, spider in SPIDERS.items():
            batch = [s for s in sources if s.kind == kind]
            if batch:
                crawler = self.runner.create_crawler(spider)
                crawlers.append(crawler)
                tasks.append(asyncio.ensure_future(self.runner.crawl(
                    crawler, sources=batch, recorder=self.recorder, summary=summary, kit=self.pages,
                    parser=self.parser,
                )))
        try:
            await asyncio.wait(tasks)
        except asyncio.CancelledError:  # the daemon is stopping: close this crawl's spiders, briefly
            for crawler in crawlers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(crawler.stop_async(), STOP_TIMEOUT)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            raise
        for task in tasks:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        summary.seconds = time.perf_counter() - started
        return summary
