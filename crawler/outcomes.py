"""What fetching a source produced, and how it is recorded.

Owns `FetchOutcome` (one request to one source), `CrawlSummary` (one pass over a batch of
sources), `OutcomeRecorder` (persisting outcomes: new stories and validators on success,
failure counts and backoff otherwise), `hold_reason` (which new stories may never alert:
those published longer ago than the source's `alert_max_age`, and undated items of a source's
first successful fetch, which are a baseline, not news) and `describe_error`, which turns any download
exception, whichever HTTP client raised it, into one short, precise line, by its class (aiohttp's,
Scrapy's, Twisted's, and `ResponseTooLarge` of the feed reader), never by its text. Both fetch paths,
the feed reader (`newswatch.crawler.fetch.feed_reader`) and the Scrapy spiders (`newswatch.crawler.fetch.engine`,
`newswatch.crawler.fetch.sites`), produce `FetchOutcome`s: the spiders hand them to `record_safely`,
one transaction each; the feed reader to a `FeedPass`, which reads the fetch states of its whole
pass in one query and records the successes that store no stories (`is_quiet`: 304s) up to
`QUIET_BATCH` to a transaction, the others through `record_safely`.
"""

from __future__ import annotations

import logging
import random
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from scrapy.exceptions import (CannotResolveHostError, DownloadCancelledError, DownloadConnectionRefusedError,
                               DownloadTimeoutError, IgnoreRequest, ResponseDataLossError)
from twisted.internet.error import ConnectionRefusedError as TxConnectionRefusedError
from twisted.internet.error import DNSLookupError as TxDNSLookupError
from twisted.internet.error import TimeoutError as TxTimeoutError
from twisted.web.client import ResponseNeverReceived

from newswatch.crawler.fetch.addresses import AddressRefused
from newswatch.crawler.clock import Clock
from newswatch.crawler.parse.feeds import ParsedFeed
from newswatch.crawler.health import backoff_delay, freshness_floor, not_before, retry_after_seconds
from newswatch.crawler.sources import CrawlerConfig, SourceConfig
from newswatch.crawler.store import (HELD_BASELINE, HELD_TOO_OLD, FetchState, QuietSuccess, StorageError,
                                     StoryStore)
from newswatch.crawler.story import Story
from newswatch.crawler.urls import redact_url

log = logging.getLogger("newswatch.crawler")

ROBOTS_FORBIDDEN = "forbidden by robots.txt"
NEW_STORIES_KEPT = 500
"""A `CrawlSummary` keeps the first new stories for display; all of them are counted."""


@dataclass
class FetchOutcome:
    """What one request to one source produced. With `article` set, it is about one
    article page of the source, whose failure does not count against the source."""

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

    def __post_init__(self) -> None:  # what is stored, logged and shown never carries credentials
        self.error, self.note, self.article = redact_url(self.error), redact_url(self.note), redact_url(self.article)

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class CrawlSummary:
    """Counts for one pass; `new` holds the first `NEW_STORIES_KEPT` new stories."""

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
    too_old: int = 0  # new stories stored without alerting: published before alert_max_age
    baseline: int = 0  # new undated stories of a source's first fetch, stored without alerting
    first_fetch: set[str] = field(default_factory=set)  # sources fetched successfully for the first time

    def add_new(self, stories: list[Story], held: dict[str, str]) -> None:
        self.stories_new += len(stories)
        for story in stories:
            reason = held.get(story.id)
            self.too_old += reason == HELD_TOO_OLD
            self.baseline += reason == HELD_BASELINE
        room = NEW_STORIES_KEPT - len(self.new)
        if room > 0:
            self.new.extend(stories[:room])


def held_note(summary: CrawlSummary) -> str:
    """", 12 too old to alert, 3 undated on a first fetch" (or "") for a pass's summary line."""
    parts = []
    if summary.too_old:
        parts.append(f"{summary.too_old} too old to alert")
    if summary.baseline:
        parts.append(f"{summary.baseline} undated on a first fetch (not alerted)")
    return "".join(f", {p}" for p in parts)


def hold_reason(story: Story, fetched: Any, max_age: int, first_fetch: bool) -> str:
    """Why a new story may not alert ('' when it may): published more than `max_age` seconds
    before it was fetched, or undated on its source's first successful fetch."""
    if not story.dated:
        return HELD_BASELINE if first_fetch else ""
    return HELD_TOO_OLD if (fetched - story.published).total_seconds() > max_age else ""


