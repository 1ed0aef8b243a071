"""What the daemon counts, in the Prometheus format (served at `/metrics`).

One `Metrics` per daemon, each with its own `CollectorRegistry` (never the library's global
one), so several daemons in one process — tests — do not share counts. It is handed to the
parts it observes: the crawler's `OutcomeRecorder` calls `fetched()` after each outcome, the
`Notifier` calls `delivery()`, and the daemon reports each crawl and dispatch pass. Values
that live in the database (the outbox depth) or in the notifier are read when scraped.

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
from datetime import datetime
from importlib import metadata

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from alerts.dispatch import DispatchSummary
from alerts.notifier import Notifier
from alerts.outbox import Outbox
from crawler.fetch import CrawlSummary, FetchOutcome
from crawler.store import StoryStore
from crawler.story import Story

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
        self.fetches = Counter("newswatch_fetches", "Requests to sources, by HTTP status (\"error\": no response).",
                               ["source", "status"], registry=r)
        self.not_modified = Counter("newswatch_fetch_not_modified", "304 Not Modified answers to conditional GETs.",
                                    ["source"], registry=r)
        self.bytes = Counter("newswatch_fetch_bytes", "Body bytes received from a source (after decompression).",
                             ["source"], registry=r)
        self.article_fetches = Counter("newswatch_article_fetches", "Article pages fetched for their full text, by HTTP status.",
                                       ["source", "status"], registry=r)
        self.parse_errors = Counter("newswatch_parse_errors", "2xx documents that could not be parsed cleanly.",
                                    ["source"], registry=r)
        self.stories = Counter("newswatch_stories_stored", "New stories stored (duplicates are not counted).",
                               ["source"], registry=r)
        self.last_success = Gauge("newswatch_source_last_success_timestamp_seconds",
                                  "When a source last answered with a usable document or a 304.", ["source"], registry=r)
        self.failures = Gauge("newswatch_source_consecutive_failures", "Failed fetches of a source since its last success.",
                              ["source"], registry=r)
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
            for counter in (self.not_modified, self.bytes, self.parse_errors, self.stories):
                counter.labels(name)
            state = states.get(name)
            self.failures.labels(name).set(state.failures if state else 0)
            if state and state.last_success:
                self.last_success.labels(name).set(state.last_success.timestamp())
        for topic in topics:
            self.matches.labels(topic)

    def watch(self, outbox: Outbox, notifier: Notifier) -> None:
        """Read the outbox depth and the notifier's state on every scrape."""
        self.registry.register(_DeliveryState(outbox, notifier))

    # -- observers ---------------------------------------------------------------------------------
    def fetched(self, outcome: FetchOutcome, new: list[Story]) -> None:
        """An `OutcomeRecorder` observer: one fetch outcome and the new stories it stored."""
        name = outcome.source.name
        status = str(outcome.status) if outcome.status else "error"
        self.bytes.labels(name).inc(outcome.bytes)
        if new:
            self.stories.labels(name).inc(len(new))
        if outcome.article:
            self.article_fetches.labels(name, status).inc()
            return
        self.fetches.labels(name, status).inc()
        if outcome.status == 304:
            self.not_modified.labels(name).inc()
        if outcome.status and 200 <= outcome.status < 300 and (outcome.error or outcome.note):
            self.parse_errors.labels(name).inc()
        if outcome.ok:
            self.last_success.labels(name).set(time.time())
            self.failures.labels(name).set(0)
        else:
            self.failures.labels(name).inc()

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


class _DeliveryState:
    """Gauges read at scrape time from the outbox and the notifier."""

    def __init__(self, outbox: Outbox, notifier: Notifier) -> None:
        self.outbox = outbox
        self.notifier = notifier

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        depth, oldest = self.outbox.conn.execute(
            "SELECT COUNT(*), MIN(created) FROM outbox WHERE state = 'pending'"
        ).fetchone()
        yield GaugeMetricFamily("newswatch_outbox_depth", "Alerts waiting to be delivered.", value=depth)
        age = 0.0
        if oldest:
            age = max(0.0, (self.notifier.clock.now() - datetime.fromisoformat(oldest)).total_seconds())
        yield GaugeMetricFamily("newswatch_outbox_oldest_pending_seconds",
                                "Age of the oldest alert waiting to be delivered (0 when none waits).", value=age)
        yield GaugeMetricFamily("newswatch_notifier_in_flight", "Sends waiting for an answer.",
                                value=len(self.notifier.in_flight))
        yield GaugeMetricFamily("newswatch_notifier_last_progress_timestamp_seconds",
                                "When the notifier last delivered an alert (or started).",
                                value=self.notifier.last_progress.timestamp())
