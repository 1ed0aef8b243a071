"""News sites without feeds: the listing-page and sitemap spiders, and the article pages
they (and full-text feeds) fetch.

Owns the Scrapy spiders for `kind: site` and `kind: sitemap` sources, `ArticlePages` (the
fetching of article pages that those spiders and `FeedSpider` share: only URLs not already
stored are requested, at most `max_articles` per source and pass), and the components they
rely on, built from the crawler (`from_crawler`), never read off the spider:

- `CachedRobotsTxtMiddleware` obeys robots.txt (setting `ROBOTSTXT_OBEY`) for every request
  not marked `dont_obey_robotstxt` (feeds are marked: they are published to be polled), reads
  each host's rules once per pass and keeps them across passes for `crawler.robots_cache`
  seconds; what it forbids fails with `RobotsForbidden`;
- `PageExtractor` runs `newswatch.crawler.parse.articles.extract_article` off the event loop,
  one page at a time, so a heavy page never stalls the bot or the scheduler;
- `FailedPages` remembers article URLs that failed (404, timeout, robots.txt, no article in
  them) and skips each for a while, doubling the wait per failure (in memory only);
- `PageKit` holds these three (`crawler.pages`) and the article URLs running passes fetch.

The spiders live as long as the process: each pass hands them its first requests
(`first_requests`), and the pass (`newswatch.crawler.fetch.passes.CrawlPass`) travels in the
requests' meta. Politeness per host is Scrapy's download slots (`CONCURRENT_REQUESTS_PER_DOMAIN`,
`DOWNLOAD_DELAY`, AutoThrottle) with a scheduler that serves the least busy host first. A
429/503 (here or on the source's own document) halts the source: nothing more is sent for it
in this pass (its requests still waiting fail with `SourceHalted` when their turn comes), and
it is backed off for at least its `Retry-After`. A source's own document (the first listing
page, the sitemap) is its health: its failure is the source's failure. An article page that
fails is logged and skipped, and tried again once `FailedPages` lets it (it is still not stored).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any
from urllib.parse import urljoin

import scrapy
from parsel import Selector
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http.request import NO_CALLBACK
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.defer import Deferred

from newswatch.crawler.fetch.passes import CrawlPass, SourceHalted, tracked
from newswatch.crawler.health import retry_after_seconds
from newswatch.crawler.outcomes import FetchOutcome, OutcomeRecorder, RobotsForbidden, describe_error, describe_failure
from newswatch.crawler.parse.articles import Article, article_story, decode_html, extract_article, select
from newswatch.crawler.parse.sitemaps import SITEMAP_MAX_BYTES, parse_sitemap
from newswatch.crawler.sources import SourceConfig
from newswatch.crawler.story import Story
from newswatch.crawler.urls import canonical_url

log = logging.getLogger("newswatch.crawler")

ARTICLE_MAX_BYTES = 4_000_000
MAX_CHILD_SITEMAPS = 5
MAX_SITEMAP_DEPTH = 2
PAGE_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"
SITEMAP_ACCEPT = "application/xml,text/xml;q=0.9,*/*;q=0.5"
NEXT_WORDS = frozenset({
    "next", "next page", "older", "older posts", "more", "다음", "다음 페이지", "다음페이지",
    "次へ", "次のページ", "下一页", "下页", "›", "»", ">", "→",
})


# --- components ------------------------------------------------------------------------------


class RobotsCache:
    """Parsed robots.txt per host, kept for `ttl` seconds across crawls."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._parsers: dict[str, tuple[float, Any]] = {}

    def get(self, netloc: str) -> Any | None:
        entry = self._parsers.get(netloc)
        if entry and time.monotonic() - entry[0] < self.ttl:
            return entry[1]
        return None

    def put(self, netloc: str, parser: Any) -> None:
        if parser is not None and self.ttl > 0:
            self._parsers[netloc] = (time.monotonic(), parser)