def answered_outcome(
    source: SourceConfig, status: int, url: str, *, etag: str | None, last_modified: str | None,
    retry_after: str | bytes | None, now: Any, size: int = 0,
) -> FetchOutcome | None:
    """The outcome of a feed request answered 304 (unchanged) or with an error status; None
    for a 2xx, whose body is to be parsed."""
    if status == 304:
        return FetchOutcome(source, status=304, etag=etag, last_modified=last_modified)
    if 200 <= status < 300:
        return None
    wait = retry_after_seconds(retry_after, now) if status in (429, 503) else None
    return FetchOutcome(source, status=status, error=f"HTTP {status} from {redact_url(url)}", retry_after=wait,
                        bytes=size)


def parsed_outcome(
    source: SourceConfig, status: int, parsed: ParsedFeed, *, etag: str | None, last_modified: str | None,
    cache_control: str | bytes | None, size: int,
) -> FetchOutcome:
    """The outcome of a parsed feed document: its stories and validators, or, when nothing
    could be read from it, the parser's problem as the source's error."""
    if not parsed.stories and parsed.problem:
        return FetchOutcome(source, status=status, error=parsed.problem, bytes=size)
    return FetchOutcome(
        source, status=status, stories=parsed.stories, etag=etag, last_modified=last_modified,
        note=parsed.problem, bytes=size, fresh_for=freshness_floor(cache_control, parsed.ttl_seconds),
    )


OutcomeObserver = Callable[[FetchOutcome, list[Story]], None]
"""Told of every recorded outcome and the new stories it stored (metrics, progress display)."""


