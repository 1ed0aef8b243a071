"""Fetching sources inside the daemon's asyncio loop: the `Crawler`, and its Scrapy side.

`Crawler` takes a batch of due sources and can be awaited again and again in the same
process: plain feeds go to `newswatch.crawler.fetch.feed_reader.FeedReader` (one request and
one parse per feed), while sources that crawl pages go to Scrapy: full-text feeds to
`FeedSpider` (the feed, then each new item's page), sites and sitemaps to the spiders in
`newswatch.crawler.fetch.sites`. This module also owns the Scrapy settings (one place), the
download handler, the redirect middleware and the pipeline that hands each `FetchOutcome` to
the `OutcomeRecorder`.

One Scrapy crawler per kind of source (feed, site, sitemap) lives as long as the process
(`LongLivedSpider`): it is opened on first use, its spider starts with no request and is kept
open when idle (`DontCloseSpider`), and each pass hands it the first requests of its sources
(`ExecutionEngine.crawl`). A pass is a `newswatch.crawler.fetch.passes.CrawlPass`, carried in
the requests' meta, which knows when all its work is done. What the components share across
passes reaches them through the crawler (`SourcesCrawler`: recorder, `PageKit`, parse pool,
resolver), built `from_crawler`, never read off the spider; the spiders never query the
database (they ask the recorder). A new event loop (a new `asyncio.run`) opens new crawlers.

Scrapy runs reactorless (`TWISTED_REACTOR_ENABLED=False`) so that it shares the plain
asyncio loop with python-telegram-bot and APScheduler; no module may import
`twisted.internet.reactor`. The RemoteControl and telnet extensions are off.

Per request: conditional GET for feeds from the stored ETag / Last-Modified (304 means
unchanged and nothing is parsed), a total timeout, a body-size cap applied after
decompression, no retries (the backoff in `newswatch.crawler.health` decides when to try
again), every status handled by our callback so it can be recorded; too many redirects fail
with `RedirectLimitReached`.

Every request, redirects and robots.txt included, is made by `GuardedDownloadHandler`, Scrapy's
asyncio download handler on `newswatch.crawler.fetch.addresses.GuardedConnector`: the address
policy is applied where the connection is made, with the guard of the request's source.

Politeness, for every kind, through Scrapy's download slots (one per host): a User-Agent
naming the project, at most `per_host` requests at once per host, `delay` seconds between
them (AutoThrottle raises it for slow hosts when crawling pages), the least busy host served
first; robots.txt obeyed for crawled pages (not for feeds, which are published to be polled),
429/503 `Retry-After` honoured, and a failing source backed off with jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from typing import Any

import aiohttp
import scrapy
from aiohttp.abc import AbstractResolver
from scrapy.core.downloader.handlers._aiohttp import AiohttpDownloadHandler, _ClientResponse
from scrapy.core.downloader.handlers._base_streaming import BaseStreamingDownloadHandler
from scrapy import signals
from scrapy.crawler import AsyncCrawlerRunner
from scrapy.crawler import Crawler as ScrapyCrawler
from scrapy.downloadermiddlewares.redirect import RedirectMiddleware
from scrapy.exceptions import DontCloseSpider, IgnoreRequest
from scrapy.utils.ssl import _make_ssl_context

from newswatch.crawler.fetch.addresses import AddressPolicy, GuardedConnector, SourceGuard, guarded
from newswatch.crawler.fetch.feed_reader import FeedReader, is_plain_feed
from newswatch.crawler.fetch.passes import CrawlPass, PassOutcome, SourceHalted, tracked
from newswatch.crawler.fetch.sites import ArticlePages, PageKit, SiteSpider, SitemapSpider
from newswatch.crawler.outcomes import (CrawlSummary, FetchOutcome, OutcomeRecorder, RedirectLimitReached,
                                        answered_outcome, describe_failure, parsed_outcome)
from newswatch.crawler.parse.pool import ParsePool
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
            "scrapy.downloadermiddlewares.redirect.RedirectMiddleware": None,
            "newswatch.crawler.fetch.engine.LimitedRedirectMiddleware": 600,
        },
        # one queue per download slot (host), the least busy served first, in the order requested
        "SCHEDULER_PRIORITY_QUEUE": "scrapy.pqueues.DownloaderAwarePriorityQueue",
        "SCHEDULER_MEMORY_QUEUE": "scrapy.squeues.FifoMemoryQueue",
        "EXTENSIONS": {
            "scrapy.extensions.telnet.TelnetConsole": None,
            "scrapy.extensions.logstats.LogStats": None,
            "scrapy.extensions.memusage.MemoryUsage": None,
        },
    }


class LimitedRedirectMiddleware(RedirectMiddleware):
    """Scrapy's redirect middleware, whose refusal past `REDIRECT_MAX_TIMES` (its only one) is
    the typed `RedirectLimitReached`."""

    def process_response(self, request: scrapy.Request, response: Any) -> Any:
        try:
            return super().process_response(request, response)
        except IgnoreRequest as exc:
            raise RedirectLimitReached(str(exc)) from None


UNKNOWN_SOURCE = AddressPolicy().guard(SourceConfig(name="unknown", url="http://unknown.invalid/"))


class GuardedDownloadHandler(AiohttpDownloadHandler):
    """Scrapy's asyncio HTTP(S) download handler (Scrapy 2.19's `AiohttpDownloadHandler`, whose
    session it builds the same way) on a `GuardedConnector`: each request is checked when it
    connects, against the guard its pass keeps for its source (`meta["crawl_pass"]`,
    `meta["source"]`); a request of no known source may reach public addresses only. A request
    whose source asked to wait earlier in its pass is not sent (`SourceHalted`): this is the
    moment its download slot lets it go. The crawler's `resolver`, when set, resolves host names."""

    def __init__(self, crawler: Any) -> None:
        BaseStreamingDownloadHandler.__init__(self, crawler)
        self._ssl_context = _make_ssl_context(crawler.settings)
        connector = GuardedConnector(local_addr=self._bind_address, limit=self._pool_size_total,
                                     limit_per_host=self._pool_size_per_host,
                                     resolver=getattr(crawler, "resolver", None))
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
            response_class=_ClientResponse,
            skip_auto_headers=("Accept", "Accept-Encoding", "Content-Type", "User-Agent"),
        )

    async def download_request(self, request: scrapy.Request) -> Any:
        source: SourceConfig | None = request.meta.get("source")
        crawl_pass: CrawlPass | None = request.meta.get("crawl_pass")
        if source is not None and crawl_pass is not None and source.name in crawl_pass.halted:
            raise SourceHalted(f"source {source.name} asked to wait")
        with guarded(_guard(source, crawl_pass)):
            return await super().download_request(request)