class CachedRobotsTxtMiddleware(RobotsTxtMiddleware):
    """Scrapy's robots.txt middleware for a long-lived crawler: the rules of a host are read
    once per pass (`CrawlPass.robots`) and kept across passes in the crawler's `RobotsCache`
    (`crawler.pages.robots`); concurrent requests to one host wait for one fetch. The
    robots.txt request carries the page's source and pass, so the address policy checks it as
    it checks the page; a robots.txt that cannot be had (refused, failed) allows everything
    for the pass, and the page's own request then meets the same checks."""

    def __init__(self, crawler: Any) -> None:
        super().__init__(crawler)
        self.cache: RobotsCache = crawler.pages.robots
        self._fetching: dict[str, asyncio.Future[Any]] = {}

    async def robot_parser(self, request: scrapy.Request) -> Any:
        netloc = urlparse_cached(request).netloc
        crawl_pass = request.meta.get("crawl_pass")
        seen = crawl_pass.robots if crawl_pass is not None else {}
        if netloc not in seen:
            parser = self.cache.get(netloc)
            if parser is None:
                parser = await self._fetched(request, netloc)
                self.cache.put(netloc, parser)
            seen[netloc] = parser
        return seen[netloc]

    async def _fetched(self, request: scrapy.Request, netloc: str) -> Any:
        """The parsed robots.txt of a host (None when it cannot be had), fetched once for all
        the requests waiting for it."""
        fetching = self._fetching.get(netloc)
        if fetching is not None:
            return await asyncio.shield(fetching)
        fetching = self._fetching[netloc] = asyncio.get_running_loop().create_future()
        self._parsers[netloc] = Deferred()  # what Scrapy's _parse_robots and _robots_error resolve
        robots = scrapy.Request(f"{urlparse_cached(request).scheme}://{netloc}/robots.txt",
                                priority=self.DOWNLOAD_PRIORITY, callback=NO_CALLBACK,
                                meta={"dont_obey_robotstxt": True, "source": request.meta.get("source"),
                                      "crawl_pass": request.meta.get("crawl_pass")})
        try:
            response = await self.crawler.engine.download_async(robots)  # type: ignore[union-attr]
            await self._parse_robots(response, netloc, request)
        except Exception as exc:
            if not isinstance(exc, IgnoreRequest):
                log.debug("robots.txt for %s not fetched: %s", netloc, describe_error(exc))
            self._robots_error(exc, netloc)
        finally:
            parser = self._parsers.pop(netloc, None)
            del self._fetching[netloc]
            fetching.set_result(None if isinstance(parser, Deferred) else parser)
        return fetching.result()

    def process_request_2(self, rp: Any, request: scrapy.Request) -> None:
        try:
            super().process_request_2(rp, request)
        except IgnoreRequest as exc:  # Scrapy's only refusal here: typed, so it is told by its class
            raise RobotsForbidden(str(exc)) from None


class FailedPages:
    """Article URLs that failed lately, skipped until their wait is over (FIRST_WAIT doubled
    per failure, at most MAX_WAIT); forgotten oldest first beyond `size` URLs."""

    FIRST_WAIT = 600.0
    MAX_WAIT = 24 * 3600.0

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._failed: dict[str, tuple[int, float]] = {}

    def waiting(self, url: str) -> bool:
        entry = self._failed.get(url)
        return entry is not None and time.monotonic() < entry[1]

    def failed(self, url: str) -> None:
        count = self._failed.pop(url, (0, 0.0))[0] + 1
        self._failed[url] = (count, time.monotonic() + min(self.FIRST_WAIT * 2 ** (count - 1), self.MAX_WAIT))
        while len(self._failed) > self.size:
            del self._failed[next(iter(self._failed))]


