"""Fetching sources inside the daemon's asyncio loop: the `Crawler`, and its Scrapy side.

`Crawler` takes a batch of due sources and can be awaited again and again in the same
process: plain feeds go to `newswatch.crawler.fetch.feed_reader.FeedReader` (one request and one parse per
feed), while sources that crawl pages go to Scrapy, one crawl per kind: full-text feeds to
`FeedSpider` (the feed, then each new item's page), sites and sitemaps to the spiders in
`newswatch.crawler.fetch.sites`. This module also owns the Scrapy settings (one place) and the pipeline that
hands each `FetchOutcome` to the `OutcomeRecorder`.

Scrapy runs reactorless (`TWISTED_REACTOR_ENABLED=False`) so that it shares the plain
asyncio loop with python-telegram-bot and APScheduler; no module may import
`twisted.internet.reactor`. The RemoteControl and telnet extensions are off.

Per request: conditional GET for feeds from the stored ETag / Last-Modified (304 means
unchanged and nothing is parsed), a total timeout, a body-size cap applied after
decompression, no retries (the backoff in `newswatch.crawler.health` decides when to try again), every
status handled by our callback so it can be recorded.

Every request, redirects and robots.txt included, is made by `GuardedDownloadHandler`, Scrapy's
asyncio download handler on `newswatch.crawler.fetch.addresses.GuardedConnector`: the address policy is
applied where the connection is made, with the guard of the request's source.

Politeness, for every kind: a User-Agent naming the project, at most `per_host` requests at
once per host, `delay` seconds between them (AutoThrottle raises it for slow hosts when
crawling pages), robots.txt obeyed for crawled pages (not for feeds, which are published to
be polled), 429/503 `Retry-After` honoured, and a failing source backed off with jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Sequence
from typing import Any

import aiohttp
import scrapy
from aiohttp.abc import AbstractResolver
from scrapy.core.downloader.handlers._aiohttp import AiohttpDownloadHandler, _ClientResponse
from scrapy.core.downloader.handlers._base_streaming import BaseStreamingDownloadHandler
from scrapy.crawler import AsyncCrawlerRunner
from scrapy.utils.ssl import _make_ssl_context

from newswatch.crawler.fetch.addresses import AddressPolicy, GuardedConnector, SourceGuard, guarded
from newswatch.crawler.fetch.feed_reader import FeedReader, is_plain_feed
from newswatch.crawler.outcomes import (CrawlSummary, FetchOutcome, OutcomeRecorder, answered_outcome, describe_failure,
                              parsed_outcome)
from newswatch.crawler.parse.pool import ParsePool
from newswatch.crawler.fetch.sites import ArticlePages, PageKit, SiteSpider, SitemapSpider
from newswatch.crawler.sources import CrawlerConfig, SourceConfig

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
        "ITEM_PIPELINES": {"newswatch.crawler.fetch.engine.OutcomePipeline": 100},
        "DOWNLOAD_HANDLERS": {"http": "newswatch.crawler.fetch.engine.GuardedDownloadHandler",
                              "https": "newswatch.crawler.fetch.engine.GuardedDownloadHandler"},
        "DOWNLOADER_MIDDLEWARES": {
            "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
            "newswatch.crawler.fetch.sites.CachedRobotsTxtMiddleware": 100,
        },
        "EXTENSIONS": {
            "scrapy.extensions.telnet.TelnetConsole": None,
            "scrapy.extensions.logstats.LogStats": None,
            "scrapy.extensions.memusage.MemoryUsage": None,
        },
    }


UNKNOWN_SOURCE = AddressPolicy().guard(SourceConfig(name="unknown", url="http://unknown.invalid/"))


class GuardedDownloadHandler(AiohttpDownloadHandler):
    """Scrapy's asyncio HTTP(S) download handler (Scrapy 2.19's `AiohttpDownloadHandler`, whose
    session it builds the same way) on a `GuardedConnector`: each request is checked when it
    connects, against the guard the spider keeps for its source (`meta["source"]`); a request
    of no known source may reach public addresses only. The spider's `resolver`, when set,
    resolves host names."""

    def __init__(self, crawler: Any) -> None:
        BaseStreamingDownloadHandler.__init__(self, crawler)
        self._ssl_context = _make_ssl_context(crawler.settings)
        connector = GuardedConnector(local_addr=self._bind_address, limit=self._pool_size_total,
                                     limit_per_host=self._pool_size_per_host,
                                     resolver=getattr(crawler.spider, "resolver", None))
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
            response_class=_ClientResponse,
            skip_auto_headers=("Accept", "Accept-Encoding", "Content-Type", "User-Agent"),
        )

    async def download_request(self, request: scrapy.Request) -> Any:
        with guarded(self._guard(request)):
            return await super().download_request(request)

    def _guard(self, request: scrapy.Request) -> SourceGuard:
        source = request.meta.get("source")
        guard_for = getattr(self.crawler.spider, "guard_for", None)
        if source is None or guard_for is None:
            return UNKNOWN_SOURCE if source is None else AddressPolicy().guard(source)
        return guard_for(source)


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
            headers = self.recorder.store.fetch_state(source.name).conditional_headers()
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
        answered = answered_outcome(source, status, response.url, etag=etag, last_modified=last_modified,
                                    retry_after=headers.get(b"Retry-After"), now=self.recorder.clock.now(),
                                    size=len(response.body))
        if answered is not None:
            yield answered
            return
        parsed = await self.parser.parse(
            response.body, source=source.name, url=response.url,
            content_type=_header(headers, b"Content-Type") or "", now=self.recorder.clock.now(),
        )
        outcome = parsed_outcome(source, status, parsed, etag=etag, last_modified=last_modified,
                                 cache_control=headers.get(b"Cache-Control"), size=len(response.body))
        if outcome.error:
            yield outcome
            return
        follow = []
        if source.full_text:  # new items wait for their pages; the others are stored now
            fresh = set(self.new_urls(source, [s.url for s in outcome.stories if s.url]))
            follow = [s for s in outcome.stories if s.url in fresh]
            outcome.stories = [s for s in outcome.stories if s.url not in fresh]
        yield outcome
        for request in self.release(source, [self.article_request(source, s.url, story=s) for s in follow]):
            yield request

    def failed(self, failure):
        request = failure.request
        source: SourceConfig = request.meta["source"]
        yield FetchOutcome(source, error=describe_failure(failure))


def _header(headers: Any, name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value else None


class OutcomePipeline:
    """Hands each `FetchOutcome` to the spider's recorder (one transaction per source)."""

    def __init__(self, crawler: Any) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Any) -> OutcomePipeline:
        return cls(crawler)

    def process_item(self, item: FetchOutcome) -> FetchOutcome:
        spider: Any = self.crawler.spider
        spider.recorder.record_safely(item, spider.summary)
        return item