def _guard(source: SourceConfig | None, crawl_pass: CrawlPass | None) -> SourceGuard:
    if source is None:
        return UNKNOWN_SOURCE
    return crawl_pass.guard_for(source) if crawl_pass is not None else AddressPolicy().guard(source)


class FeedSpider(ArticlePages, scrapy.Spider):
    """Fetches feed sources and yields a `FetchOutcome` per source; for `full_text` sources,
    each new item's page is fetched and its story stored with the page's whole text (with the
    feed's text when the page cannot be had)."""

    name = "feeds"
    parser: ParsePool

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> FeedSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.parser = crawler.parser
        return spider

    def first_requests(self, source: SourceConfig) -> list[scrapy.Request]:
        return [scrapy.Request(
            source.url, headers=self.recorder.conditional_headers(source.name), callback=self.parse,
            errback=self.failed, dont_filter=True,
            meta={"source": source, "handle_httpstatus_list": HANDLED_STATUSES, "dont_obey_robotstxt": True},
        )]

    @tracked
    async def parse(self, response: scrapy.http.Response, **kwargs: Any) -> AsyncIterator[Any]:
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
            fresh = set(self.new_urls(response.meta["crawl_pass"], source, [s.url for s in outcome.stories if s.url]))
            follow = [s for s in outcome.stories if s.url in fresh]
            outcome.stories = [s for s in outcome.stories if s.url not in fresh]
        yield outcome
        for story in follow:
            yield self.article_request(source, story.url, story=story)

    @tracked
    def failed(self, failure: Any) -> Iterable[Any]:
        source: SourceConfig = failure.request.meta["source"]
        yield FetchOutcome(source, error=describe_failure(failure))