class PageExtractor:
    """Extracts article pages in one worker thread, off the event loop."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="newswatch-extract")

    async def extract(self, body: bytes, url: str, content_type: str, selectors: dict[str, str | None]) -> Article:
        loop = asyncio.get_running_loop()
        job = partial(extract_article, body, url, content_type=content_type, selectors=selectors)
        return await loop.run_in_executor(self._executor, job)

    def close(self) -> None:
        self._executor.shutdown(wait=False)


@dataclass
class PageKit:
    """What fetching article pages keeps from one pass to the next."""

    extractor: PageExtractor
    robots: RobotsCache
    failures: FailedPages
    claimed: set[str] = field(default_factory=set)  # article URLs some running pass is fetching

    @classmethod
    def create(cls, robots_ttl: float) -> PageKit:
        return cls(PageExtractor(), RobotsCache(robots_ttl), FailedPages())

    def release(self, crawl_pass: CrawlPass) -> None:
        """A pass is over: its article URLs are free for other passes."""
        self.claimed.difference_update(crawl_pass.queued)

    def close(self) -> None:
        self.extractor.close()


# --- article pages, shared by every spider that fetches them ------------------------------------


class ArticlePages:
    """Fetching article pages for a long-lived spider: new URLs only, within each source's
    budget per pass. The recorder and the `PageKit` come from the crawler (`from_crawler`)."""

    recorder: OutcomeRecorder
    pages: PageKit

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> Any:
        spider = super().from_crawler(crawler, *args, **kwargs)  # type: ignore[misc]
        spider.recorder = crawler.recorder
        spider.pages = crawler.pages
        return spider

    async def start(self) -> AsyncIterator[Any]:
        """Nothing: each pass feeds its own first requests (`first_requests`)."""
        return
        yield

    def new_urls(self, crawl_pass: CrawlPass, source: SourceConfig, urls: Iterable[str]) -> list[str]:
        """Of `urls` (canonical), those neither stored nor already queued, within the budget."""
        pages = self.pages
        wanted = [u for u in dict.fromkeys(urls) if u and u not in crawl_pass.queued and u not in pages.claimed
                  and not pages.failures.waiting(u)]
        known = self.recorder.known_urls(wanted, source.name) if wanted else set()
        fresh = [u for u in wanted if u not in known]
        left = crawl_pass.budget.setdefault(source.name, source.max_articles)
        if len(fresh) > left:
            log.info("source %s: new articles: %d, fetching %d now and the rest next time",
                     source.name, len(fresh), left)
        fresh = fresh[: max(0, left)]
        crawl_pass.budget[source.name] = left - len(fresh)
        crawl_pass.queued.update(fresh)
        pages.claimed.update(fresh)
        return fresh

    def article_request(self, source: SourceConfig, url: str, **meta: Any) -> scrapy.Request:
        configured = self.settings.getint("DOWNLOAD_MAXSIZE")  # type: ignore[attr-defined]
        maxsize = min(configured or ARTICLE_MAX_BYTES, ARTICLE_MAX_BYTES)
        return scrapy.Request(
            url, callback=self.parse_article, errback=self.article_failed, headers={"Accept": PAGE_ACCEPT},
            dont_filter=True, meta={"source": source, "article_url": url, "download_maxsize": maxsize, **meta},
        )

    @tracked
    async def parse_article(self, response: scrapy.http.Response) -> AsyncIterator[Any]:
        source: SourceConfig = response.meta["source"]
        url: str = response.meta["article_url"]
        selectors = source.selectors.model_dump() if source.selectors else {}
        content_type = (response.headers.get(b"Content-Type") or b"").decode("latin-1")
        article = await self.pages.extractor.extract(response.body, response.url, content_type, selectors)
        feed_story: Story | None = response.meta.get("story")
        now = self.recorder.clock.now()
        if feed_story is not None:
            story = _with_full_text(feed_story, article)
        else:
            story = article_story(article, source=source.name, url=url, now=now, title=response.meta.get("title", ""),
                                  published=response.meta.get("published"), modified=response.meta.get("modified"))
        if story is None or not (article.text or feed_story):
            self.pages.failures.failed(url)
        note = f"{url}: {article.problem}" if article.problem else ""
        yield FetchOutcome(source, status=response.status, stories=[story] if story else [], article=url,
                           bytes=len(response.body), note=note)

    @tracked
    def article_failed(self, failure: Any) -> Iterable[Any]:
        if failure.check(asyncio.CancelledError):
            return
        request = failure.request
        source: SourceConfig = request.meta["source"]
        url: str = request.meta["article_url"]
        story: Story | None = request.meta.get("story")
        stories = [story] if story is not None else []
        response = getattr(failure.value, "response", None)
        if failure.check(SourceHalted):  # the feed's story is stored as the feed gave it
            if stories:
                yield FetchOutcome(source, stories=stories, article=url,
                                   error="full text not fetched: the source asked to wait")
        elif response is not None and response.status in (429, 503):
            yield from self.halt(request.meta["crawl_pass"], source, response)
            yield FetchOutcome(source, stories=stories, article=url, error=f"HTTP {response.status}")
        else:
            self.pages.failures.failed(url)
            yield FetchOutcome(source, stories=stories, article=url, error=describe_page_failure(failure))

    def halt(self, crawl_pass: CrawlPass, source: SourceConfig, response: scrapy.http.Response) -> Iterable[Any]:
        """Stop fetching from a source that asked us to wait, and back it off."""
        if source.name in crawl_pass.halted:
            return
        crawl_pass.halted.add(source.name)
        wait = retry_after_seconds(response.headers.get(b"Retry-After"), self.recorder.clock.now())
        yield FetchOutcome(source, status=response.status, error=f"HTTP {response.status} from {response.url}",
                           retry_after=wait, bytes=len(response.body))

    @tracked
    def source_failed(self, failure: Any) -> Iterable[Any]:
        """The source's own document (listing page, sitemap) could not be fetched."""
        if failure.check(SourceHalted):
            return
        source: SourceConfig = failure.request.meta["source"]
        response = getattr(failure.value, "response", None)
        if response is not None and response.status in (429, 503):
            yield from self.halt(failure.request.meta["crawl_pass"], source, response)
            return
        if not failure.request.meta.get("primary"):
            yield FetchOutcome(source, article=failure.request.url, error=describe_page_failure(failure))
            return
        if response is not None:
            yield FetchOutcome(source, status=response.status, error=f"HTTP {response.status} from {response.url}",
                               bytes=len(response.body))
            return
        yield FetchOutcome(source, error=describe_page_failure(failure))