class OutcomeRecorder:
    """Persists fetch outcomes; tells `on_new_stories` right after each source's stories are
    stored, and each of `observers` after each outcome is recorded."""

    def __init__(
        self, store: StoryStore, clock: Clock, config: CrawlerConfig,
        on_new_stories: Callable[[str, list[Story]], None] | None = None,
        rng: random.Random | None = None, alert_max_age: int = 24 * 3600,
    ) -> None:
        self.alert_max_age = alert_max_age  # for sources that do not set their own
        self.store = store
        self.clock = clock
        self.config = config
        self.on_new_stories = on_new_stories
        self.rng = rng or random.Random()
        self.observers: list[OutcomeObserver] = []

    def conditional_headers(self, source: str) -> dict[str, str]:
        """If-None-Match / If-Modified-Since for the next request of a source, as stored."""
        return self.store.fetch_state(source).conditional_headers()

    def known_urls(self, urls: list[str], source: str) -> set[str]:
        """Those of `urls` already stored (article pages need not be fetched again)."""
        return self.store.known_urls(urls, source)

    def record(self, outcome: FetchOutcome, summary: CrawlSummary, state: FetchState | None = None) -> None:
        """Store an outcome and tell the observers. `state`: the source's fetch state as stored
        (read when needed if not given)."""
        self.tell(outcome, self._record(outcome, summary, state))

    def tell(self, outcome: FetchOutcome, new: list[Story]) -> None:
        """Tell each observer of a recorded outcome and the new stories it stored."""
        for observer in self.observers:
            try:
                observer(outcome, new)
            except Exception:
                log.exception("source %s: an outcome observer failed", outcome.source.name)

    def record_safely(self, outcome: FetchOutcome, summary: CrawlSummary, state: FetchState | None = None) -> None:
        """`record`, but a storage failure is one clear log line and a failed source, never an
        exception: the crawl goes on, and the source is fetched again next time."""
        try:
            self.record(outcome, summary, state)
        except StorageError as exc:  # disk full, database locked or damaged
            log.error("source %s: the database refused the fetch (%s: %s); nothing of it was kept, so it is "
                      "fetched again next time", outcome.source.name, type(exc).__name__, exc)
            summary.failed += 1
        except Exception:
            log.exception("source %s: could not store the fetch outcome", outcome.source.name)
            summary.failed += 1

    def quiet_success(self, outcome: FetchOutcome, summary: CrawlSummary, state: FetchState) -> QuietSuccess:
        """What `record` does for a success that stores no stories (`is_quiet`) up to the write,
        and the row it writes: the write itself, the counts and the observers come with
        `quiet_recorded` once the row is stored (`FeedPass` stores many in one transaction)."""
        now = self.clock.now()
        summary.bytes += outcome.bytes
        self._held(outcome, summary, now, state)
        return QuietSuccess(outcome.source.name, at=now, status=outcome.status or 0, etag=outcome.etag,
                            last_modified=outcome.last_modified, not_before=self._fresh_until(outcome, now),
                            note=outcome.note)

    def quiet_recorded(self, outcome: FetchOutcome, summary: CrawlSummary) -> None:
        """The rest of `record` for a success whose row (`quiet_success`) is stored."""
        self._count_success(outcome, summary, [], {})
        self.tell(outcome, [])

    def _record(self, outcome: FetchOutcome, summary: CrawlSummary, state: FetchState | None) -> list[Story]:
        now = self.clock.now()
        source = outcome.source
        summary.bytes += outcome.bytes
        if outcome.article:
            return self._record_page(outcome, summary)
        if outcome.ok:
            held = self._held(outcome, summary, now, state)
            new = self.store.record_success(
                source.name, at=now, status=outcome.status or 0, etag=outcome.etag,
                last_modified=outcome.last_modified, stories=outcome.stories,
                not_before=self._fresh_until(outcome, now), note=outcome.note, held=held,
            )
            self._count_success(outcome, summary, new, held)
            return new
        previous = (state if state is not None else self.store.fetch_state(source.name)).failures
        delay = backoff_delay(previous + 1, source.interval, self.config.failure_backoff_max, self.rng)
        if outcome.retry_after is not None:
            delay = max(delay, outcome.retry_after)
        failures = self.store.record_failure(
            source.name, at=now, status=outcome.status, error=outcome.error, not_before=not_before(now, delay)
        )
        summary.failed += 1
        summary.failures[source.name] = outcome.error
        wait = f"; next try in {delay:.0f}s" if delay else ""
        log.warning("source %s: %s (failure %d in a row%s) url=%s", source.name, outcome.error, failures, wait,
                    redact_url(" ".join(source.urls)))
        return []

    @staticmethod
    def _fresh_until(outcome: FetchOutcome, now: Any) -> Any:
        """Before when a successful source is not fetched again: its feed's freshness, when
        longer than its interval."""
        return not_before(now, outcome.fresh_for if outcome.fresh_for > outcome.source.interval else 0)

    def _count_success(self, outcome: FetchOutcome, summary: CrawlSummary, new: list[Story],
                       held: dict[str, str]) -> None:
        """A stored success in the summary (and the log), and its new stories told."""
        if outcome.status == 304:
            summary.not_modified += 1
        else:
            summary.ok += 1
        summary.stories_seen += len(outcome.stories)
        summary.add_new(new, held)
        if outcome.note:
            log.warning("source %s: %s", outcome.source.name, outcome.note)
        if new and self.on_new_stories:
            self.on_new_stories(outcome.source.name, new)

    def _record_page(self, outcome: FetchOutcome, summary: CrawlSummary) -> list[Story]:
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
            return []
        now = self.clock.now()
        held = self._held(outcome, summary, now)
        new = self.store.add_stories(outcome.stories, now, held, from_page=True)
        summary.stories_seen += len(outcome.stories)
        summary.add_new(new, held)
        if new and self.on_new_stories:
            self.on_new_stories(source.name, new)
        return new

    def _held(self, outcome: FetchOutcome, summary: CrawlSummary, now: Any,
              state: FetchState | None = None) -> dict[str, str]:
        """The stories of an outcome that may not alert, with the reason (`hold_reason`).
        A source's first fetch is one whose source had no successful fetch before this pass
        (`state`: its fetch state as stored, read here if not given)."""
        source = outcome.source
        if source.name not in summary.first_fetch and (
                state if state is not None else self.store.fetch_state(source.name)).last_success is None:
            summary.first_fetch.add(source.name)
        if not outcome.stories:
            return {}
        first = source.name in summary.first_fetch
        max_age = source.alert_max_age or self.alert_max_age
        return {s.id: reason for s in outcome.stories if (reason := hold_reason(s, now, max_age, first))}


