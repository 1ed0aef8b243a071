"""What the daemon counts, in the Prometheus format (served at `/metrics`).

One `Metrics` per daemon, each with its own `CollectorRegistry` (never the library's global
one), so several daemons in one process — tests — do not share counts. It is handed to the
parts it observes: the crawler's `OutcomeRecorder` calls `fetched()` after each outcome, the
`Notifier` calls `delivery()`, and the daemon reports each crawl and dispatch pass. Values
that live in the database (the outbox depth) or in the notifier are read when scraped.
The per-source series are plain numbers in one collector (`_SourceSeries`), not library
metric objects: at 10,000 sources those would hold 70,000 children and some 50 MB.

    newswatch_fetches_total{source,status}        requests to a source; status is the HTTP code, "error" without one
    newswatch_fetch_not_modified_total{source}    304 answers (nothing downloaded or parsed)
    newswatch_fetch_bytes_total{source}           body bytes received (feeds, listings and article pages)
    newswatch_article_fetches_total{source,status} article pages fetched for full text
    newswatch_parse_errors_total{source}          2xx documents that could not be parsed cleanly
    newswatch_stories_stored_total{source}        new stories stored (duplicates are not counted)
    newswatch_source_last_success_timestamp_seconds{source}
    newswatch_source_consecutive_failures{source}
    newswatch_matches_total{topic}                stories that passed a topic's threshold
    newswatch_alerts_queued_total                 alerts written to the outbox
    newswatch_alerts_sent_total / _failed_total / _dropped_total / _muted_total
    newswatch_delivery_retries_total              sends postponed after an error (network, 5xx)
    newswatch_telegram_429_total                  sends refused by Telegram's flood control
    newswatch_outbox_depth                        alerts waiting to be delivered
    newswatch_outbox_oldest_pending_seconds       age of the oldest of them
    newswatch_notifier_in_flight                  sends waiting for Telegram's answer
    newswatch_notifier_last_progress_timestamp_seconds
    newswatch_crawl_cycle_seconds                 histogram of crawl pass durations
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from importlib import metadata

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from newswatch.alerts.dispatch import DispatchSummary
from newswatch.alerts.deliver.notifier import Notifier
from newswatch.alerts.deliver.outbox import Outbox
from newswatch.crawler.outcomes import CrawlSummary, FetchOutcome
from newswatch.crawler.store import StoryStore
from newswatch.crawler.story import Story

CYCLE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


def _version() -> str:
    try:
        return metadata.version("newswatch")
    except metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        info = Gauge("newswatch_info", "The running newswatch version (always 1).", ["version"], registry=r)
        info.labels(_version()).set(1)
        self.sources = _SourceSeries()
        r.register(self.sources)
        self.matches = Counter("newswatch_matches", "Stories that passed a topic's threshold.", ["topic"], registry=r)
        self.queued = Counter("newswatch_alerts_queued", "Alerts written to the outbox.", registry=r)
        self.sent = Counter("newswatch_alerts_sent", "Alerts delivered.", registry=r)
        self.failed = Counter("newswatch_alerts_failed", "Alerts refused for good (Telegram rejected the message).", registry=r)
        self.dropped = Counter("newswatch_alerts_dropped", "Alerts dropped because their chat is gone.", registry=r)
        self.muted = Counter("newswatch_alerts_muted", "Alerts skipped because their chat was muted.", registry=r)
        self.retries = Counter("newswatch_delivery_retries", "Sends postponed after an error (network, 5xx, timeout).", registry=r)
        self.flood = Counter("newswatch_telegram_429", "Sends refused by Telegram's flood control (HTTP 429).", registry=r)
        self.cycle = Histogram("newswatch_crawl_cycle_seconds", "Duration of one crawl pass over the due sources.",
                               buckets=CYCLE_BUCKETS, registry=r)

    # -- set-up ------------------------------------------------------------------------------------
    def known(self, sources: Iterable[str], topics: Iterable[str], store: StoryStore | None = None) -> None:
        """Create the series of every source and topic at zero (so rates work from the start) and
        take each source's last success and failure count from the database."""
        states = store.all_fetch_states() if store is not None else {}
        for name in sources:
            series = self.sources.of(name)
            state = states.get(name)
            if state:
                series.failures = state.failures
                series.last_success = state.last_success.timestamp() if state.last_success else None
        for topic in topics:
            self.matches.labels(topic)

    def watch(self, outbox: Outbox, notifier: Notifier) -> None:
        """Read the outbox depth and the notifier's state on every scrape."""
        self.registry.register(_DeliveryState(outbox, notifier))

    # -- observers ---------------------------------------------------------------------------------
    def fetched(self, outcome: FetchOutcome, new: list[Story]) -> None:
        """An `OutcomeRecorder` observer: one fetch outcome and the new stories it stored."""
        series = self.sources.of(outcome.source.name)
        status = str(outcome.status) if outcome.status else "error"
        series.bytes += outcome.bytes
        series.stories += len(new)
        if outcome.article:
            series.article_fetches[status] = series.article_fetches.get(status, 0) + 1
            return
        series.fetches[status] = series.fetches.get(status, 0) + 1
        if outcome.status == 304:
            series.not_modified += 1
        if outcome.status and 200 <= outcome.status < 300 and (outcome.error or outcome.note):
            series.parse_errors += 1
        if outcome.ok:
            series.last_success = time.time()
            series.failures = 0
        else:
            series.failures += 1

    def crawled(self, summary: CrawlSummary) -> None:
        self.cycle.observe(summary.seconds)

    def dispatched(self, summary: DispatchSummary) -> None:
        for topic, count in summary.topics.items():
            self.matches.labels(topic).inc(count)
        if summary.queued:
            self.queued.inc(summary.queued)

    def delivery(self, outcome: str, chat_id: int, count: int) -> None:
        """A `Notifier` observer."""
        counter = {"sent": self.sent, "failed": self.failed, "dropped": self.dropped, "muted": self.muted,
                   "retried": self.retries, "flood": self.flood}.get(outcome)
        if counter is not None:
            counter.inc(count)