def _with_full_text(story: Story, article: Article) -> Story:
    text = article.text if len(article.text) > len(story.text) else story.text
    return replace(story, text=text, author=story.author or article.author, language=story.language or article.language)


def describe_page_failure(failure: Any) -> str:
    response = getattr(failure.value, "response", None)
    if response is not None:
        return f"HTTP {response.status}"
    return describe_failure(failure)


# --- kind: site ------------------------------------------------------------------------------------


class SiteSpider(ArticlePages, scrapy.Spider):
    """Reads each site's listing page(s), follows pagination up to `depth` pages, and fetches
    the new article pages whose URLs match `follow`."""

    name = "sites"

    def first_requests(self, source: SourceConfig) -> list[scrapy.Request]:
        return [scrapy.Request(
            url, callback=self.parse_listing, errback=self.source_failed, dont_filter=True,
            headers={"Accept": PAGE_ACCEPT},
            meta={"source": source, "page": 1, "primary": i == 0, "download_maxsize": ARTICLE_MAX_BYTES},
        ) for i, url in enumerate(source.urls)]

    @tracked
    def parse_listing(self, response: scrapy.http.Response) -> Iterable[Any]:
        source: SourceConfig = response.meta["source"]
        page: int = response.meta["page"]
        text, _ = decode_html(response.body, (response.headers.get(b"Content-Type") or b"").decode("latin-1"))
        selector = Selector(text=text or "<html></html>", type="html")
        base = _base_url(selector, response.url)
        listings = {canonical_url(u) for u in (*source.urls, response.url, response.request.url)}
        links = [u for u in listing_links(selector, base, source) if u not in listings]
        fresh = self.new_urls(response.meta["crawl_pass"], source, links)
        if response.meta.get("primary"):
            yield FetchOutcome(source, status=response.status, bytes=len(response.body),
                               note="" if links else f"no links matching {source.follow!r} on {response.url}")
        yield from (self.article_request(source, url) for url in fresh)
        if page < source.depth and fresh and (following := next_page(selector, base, source)):
            yield scrapy.Request(
                following, callback=self.parse_listing, errback=self.source_failed, headers={"Accept": PAGE_ACCEPT},
                dont_filter=True,
                meta={"source": source, "page": page + 1, "primary": False, "download_maxsize": ARTICLE_MAX_BYTES},
            )


def _base_url(selector: Selector, url: str) -> str:
    base = selector.xpath("//head/base/@href").get()
    return urljoin(url, base.strip()) if base else url