QUIET_BATCH = 200
"""Successes without stories (`is_quiet`) a `FeedPass` records in one transaction, at most."""


def is_quiet(outcome: FetchOutcome) -> bool:
    """A success of a source that stores no stories: a 304, or a feed without items."""
    return outcome.ok and not outcome.article and not outcome.stories


class FeedPass:
    """The recording of one feed reader pass over `sources`, in few database round trips.

    The fetch states of all the sources are read in one query when the pass starts: the
    conditional headers of each request come from them (a source without one has no
    validators), and so does what recording needs of the stored state (a first fetch, the
    failures in a row). Successes that store no stories (`is_quiet`) are recorded `batch` to a
    transaction (`StoryStore.record_quiet_successes`, the same rows `record_success` writes),
    when `batch` are waiting and when the pass ends (`close`, before the pass returns, so that
    the summary and the database agree); their counts in the summary, their notes in the log and
    the observers follow once they are stored. Every other outcome is recorded at once, one
    transaction each (`OutcomeRecorder.record_safely`). A batch the database refuses is one log
    line and that many failed sources, never an exception; nothing of it is kept, so its sources
    are fetched again next time. A process that dies with a batch not yet recorded loses nothing
    either: those sources brought no stories, and are simply polled again next time.
    """

    def __init__(self, recorder: OutcomeRecorder, sources: Iterable[str], summary: CrawlSummary,
                 batch: int = QUIET_BATCH) -> None:
        self.recorder = recorder
        self.summary = summary
        self.batch = batch
        self.pending: list[tuple[FetchOutcome, QuietSuccess]] = []
        self._waiting: set[str] = set()  # the sources in `pending`
        self.closed = False
        self.states = self._read_states(list(sources))

    def _read_states(self, names: list[str]) -> dict[str, FetchState]:
        """Each source's stored fetch state (empty when it has none); {} when the query fails,
        and each source's is then read when it is needed, as outside a pass."""
        try:
            found = self.recorder.store.fetch_states(names)
        except StorageError as exc:
            log.warning("the fetch states of %d sources could not be read at once (%s: %s); each is read "
                        "when needed", len(names), type(exc).__name__, exc)
            return {}
        return {name: found.get(name) or FetchState(name) for name in names}

    def conditional_headers(self, source: str) -> dict[str, str]:
        """If-None-Match / If-Modified-Since for the request of a source, as stored."""
        if source in self._waiting:
            self.flush()
        state = self.states.get(source)
        return state.conditional_headers() if state is not None else self.recorder.conditional_headers(source)

    def record(self, outcome: FetchOutcome) -> None:
        """Record an outcome (now, or with the next batch); never raises."""
        name = outcome.source.name
        state = self.states.pop(name, None)  # used once: a source polled again reads what is stored
        if name in self._waiting:
            self.flush()
        if self.closed or state is None or not is_quiet(outcome):
            self.recorder.record_safely(outcome, self.summary, state)
            return
        self.pending.append((outcome, self.recorder.quiet_success(outcome, self.summary, state)))
        self._waiting.add(name)
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        """Record the waiting successes in one transaction; a failure is logged, never raised."""
        pending, self.pending = self.pending, []
        self._waiting.clear()
        if not pending:
            return
        try:
            self.recorder.store.record_quiet_successes([success for _, success in pending])
        except Exception as exc:
            names = [outcome.source.name for outcome, _ in pending]
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            log.error("sources %s: the database refused %d fetches without new stories (%s: %s); nothing of them "
                      "was kept, so they are fetched again next time", shown, len(names), type(exc).__name__, exc,
                      exc_info=not isinstance(exc, StorageError))
            self.summary.failed += len(pending)
            return
        for outcome, _ in pending:
            self.recorder.quiet_recorded(outcome, self.summary)

    def close(self) -> None:
        """End the pass: the waiting successes are recorded, and any outcome after it at once."""
        self.flush()
        self.closed = True


class ResponseTooLarge(ValueError):
    """A response refused past its size cap; `str()` is the whole description."""


class RobotsForbidden(IgnoreRequest):
    """A request robots.txt forbids (raised by the crawls' robots.txt middleware)."""


class RedirectLimitReached(IgnoreRequest):
    """A request whose redirects went past the limit (raised by the crawls' redirect middleware)."""


