"""Experimental changes to the daemon, applied only inside a benchmark run, to measure what a
product change would buy before it is made (`python -m bench cycle --variant NAME`).

Results of a variant run are labelled with its name.

    no-return-check   WARN_ON_GENERATOR_RETURN_VALUE = False: Scrapy stops checking, for
                      every response, whether the callback is a generator with a `return
                      value` (the check re-reads and re-parses the callback's source when
                      its weak cache has dropped the bound method, which is most of the time)
    few-items         CONCURRENT_ITEMS = 4 instead of Scrapy's 100: for every response Scrapy
                      starts CONCURRENT_ITEMS worker tasks (`_parallel_asyncio` in
                      `Scraper.handle_spider_output_async`) to process what the callback
                      yields, and the feed callback yields one outcome per response
    lean-scrapy       no-return-check and few-items, plus the Scrapy components a feed poll does not use
                      switched off: the referer, URL-length, depth and offsite middlewares,
                      HTTP auth, proxy, meta-refresh, downloader stats, and a stats collector
                      that keeps nothing
    aiohttp-feeds     plain feed sources (kind feed, no full_text) fetched by a small aiohttp
                      loop instead of a Scrapy crawl: one persistent session, `concurrency`
                      requests at once (`per_host` per host), conditional GET from the stored
                      validators, total timeout, body cap, at most 5 redirects; parsing through
                      the crawler's parse pool and recording through its `OutcomeRecorder`,
                      exactly as the feed spider does. Sites, sitemaps and full-text feeds still
                      go to Scrapy. A sketch of the proposed change, to measure it, not a
                      finished implementation (no robots.txt: feeds do not obey it anyway)

A variant patches the daemon's crawler in its own process (through `bench.probe`, which
`DaemonRun` and `crawl_once` use when a variant is set); the product's files are not touched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

VARIANTS = ("no-return-check", "few-items", "lean-scrapy", "aiohttp-feeds")


def _no_return_check(settings: dict[str, Any]) -> None:
    settings["WARN_ON_GENERATOR_RETURN_VALUE"] = False


def _few_items(settings: dict[str, Any]) -> None:
    settings["CONCURRENT_ITEMS"] = 4


def _lean(settings: dict[str, Any]) -> None:
    _no_return_check(settings)
    _few_items(settings)
    downloader = dict(settings.get("DOWNLOADER_MIDDLEWARES", {}))
    for name in ("offsite.OffsiteMiddleware", "httpauth.HttpAuthMiddleware", "redirect.MetaRefreshMiddleware",
                 "httpproxy.HttpProxyMiddleware", "stats.DownloaderStats"):
        downloader[f"scrapy.downloadermiddlewares.{name}"] = None
    settings["DOWNLOADER_MIDDLEWARES"] = downloader
    spider = dict(settings.get("SPIDER_MIDDLEWARES", {}))
    for name in ("referer.RefererMiddleware", "urllength.UrlLengthMiddleware", "depth.DepthMiddleware"):
        spider[f"scrapy.spidermiddlewares.{name}"] = None
    settings["SPIDER_MIDDLEWARES"] = spider
    settings["STATS_CLASS"] = "scrapy.statscollectors.DummyStatsCollector"
    extensions = dict(settings.get("EXTENSIONS", {}))
    extensions["scrapy.extensions.corestats.CoreStats"] = None
    settings["EXTENSIONS"] = extensions


_PATCHES: dict[str, Callable[[dict[str, Any]], None]] = {
    "no-return-check": _no_return_check, "few-items": _few_items, "lean-scrapy": _lean,
}


def _aiohttp_feeds() -> None:
    import asyncio
    import time

    import aiohttp

    from crawler import fetch
    from crawler.health import freshness_floor, retry_after_seconds

    original_init = fetch.Crawler.__init__
    original_crawl = fetch.Crawler.crawl
    accept = ("application/rss+xml, application/atom+xml, application/feed+json, "
              "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5")

    def __init__(self, config, recorder) -> None:
        original_init(self, config, recorder)
        self.feed_config = config
        self.feed_session = None

    async def fetch_one(self, session, source, summary) -> None:
        config = self.feed_config
        state = self.recorder.store.fetch_state(source.name)
        headers = {"User-Agent": config.user_agent, "Accept": accept}
        if state.etag:
            headers["If-None-Match"] = state.etag
        if state.last_modified:
            headers["If-Modified-Since"] = state.last_modified
        try:
            async with session.get(source.url, headers=headers, max_redirects=5,
                                   timeout=aiohttp.ClientTimeout(total=config.timeout)) as response:
                etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
                if response.status == 304:
                    outcome = fetch.FetchOutcome(source, status=304, etag=etag, last_modified=modified)
                elif not 200 <= response.status < 300:
                    retry = None
                    if response.status in (429, 503):
                        retry = retry_after_seconds(response.headers.get("Retry-After"), self.recorder.clock.now())
                    outcome = fetch.FetchOutcome(source, status=response.status, retry_after=retry,
                                                 error=f"HTTP {response.status} from {response.url}")
                else:
                    chunks, size = [], 0
                    async for chunk in response.content.iter_chunked(1 << 16):
                        size += len(chunk)
                        if size > config.max_bytes:
                            raise ValueError(f"response too large (over {config.max_bytes} bytes)")
                        chunks.append(chunk)
                    body = b"".join(chunks)
                    parsed = await self.parser.parse(body, source=source.name, url=str(response.url),
                                                     content_type=response.headers.get("Content-Type", ""),
                                                     now=self.recorder.clock.now())
                    if not parsed.stories and parsed.problem:
                        outcome = fetch.FetchOutcome(source, status=response.status, error=parsed.problem, bytes=size)
                    else:
                        outcome = fetch.FetchOutcome(
                            source, status=response.status, stories=parsed.stories, etag=etag, last_modified=modified,
                            note=parsed.problem, bytes=size,
                            fresh_for=freshness_floor(response.headers.get("Cache-Control"), parsed.ttl_seconds))
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            outcome = fetch.FetchOutcome(source, error=f"{type(exc).__name__}: {exc}".rstrip(": "))
        self.recorder.record(outcome, summary)

    async def fetch_feeds(self, feeds, summary) -> None:
        if self.feed_session is None:
            config = self.feed_config
            connector = aiohttp.TCPConnector(limit=config.concurrency, limit_per_host=config.per_host)
            self.feed_session = aiohttp.ClientSession(connector=connector)
        queue = list(reversed(feeds))

        async def worker() -> None:
            while queue:
                await fetch_one(self, self.feed_session, queue.pop(), summary)

        await asyncio.gather(*(worker() for _ in range(min(len(feeds), self.feed_config.concurrency))))

    async def crawl(self, sources):
        feeds = [s for s in sources if s.kind == "feed" and not s.full_text]
        names = {s.name for s in feeds}
        others = [s for s in sources if s.name not in names]
        started = time.perf_counter()
        summary = fetch.CrawlSummary(sources=len(sources))
        jobs = [fetch_feeds(self, feeds, summary)] if feeds else []
        if others:
            jobs.append(original_crawl(self, others))
        results = await asyncio.gather(*jobs)
        for other in results:
            if isinstance(other, fetch.CrawlSummary):
                for key in ("ok", "not_modified", "failed", "stories_seen", "stories_new", "bytes", "pages",
                            "pages_failed"):
                    setattr(summary, key, getattr(summary, key) + getattr(other, key))
                summary.new.extend(other.new)
                summary.failures.update(other.failures)
        summary.seconds = time.perf_counter() - started
        return summary

    fetch.Crawler.__init__ = __init__  # type: ignore[method-assign]
    fetch.Crawler.crawl = crawl  # type: ignore[method-assign]


def apply(name: str) -> None:
    """Apply the named variant in this process."""
    from crawler import fetch

    if name == "aiohttp-feeds":
        _aiohttp_feeds()
        return
    patch = _PATCHES[name]
    original = fetch.scrapy_settings

    def scrapy_settings(config):
        settings = original(config)
        patch(settings)
        return settings

    fetch.scrapy_settings = scrapy_settings  # type: ignore[assignment]