def listing_links(selector: Selector, base: str, source: SourceConfig) -> list[str]:
    """Canonical article URLs on a listing page: links (within `links`) matching `follow`."""
    pattern = re.compile(source.follow or ".")
    if source.links:
        hrefs: list[str] = []
        for node in select(selector, source.links):
            if isinstance(node.root, str):
                hrefs.append(node.root)
            else:
                hrefs.extend(node.xpath("self::a/@href | .//a/@href").getall())
    else:
        hrefs = selector.xpath("//a/@href").getall()
    out: list[str] = []
    for href in hrefs:
        href = href.strip()
        if not href or href.startswith(("#", "javascript:", "mailto:")):
            continue
        absolute = _join(base, href)
        if absolute and pattern.search(absolute) and (url := canonical_url(absolute)):
            out.append(url)
    return list(dict.fromkeys(out))


def next_page(selector: Selector, base: str, source: SourceConfig) -> str:
    """The next listing page: the `next` selector, else rel=next, else a link saying "next"."""
    if source.next:
        found = [n.root if isinstance(n.root, str) else (n.xpath("self::a/@href | .//a/@href").get() or "")
                 for n in select(selector, source.next)]
        candidates = [f for f in found if f]
    else:
        candidates = selector.xpath("//link[@rel='next']/@href | //a[@rel='next']/@href").getall()
        if not candidates:
            for anchor in selector.xpath("//a[@href]"):
                label = " ".join(" ".join(anchor.xpath(".//text()").getall()).split()).lower()
                extra = " ".join(anchor.xpath("@class | @aria-label | @title").getall()).lower()
                if label in NEXT_WORDS or re.search(r"\bnext\b", extra):
                    candidates.append(anchor.xpath("@href").get() or "")
                    break
    for candidate in candidates:
        url = _join(base, candidate.strip())
        if url:
            return url
    return ""


def _join(base: str, href: str) -> str:
    try:
        url = urljoin(base, href)
    except ValueError:
        return ""
    return url if url.startswith(("http://", "https://")) else ""


# --- kind: sitemap ----------------------------------------------------------------------------------


class SitemapSpider(ArticlePages, scrapy.Spider):
    """Reads each sitemap (following up to `MAX_CHILD_SITEMAPS` newest children of an index)
    and fetches the new pages it lists, newest first, with the sitemap's title and date."""

    name = "sitemaps"

    def first_requests(self, source: SourceConfig) -> list[scrapy.Request]:
        return [self._sitemap_request(source, source.urls[0], depth=0)]

    def _sitemap_request(self, source: SourceConfig, url: str, depth: int) -> scrapy.Request:
        return scrapy.Request(
            url, callback=self.parse_sitemap, errback=self.source_failed, dont_filter=True,
            headers={"Accept": SITEMAP_ACCEPT},
            meta={"source": source, "depth": depth, "primary": depth == 0, "download_maxsize": SITEMAP_MAX_BYTES},
        )

    @tracked
    def parse_sitemap(self, response: scrapy.http.Response) -> Iterable[Any]:
        source: SourceConfig = response.meta["source"]
        depth: int = response.meta["depth"]
        sitemap = parse_sitemap(response.body)
        primary = response.meta.get("primary")
        if sitemap.problem and not sitemap.children and not sitemap.entries:
            yield FetchOutcome(source, status=response.status, error=sitemap.problem, bytes=len(response.body),
                               article="" if primary else response.url)
            return
        if primary:
            yield FetchOutcome(source, status=response.status, bytes=len(response.body), note=sitemap.problem)
        if sitemap.children and depth < MAX_SITEMAP_DEPTH:
            for child in sitemap.children[:MAX_CHILD_SITEMAPS]:
                if url := _join(response.url, child):
                    yield self._sitemap_request(source, url, depth + 1)
        by_url = {e.url: e for e in sitemap.entries}
        requests = [self.article_request(source, url, title=by_url[url].title, published=by_url[url].published,
                                         modified=by_url[url].modified)
                    for url in self.new_urls(response.meta["crawl_pass"], source, by_url)]
        yield from requests