def _header(headers: Any, name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value else None


class OutcomePipeline:
    """Hands each outcome to the crawler's recorder (one transaction per source), counted in
    the summary of its pass."""

    def __init__(self, recorder: OutcomeRecorder) -> None:
        self.recorder = recorder

    @classmethod
    def from_crawler(cls, crawler: Any) -> OutcomePipeline:
        return cls(crawler.recorder)

    def process_item(self, item: PassOutcome) -> PassOutcome:
        try:
            self.recorder.record_safely(item.outcome, item.crawl_pass.summary)
        finally:
            item.crawl_pass.settle()
        return item


class SourcesCrawler(ScrapyCrawler):
    """A Scrapy crawler carrying what its components share across passes: the outcome
    recorder, the `PageKit`, the parse pool and the resolver (None: the system's)."""

    def __init__(self, spidercls: type[scrapy.Spider], settings: dict[str, Any], *, recorder: OutcomeRecorder,
                 pages: PageKit, parser: ParsePool, resolver: AbstractResolver | None) -> None:
        super().__init__(spidercls, settings)
        self.recorder = recorder
        self.pages = pages
        self.parser = parser
        self.resolver = resolver


STOP_TIMEOUT = 3.0
SPIDERS: dict[str, type[scrapy.Spider]] = {"feed": FeedSpider, "site": SiteSpider, "sitemap": SitemapSpider}


class LongLivedSpider:
    """One Scrapy crawler and its spider, kept open between passes and fed each pass's first
    requests; the spider going idle ends the passes it holds, and keeps it open."""

    def __init__(self, runner: AsyncCrawlerRunner, crawler: SourcesCrawler) -> None:
        self.runner = runner
        self.crawler = crawler
        self.passes: set[CrawlPass] = set()
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        opened = asyncio.Event()
        self.crawler.signals.connect(opened.set, signal=signals.spider_opened)
        self.crawler.signals.connect(self._idle, signal=signals.spider_idle)
        self.task = self.runner.crawl(self.crawler)
        self.task.add_done_callback(self._ended)
        waiting = asyncio.ensure_future(opened.wait())
        await asyncio.wait([self.task, waiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if self.task.done():
            self.task.result()  # raises what stopped it
            raise RuntimeError(f"the {self.crawler.spidercls.name} crawl ended as it started")

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def start_pass(self, sources: Sequence[SourceConfig], crawl_pass: CrawlPass) -> None:
        """Hand the spider the first requests of the pass's sources."""
        spider: Any = self.crawler.spider
        self.passes.add(crawl_pass)
        crawl_pass.done.add_done_callback(lambda _: self.passes.discard(crawl_pass))
        for source in sources:
            for request in spider.first_requests(source):
                self.crawler.engine.crawl(crawl_pass.adopt(request))

    def _idle(self) -> None:
        for crawl_pass in list(self.passes):
            crawl_pass.finish()
        raise DontCloseSpider

    def _ended(self, task: asyncio.Task[None]) -> None:
        error = task.exception() if not task.cancelled() else None
        for crawl_pass in list(self.passes):
            crawl_pass.finish(error or RuntimeError(f"the {self.crawler.spidercls.name} crawl stopped"))

    async def close(self) -> None:
        if self.running:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.crawler.stop_async(), STOP_TIMEOUT)
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.wait([self.task], timeout=STOP_TIMEOUT)


class Crawler:
    """Fetches batches of sources, in-process, as often as needed: plain feeds through the
    `FeedReader`, full-text feeds, sites and sitemaps through one long-lived Scrapy crawler per
    kind, all side by side."""

    def __init__(self, config: CrawlerConfig, recorder: OutcomeRecorder, *, policy: AddressPolicy | None = None,
                 resolver: AbstractResolver | None = None) -> None:
        self.recorder = recorder
        self.policy = policy or AddressPolicy(restrict_config_sources=config.restrict_private_addresses)
        self.resolver = resolver
        self.settings = scrapy_settings(config)
        self.runner = AsyncCrawlerRunner(self.settings)
        self.pages = PageKit.create(config.robots_cache)
        self.parser = ParsePool(workers=config.parse_workers, timeout=config.parse_timeout,
                                inline_below=config.parse_inline_below)
        self.feeds = FeedReader(config, recorder, self.parser, resolver)
        self._spiders: dict[str, LongLivedSpider] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def close(self) -> None:
        spiders, self._spiders = list(self._spiders.values()), {}
        for spider in spiders:
            await spider.close()
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
        waits: list[asyncio.Future[Any]] = []
        passes: list[CrawlPass] = []
        feeds = [s for s in sources if is_plain_feed(s)]
        if feeds:
            waits.append(asyncio.ensure_future(self.feeds.read(feeds, summary, guards)))
        for kind in SPIDERS:
            batch = [s for s in sources if s.kind == kind and not is_plain_feed(s)]
            if batch:
                spider = await self._spider(kind)
                crawl_pass = CrawlPass(summary, guards)
                passes.append(crawl_pass)
                spider.start_pass(batch, crawl_pass)
                waits.append(crawl_pass.done)
        try:
            await asyncio.wait(waits)
        except asyncio.CancelledError:  # the daemon is stopping: nothing more is sent for this pass
            for crawl_pass in passes:
                crawl_pass.halted.update(s.name for s in sources)
                crawl_pass.finish()
            for wait in waits:
                wait.cancel()
            raise
        finally:
            for crawl_pass in passes:
                self.pages.release(crawl_pass)
        for wait in waits:
            if wait.exception() is not None:
                raise wait.exception()  # type: ignore[misc]
        summary.seconds = time.perf_counter() - started
        return summary

    async def _spider(self, kind: str) -> LongLivedSpider:
        """The running spider of a kind, opened on first use (again in a new event loop)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._spiders, self._loop = {}, loop
        spider = self._spiders.get(kind)
        if spider is None or not spider.running:
            crawler = SourcesCrawler(SPIDERS[kind], self.settings, recorder=self.recorder, pages=self.pages,
                                     parser=self.parser, resolver=self.resolver)
            spider = self._spiders[kind] = LongLivedSpider(self.runner, crawler)
            await spider.open()
        return spider