STOP_TIMEOUT = 3.0
SPIDERS: dict[str, type[scrapy.Spider]] = {"feed": FeedSpider, "site": SiteSpider, "sitemap": SitemapSpider}


class Crawler:
    """Fetches batches of sources, in-process, as often as needed: plain feeds through the
    `FeedReader`, full-text feeds, sites and sitemaps through one Scrapy crawl per kind, all
    side by side."""

    def __init__(self, config: CrawlerConfig, recorder: OutcomeRecorder, *, policy: AddressPolicy | None = None,
                 resolver: AbstractResolver | None = None) -> None:
        self.recorder = recorder
        self.policy = policy or AddressPolicy(restrict_config_sources=config.restrict_private_addresses)
        self.resolver = resolver
        self.runner = AsyncCrawlerRunner(scrapy_settings(config))
        self.pages = PageKit.create(config.robots_cache)
        self.parser = ParsePool(workers=config.parse_workers, timeout=config.parse_timeout,
                                inline_below=config.parse_inline_below)
        self.feeds = FeedReader(config, recorder, self.parser, resolver)

    async def close(self) -> None:
        await self.feeds.close()
        self.parser.close()

    async def crawl(self, sources: Sequence[SourceConfig], from_chat: Collection[str] = ()) -> CrawlSummary:
        """One pass over `sources`; those named in `from_chat` were added from Telegram and
        are held to the address policy's stricter rules."""
        summary = CrawlSummary(sources=len(sources))
        if not sources:
            return summary
        started = time.perf_counter()
        guards = self.policy.guards(sources, from_chat)
        tasks, crawlers = [], []
        feeds = [s for s in sources if is_plain_feed(s)]
        if feeds:
            tasks.append(asyncio.ensure_future(self.feeds.read(feeds, summary, guards)))
        for kind, spider in SPIDERS.items():
            batch = [s for s in sources if s.kind == kind and not is_plain_feed(s)]
            if batch:
                crawler = self.runner.create_crawler(spider)
                crawlers.append(crawler)
                tasks.append(asyncio.ensure_future(self.runner.crawl(
                    crawler, sources=batch, recorder=self.recorder, summary=summary, kit=self.pages,
                    parser=self.parser, guards=guards, resolver=self.resolver,
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
