"""Polling feeds: one conditional GET per feed source, over one long-lived aiohttp session.

Owns `FeedReader`, which reads the plain feed sources of a batch (`kind: feed` without
`full_text`; full-text feeds, sites and sitemaps crawl pages and go to the Scrapy spiders).
A feed poll is one request and one parse, so it needs none of a crawl framework's machinery;
a session kept across passes also keeps connections to the feed hosts alive.

Per feed, as the spiders do: the project's User-Agent; conditional GET from the stored ETag /
Last-Modified (a 304 is recorded as unchanged and nothing is parsed); a total timeout for the
whole exchange, body included, so a server that drips bytes forever is cut off; a body cap
counted after decompression (aiohttp also decompresses in bounded steps, so a gzip bomb ends
at the cap); at most 5 redirects; 429/503 `Retry-After` honoured; no retries (the backoff in
`newswatch.crawler.health` decides when to try again). Politeness: at most `concurrency` requests in
all, `per_host` at once per host and, within a pass, `delay` seconds between the starts of
requests to one host. Feeds do not obey robots.txt: they are published to be polled.

Every connection goes through `newswatch.crawler.fetch.addresses.GuardedConnector`, checked against the
source's `SourceGuard` after DNS resolution and on every redirect.

The body is parsed by the crawler's `ParsePool` (off the event loop) and every outcome,
success or failure, is recorded through a `FeedPass` of the `OutcomeRecorder`: the stored
validators of the whole pass are read in one query, the successes that bring no stories (304s)
are recorded many to a transaction, and every other outcome in a transaction of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.request
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver

from newswatch.crawler.fetch.addresses import AddressPolicy, GuardedConnector, SourceGuard, guarded
from newswatch.crawler.outcomes import (CrawlSummary, FeedPass, FetchOutcome, OutcomeRecorder, ResponseTooLarge,
                                        answered_outcome, describe_error, parsed_outcome)
from newswatch.crawler.parse.pool import ParsePool
from newswatch.crawler.sources import CrawlerConfig, SourceConfig

log = logging.getLogger("newswatch.crawler")

FEED_ACCEPT = ("application/rss+xml, application/atom+xml, application/feed+json, "
               "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5")
MAX_REDIRECTS = 5
READ_CHUNK = 1 << 16


def is_plain_feed(source: SourceConfig) -> bool:
    """Whether the feed reader (rather than a Scrapy spider) fetches this source."""
    return source.kind == "feed" and not source.full_text


class HostPacer:
    """Spaces the starts of requests to one host `delay` seconds apart."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._next: dict[str, float] = {}

    async def wait(self, host: str) -> None:
        if self.delay <= 0:
            return
        now = time.monotonic()
        start = max(now, self._next.get(host, now))
        self._next[host] = start + self.delay
        if start > now:
            await asyncio.sleep(start - now)


class FeedReader:
    """Fetches, parses and records plain feed sources; reusable across passes."""

    def __init__(self, config: CrawlerConfig, recorder: OutcomeRecorder, parser: ParsePool,
                 resolver: AbstractResolver | None = None) -> None:
        self.config = config
        self.recorder = recorder
        self.parser = parser
        self.resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            config = self.config
            self._session = aiohttp.ClientSession(
                connector=GuardedConnector(limit=config.concurrency, limit_per_host=config.per_host,
                                           ttl_dns_cache=300, resolver=self.resolver),
                headers={"User-Agent": config.user_agent, "Accept": FEED_ACCEPT},
                timeout=aiohttp.ClientTimeout(total=config.timeout),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._proxies = urllib.request.getproxies()
        return self._session

    def _proxy_for(self, url: str) -> str | None:
        """The proxy from HTTP(S)_PROXY / NO_PROXY for this URL, as for the page crawls (read
        once per session: aiohttp's own `trust_env` would read ~/.netrc for every request)."""
        parts = urlsplit(url)
        proxy = self._proxies.get(parts.scheme)
        if proxy and not urllib.request.proxy_bypass_environment(parts.hostname or "", self._proxies):
            return proxy
        return None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def read(self, sources: Sequence[SourceConfig], summary: CrawlSummary,
                   guards: Mapping[str, SourceGuard] | None = None) -> None:
        """Poll every source once, `concurrency` at a time, recording each outcome; each
        source's requests are checked by its guard (config sources' default: trusted). Every
        outcome is recorded before it returns, or is cancelled (`FeedPass`)."""
        queue = list(reversed(sources))
        pacer = HostPacer(self.config.delay)
        guards = guards or {}
        recording = FeedPass(self.recorder, [s.name for s in sources], summary)

        async def worker() -> None:
            while queue:
                source = queue.pop()
                guard = guards.get(source.name) or AddressPolicy().guard(source)
                with guarded(guard):
                    outcome = await self._poll(source, pacer, recording)
                recording.record(outcome)

        try:
            await asyncio.gather(*(worker() for _ in range(min(len(sources), self.config.concurrency))))
        finally:
            recording.close()

    async def _poll(self, source: SourceConfig, pacer: HostPacer, recording: FeedPass) -> FetchOutcome:
        try:
            return await self._fetch(source, pacer, recording)
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            return FetchOutcome(source, error=describe_error(exc))
        except Exception as exc:  # a fault of ours must cost one source, not the pass
            log.exception("source %s: unexpected error while polling", source.name)
            return FetchOutcome(source, error=f"unexpected error: {type(exc).__name__}: {exc}")

    async def _fetch(self, source: SourceConfig, pacer: HostPacer, recording: FeedPass) -> FetchOutcome:
        headers = recording.conditional_headers(source.name)
        await pacer.wait(urlsplit(source.url).netloc.lower())
        session = self._get_session()
        # aiohttp's limit counts the redirect response it gives up on: MAX_REDIRECTS are followed
        async with session.get(source.url, headers=headers, max_redirects=MAX_REDIRECTS + 1,
                               proxy=self._proxy_for(source.url)) as response:
            status = response.status
            etag, last_modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
            answered = answered_outcome(source, status, str(response.url), etag=etag, last_modified=last_modified,
                                        retry_after=response.headers.get("Retry-After"), now=self.recorder.clock.now())
            if answered is not None:
                return answered
            body = await self._body(response)
            url, content_type = str(response.url), response.headers.get("Content-Type", "")
            cache_control = response.headers.get("Cache-Control")
        # the connection goes back to the pool before parsing, which may take a while
        parsed = await self.parser.parse(body, source=source.name, url=url, content_type=content_type,
                                         now=self.recorder.clock.now())
        return parsed_outcome(source, status, parsed, etag=etag, last_modified=last_modified,
                              cache_control=cache_control, size=len(body))

    async def _body(self, response: aiohttp.ClientResponse) -> bytes:
        """The decompressed body, refused past `max_bytes`."""
        cap = self.config.max_bytes
        if (response.content_length or 0) > cap and "Content-Encoding" not in response.headers:
            raise ResponseTooLarge(f"response too large ({response.content_length} bytes declared, cap {cap})")
        chunks, size = [], 0
        async for chunk in response.content.iter_chunked(READ_CHUNK):
            size += len(chunk)
            if size > cap:
                raise ResponseTooLarge(f"response too large (over {cap} bytes)")
            chunks.append(chunk)
        return b"".join(chunks)
