"""The service's pieces without sockets: the `http:` config, the counters, "stuck" delivery, /healthz's checks."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from newswatch.alerts.config import ConfigError, parse_config
from newswatch.alerts.dispatch import DispatchSummary
from newswatch.heartbeat import Heartbeat
from newswatch.http_api import Health
from newswatch.metrics import Metrics
from newswatch.alerts.deliver.notifier import ConsoleSink, Notifier, RetryLater
from newswatch.alerts.deliver.outbox import Outbox
from newswatch.alerts.service_config import HttpConfig, split_listen
from newswatch.alerts.subscriptions import Subscriptions
from newswatch.crawler.clock import ManualClock
from newswatch.crawler.outcomes import CrawlSummary, FetchOutcome
from newswatch.crawler.sources import SourceConfig
from newswatch.storage import open_storage
from newswatch.crawler.story import Story, story_id

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TOPICS = "topics:\n  t:\n    description: A topic.\n    groups:\n      g: {weight: 1, terms: [x]}\n    threshold: 1\n"
WIRE = SourceConfig(name="wire", url="https://wire.example.com/rss")


@pytest.mark.parametrize("listen, expected", [
    ("127.0.0.1:9108", ("127.0.0.1", 9108)),
    ("0.0.0.0:80", ("0.0.0.0", 80)),
    (":9108", ("0.0.0.0", 9108)),
    ("[::1]:9108", ("::1", 9108)),
    ("localhost:9200", ("localhost", 9200)),
])
def test_split_listen(listen: str, expected: tuple[str, int]) -> None:
    assert split_listen(listen) == expected


@pytest.mark.parametrize("yaml_text, problem", [
    ("http:\n  listen: 9108\n", "http.listen: must be text"),
    ("http:\n  listen: \"example.com:9108\"\n", "http.listen: the host must be an IP address"),
    ("http:\n  listen: \"127.0.0.1:99999\"\n", "http.listen: the port must be a number from 1 to 65535"),
    ("http:\n  listen: \"::1:9108\"\n", "IPv6 in brackets"),
    ("http:\n  stuck_after: never\n", "http.stuck_after: must be a duration"),
    ("http:\n  port: 9108\n", "http.port: unknown key"),
])
def test_http_config_problems_name_the_field(yaml_text: str, problem: str) -> None:
    base = TOPICS
    with pytest.raises(ConfigError) as info:
        parse_config(base + yaml_text, "nw.yaml", base_dir=Path("."))
    assert problem in str(info.value)


def test_http_section_is_optional() -> None:
    base = TOPICS
    assert parse_config(base, "nw.yaml", base_dir=Path(".")).http is None
    config = parse_config(base + "http: {listen: \"127.0.0.1:9300\", stuck_after: 5m}\n", "nw.yaml", base_dir=Path("."))
    assert config.http == HttpConfig(listen="127.0.0.1:9300", stuck_after=300)


def samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _story(n: int) -> Story:
    url = f"https://wire.example.com/{n}"
    return Story(id=story_id("wire", url, ""), source="wire", url=url, title=f"story {n}", text="x", published=T0)


def test_fetch_outcomes_are_counted_per_source_and_status() -> None:
    metrics = Metrics()
    metrics.known(["wire", "quiet"], ["summit"])
    metrics.fetched(FetchOutcome(WIRE, status=200, stories=[_story(1), _story(2)], bytes=1500), [_story(1)])
    metrics.fetched(FetchOutcome(WIRE, status=304), [])
    metrics.fetched(FetchOutcome(WIRE, status=200, error="not a feed: HTML page", bytes=300), [])
    metrics.fetched(FetchOutcome(WIRE, error="timed out (30s)"), [])
    metrics.fetched(FetchOutcome(WIRE, status=200, stories=[_story(3)], bytes=900, article="https://wire.example.com/3"),
                    [_story(3)])
    metrics.crawled(CrawlSummary(seconds=0.7))
    metrics.dispatched(DispatchSummary(stories=2, matched=1, queued=3, topics={"summit": 1}))
    for outcome, count in (("sent", 2), ("flood", 1), ("retried", 1), ("failed", 1), ("dropped", 4), ("muted", 1)):
        metrics.delivery(outcome, 7, count)
    s = samples(metrics)

    def v(name: str, **labels: str) -> float:
        return s[(name, tuple(sorted(labels.items())))]

    assert v("newswatch_fetches_total", source="wire", status="200") == 2
    assert v("newswatch_fetches_total", source="wire", status="304") == 1
    assert v("newswatch_fetches_total", source="wire", status="error") == 1
    assert v("newswatch_article_fetches_total", source="wire", status="200") == 1
    assert v("newswatch_fetch_not_modified_total", source="wire") == 1
    assert v("newswatch_parse_errors_total", source="wire") == 1
    assert v("newswatch_fetch_bytes_total", source="wire") == 2700
    assert v("newswatch_stories_stored_total", source="wire") == 2
    assert v("newswatch_stories_stored_total", source="quiet") == 0  # known sources start at zero
    assert v("newswatch_source_consecutive_failures", source="wire") == 2
    assert v("newswatch_matches_total", topic="summit") == 1
    assert v("newswatch_alerts_queued_total") == 3
    assert v("newswatch_alerts_sent_total") == 2
    assert v("newswatch_telegram_429_total") == 1
    assert v("newswatch_delivery_retries_total") == 1
    assert v("newswatch_alerts_failed_total") == 1
    assert v("newswatch_alerts_dropped_total") == 4
    assert v("newswatch_crawl_cycle_seconds_count") == 1
    assert v("newswatch_crawl_cycle_seconds_bucket", le="1.0") == 1

    other = Metrics()  # its own registry: nothing shared with the first
    assert ("newswatch_alerts_sent_total", ()) in samples(other)
    assert samples(other)[("newswatch_alerts_sent_total", ())] == 0


class Hanging:
    """A sink whose sends wait until released, or fail as told."""

    available = True

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def send(self, chat_id, thread_id, view, tz) -> int:
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return 1

    async def send_digest(self, chat_id, thread_id, views, tz, title) -> int:
        return await self.send(chat_id, thread_id, views[0], tz)


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = ManualClock(T0)
        self.db = open_storage(tmp_path / "db.sqlite")
        self.store = self.db.stories
        self.outbox = Outbox(self.db.alerts)
        self.subs = Subscriptions(self.db.alerts)
        self.sink = Hanging()
        self.metrics = Metrics()
        self.notifier = Notifier(self.outbox, self.store, self.subs, self.clock, self.sink,
                                 ConsoleSink(io.StringIO()), observer=self.metrics)
        self.metrics.watch(self.outbox, self.notifier)
        self.subs.start(7, ["summit"], now=T0)
        self.n = 0

    def queue(self) -> None:
        self.n += 1
        story = _story(self.n)
        self.store.add_stories([story], self.clock.now())
        self.outbox.enqueue(7, story.id, [("summit", 8.0)], ["summit"], self.clock.now())


class Scheduler:
    running = True

    def get_jobs(self) -> list:
        return [object(), object()]


def test_a_hanging_send_makes_delivery_stuck_until_it_answers(tmp_path) -> None:
    s = Setup(tmp_path)
    health = Health(store=s.store, outbox=s.outbox, notifier=s.notifier, scheduler=lambda: Scheduler(),
                    sources=lambda: [WIRE], stuck_after=60)

    async def scenario() -> None:
        assert health.check()[0]
        s.queue()
        delivering = asyncio.create_task(s.notifier.deliver_due())
        while not s.notifier.in_flight:
            await asyncio.sleep(0)
        assert len(s.notifier.in_flight) == 1
        s.clock.advance(59)
        assert s.notifier.stuck(60) == "" and health.check()[0]
        s.clock.advance(2)
        assert "waiting for an answer for 61s" in s.notifier.stuck(60)
        healthy, body = health.check()
        assert not healthy and body["status"] == "unhealthy"
        assert "stuck" in body["checks"]["notifier"]["problem"]
        assert body["checks"]["scheduler"] == {"ok": True, "jobs": 2}
        assert body["checks"]["database"]["ok"] and body["checks"]["database"]["outbox_pending"] == 1
        gauges = samples(s.metrics)
        assert gauges[("newswatch_notifier_in_flight", ())] == 1
        assert gauges[("newswatch_outbox_depth", ())] == 1
        assert gauges[("newswatch_outbox_oldest_pending_seconds", ())] == 61
        s.sink.release.set()
        assert (await delivering).sent == 1
        assert s.notifier.stuck(60) == "" and health.check()[0]
        assert samples(s.metrics)[("newswatch_alerts_sent_total", ())] == 1

    asyncio.run(scenario())


def test_failing_sends_make_delivery_stuck_but_flood_control_does_not(tmp_path) -> None:
    s = Setup(tmp_path)
    s.sink.release.set()

    async def scenario() -> None:
        s.sink.fail = RetryLater(2, "Telegram flood control: retry after 2", count_attempt=False, flood=True)
        s.queue()
        await s.notifier.deliver_due()
        s.clock.advance(600)
        assert s.notifier.stuck(60) == ""  # Telegram answers; we are only too fast

        s.sink.fail = RetryLater(None, "Telegram unreachable: TimedOut")
        await s.notifier.deliver_due()
        failing_since = s.notifier.failing_since
        assert failing_since == s.clock.now()
        s.clock.advance(30)
        await s.notifier.deliver_due()  # not due yet (backoff), nothing changes
        s.clock.advance(40)
        assert "failing for 70s" in s.notifier.stuck(60)
        s.sink.fail = None
        s.clock.advance(3600)
        assert (await s.notifier.deliver_due()).sent == 1
        assert s.notifier.failing_since is None and s.notifier.stuck(60) == ""
        counts = samples(s.metrics)
        assert counts[("newswatch_telegram_429_total", ())] == 1
        assert counts[("newswatch_delivery_retries_total", ())] >= 1
        assert counts[("newswatch_alerts_sent_total", ())] == 1

    asyncio.run(scenario())


def test_health_names_a_scheduler_that_has_not_started(tmp_path) -> None:
    s = Setup(tmp_path)
    health = Health(store=s.store, outbox=s.outbox, notifier=s.notifier, scheduler=lambda: None,
                    sources=lambda: [WIRE], stuck_after=60)
    healthy, body = health.check()
    assert not healthy
    assert "has not started" in body["checks"]["scheduler"]["problem"]
    assert body["sources"] == {"polled": 1, "failing": []}
    s.store.record_failure("wire", at=T0, status=503, error="HTTP 503", not_before=None)
    assert health.check()[1]["sources"]["failing"] == ["wire"]
    s.db.close()
    healthy, body = Health(store=s.store, outbox=s.outbox, notifier=s.notifier, scheduler=lambda: Scheduler(),
                           sources=lambda: [WIRE], stuck_after=60).check()
    assert not healthy and "does not answer" in body["checks"]["database"]["problem"]
    assert "sources" not in body
    assert T0 + timedelta(0) == s.notifier.last_progress


def test_health_fails_on_refused_writes_a_stale_heartbeat_and_stuck_alerts(tmp_path) -> None:
    s = Setup(tmp_path)
    heartbeat = Heartbeat(s.store, s.clock, every=5, stale_after=30)
    health = Health(store=s.store, outbox=s.outbox, notifier=s.notifier, scheduler=lambda: Scheduler(),
                    sources=lambda: [WIRE], stuck_after=60, heartbeat=heartbeat)
    heartbeat.beat()
    s.queue()
    healthy, body = health.check()
    assert healthy and body["checks"]["outbox"] == {"ok": True, "pending": 1, "oldest_pending_seconds": 0,
                                                    "stuck": 0}
    assert body["checks"]["database"]["last_write"] == T0.isoformat()
    s.clock.advance(31)
    healthy, body = health.check()
    assert not healthy and "no database write for 31s" in body["checks"]["database"]["problem"]
    heartbeat.beat()
    s.clock.advance(30)  # the alert has waited 61s, and nothing sends it
    heartbeat.beat()
    healthy, body = health.check()
    assert not healthy and body["checks"]["database"]["ok"]
    assert body["checks"]["outbox"]["stuck"] == 1 and "1 chat with an alert overdue" in body["checks"]["outbox"]["problem"]
    s.sink.available = False  # the Bot API cannot be reached: the alert waits for it, it is not stuck
    assert health.check()[0]


def test_health_of_a_role_process_checks_what_its_role_does(tmp_path) -> None:
    s = Setup(tmp_path)
    standing_by = [True]
    dispatcher = Health(store=s.store, outbox=s.outbox, notifier=s.notifier, scheduler=lambda: None,
                        sources=lambda: [WIRE], stuck_after=60, roles=("dispatch",), standing_by=lambda: standing_by[0])
    healthy, body = dispatcher.check()
    assert healthy and list(body["checks"]) == ["database"]  # no scheduler: workers have it
    assert body["roles"] == ["dispatch"] and body["standby"] is True
    bot = Health(store=s.store, outbox=s.outbox, notifier=s.notifier, scheduler=lambda: None,
                 sources=lambda: [WIRE], stuck_after=60, roles=("bot",))
    assert list(bot.check()[1]["checks"]) == ["database", "notifier", "outbox"]
    worker = Health(store=s.store, outbox=s.outbox, notifier=s.notifier, scheduler=lambda: None,
                    sources=lambda: [WIRE], stuck_after=60, roles=("worker",))
    healthy, body = worker.check()
    assert not healthy and "has not started" in body["checks"]["scheduler"]["problem"]
    assert "outbox" not in body["checks"]