class _Source:
    """One source's counts."""

    __slots__ = ("fetches", "article_fetches", "not_modified", "bytes", "parse_errors", "stories",
                 "last_success", "failures")

    def __init__(self) -> None:
        self.fetches: dict[str, int] = {}
        self.article_fetches: dict[str, int] = {}
        self.not_modified = self.bytes = self.parse_errors = self.stories = self.failures = 0
        self.last_success: float | None = None


class _SourceSeries:
    """The per-source series, kept as plain numbers and turned into metrics when scraped."""

    def __init__(self) -> None:
        self._sources: dict[str, _Source] = {}

    def of(self, name: str) -> _Source:
        series = self._sources.get(name)
        if series is None:
            series = self._sources[name] = _Source()
        return series

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        fetches = CounterMetricFamily("newswatch_fetches", "Requests to sources, by HTTP status (\"error\": no response).",
                                      labels=["source", "status"])
        articles = CounterMetricFamily("newswatch_article_fetches",
                                       "Article pages fetched for their full text, by HTTP status.", labels=["source", "status"])
        not_modified = CounterMetricFamily("newswatch_fetch_not_modified", "304 Not Modified answers to conditional GETs.",
                                           labels=["source"])
        received = CounterMetricFamily("newswatch_fetch_bytes", "Body bytes received from a source (after decompression).",
                                       labels=["source"])
        parse_errors = CounterMetricFamily("newswatch_parse_errors", "2xx documents that could not be parsed cleanly.",
                                           labels=["source"])
        stories = CounterMetricFamily("newswatch_stories_stored", "New stories stored (duplicates are not counted).",
                                      labels=["source"])
        last_success = GaugeMetricFamily("newswatch_source_last_success_timestamp_seconds",
                                         "When a source last answered with a usable document or a 304.", labels=["source"])
        failures = GaugeMetricFamily("newswatch_source_consecutive_failures",
                                     "Failed fetches of a source since its last success.", labels=["source"])
        for name, s in self._sources.items():
            for status, count in s.fetches.items():
                fetches.add_metric([name, status], count)
            for status, count in s.article_fetches.items():
                articles.add_metric([name, status], count)
            not_modified.add_metric([name], s.not_modified)
            received.add_metric([name], s.bytes)
            parse_errors.add_metric([name], s.parse_errors)
            stories.add_metric([name], s.stories)
            failures.add_metric([name], s.failures)
            if s.last_success is not None:
                last_success.add_metric([name], s.last_success)
        yield from (fetches, articles, not_modified, received, parse_errors, stories, last_success, failures)


class _DeliveryState:
    """Gauges read at scrape time from the outbox and the notifier."""

    def __init__(self, outbox: Outbox, notifier: Notifier) -> None:
        self.outbox = outbox
        self.notifier = notifier

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        depth, oldest = self.outbox.depth()
        yield GaugeMetricFamily("newswatch_outbox_depth", "Alerts waiting to be delivered.", value=depth)
        age = 0.0
        if oldest:
            age = max(0.0, (self.notifier.clock.now() - oldest).total_seconds())
        yield GaugeMetricFamily("newswatch_outbox_oldest_pending_seconds",
                                "Age of the oldest alert waiting to be delivered (0 when none waits).", value=age)
        yield GaugeMetricFamily("newswatch_notifier_in_flight", "Sends waiting for an answer.",
                                value=len(self.notifier.in_flight))
        yield GaugeMetricFamily("newswatch_notifier_last_progress_timestamp_seconds",
                                "When the notifier last delivered an alert (or started).",
                                value=self.notifier.last_progress.timestamp())