# Classes of fetch failures, whichever client raised them: aiohttp (the feed reader, and under
# Scrapy 2.19's asyncio download handler, which re-raises them as Scrapy's exceptions `from`
# the original) and Twisted (Scrapy's Twisted download handlers).
_DNS = (CannotResolveHostError, TxDNSLookupError, socket.gaierror)
_TIMEOUTS = (TimeoutError, DownloadTimeoutError, TxTimeoutError)  # aiohttp.ServerTimeoutError is a TimeoutError
_REFUSED = (DownloadConnectionRefusedError, TxConnectionRefusedError, ConnectionRefusedError)
_CUT_SHORT = (aiohttp.ClientPayloadError, ResponseDataLossError)


def _too_large(exc: BaseException, text: str) -> str | None:
    if isinstance(exc, ResponseTooLarge):
        return text
    # Scrapy cancels a download past `download_maxsize` with DownloadCancelledError of its own;
    # one raised from Twisted's CancelledError is a cancellation, not a size
    return f"response too large ({text})" if exc.__cause__ is None else "download cancelled"


def _dns(exc: BaseException, text: str) -> str:
    """The host from aiohttp's error, or from the text of Scrapy's or Twisted's."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        host = exc.host
    else:
        host = next(iter(re.findall(r"(?:host|lookup:) ([^\s:\[]+?)\.*(?=[\s:]|$)", text)), "the host")
    return f"DNS lookup failed for {host} (no such host, or no network)"


def _redirects(exc: BaseException, text: str) -> str:
    assert isinstance(exc, aiohttp.TooManyRedirects)
    followed = max(len(exc.history) - 1, 0)  # the history ends with the redirect that was not followed
    last = redact_url(str(exc.request_info.real_url))
    return f"too many redirects, or a redirect loop (more than {followed}, last to {last})"


def _cannot_connect(exc: BaseException, text: str) -> str:
    assert isinstance(exc, aiohttp.ClientConnectorError)
    if isinstance(exc.os_error, ConnectionRefusedError):
        return f"connection refused by {exc.host}:{exc.port}"
    return f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or exc.os_error})"


Describe = Callable[[BaseException, str], "str | None"]
_RULES: tuple[tuple[type | tuple[type, ...], Describe], ...] = (
    (AddressRefused, lambda exc, text: text),  # the address policy's own explanation
    ((ResponseTooLarge, DownloadCancelledError), _too_large),
    (aiohttp.ClientConnectorDNSError, _dns),  # before Scrapy's wrapper of it: it names the host
    (_DNS, _dns),
    (aiohttp.TooManyRedirects, _redirects),
    (RedirectLimitReached, lambda exc, text: f"too many redirects, or a redirect loop ({text})"),
    (RobotsForbidden, lambda exc, text: ROBOTS_FORBIDDEN),
    (_TIMEOUTS, lambda exc, text: f"timed out ({text})"),
    (aiohttp.ClientConnectorError, _cannot_connect),  # before Scrapy's wrapper of it: host, port, reason
    (_REFUSED, lambda exc, text: f"connection refused ({text})"),
    (_CUT_SHORT, lambda exc, text: f"response cut short ({text})"),
    (ResponseNeverReceived, lambda exc, text: "connection closed before a response"),  # its text: tracebacks
)


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from, outermost first."""
    chain: list[BaseException] = []
    while exc is not None and all(exc is not seen for seen in chain) and len(chain) < 8:
        chain.append(exc)
        exc = exc.__cause__  # type: ignore[assignment]
    return chain


def describe_error(exc: BaseException) -> str:
    """A short, precise description of a download failure (no traceback, no credentials),
    found by the failure's class (`_RULES`, first match wins), or that of the exception it
    was raised from: Scrapy wraps the errors of aiohttp and Twisted in its own."""
    chain = _chain(exc)
    for kinds, describe in _RULES:
        for cause in chain:
            if isinstance(cause, kinds):
                said = describe(cause, redact_url(str(cause).strip()) or type(cause).__name__)
                if said is not None:
                    return said
    name, text = type(exc).__name__, redact_url(str(exc).strip())
    return f"{name}: {text}" if text else name


def describe_failure(failure: Any) -> str:
    """`describe_error` for a Twisted/Scrapy failure."""
    return describe_error(failure.value)
