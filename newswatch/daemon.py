"""The long-running daemon: wires config, crawler, dispatcher, notifier and bot in one loop.

Data flows one way: APScheduler marks each source due at its interval -> the crawl task
fetches every due source in one Scrapy crawl and stores new stories -> the dispatch task
scores them and queues alerts in the outbox -> the notify task delivers them. Each stage
wakes the next with an event, and each picks up from the database after a restart, so a
crash at any point loses and repeats nothing. SIGTERM/SIGINT stop it cleanly.

The stages are three roles, each its set of loops over the same storage: the worker (schedule
and crawl), the dispatcher (match, cluster, queue; also the learn task) and the bot (Telegram
commands and the notify loop). `newswatch run` runs all three in one process; `newswatch
worker`, `dispatch` and `bot` run one each, and then each stage also looks at the database every
`OTHERS_POLL` seconds for the work the other processes left, the worker every `SOURCES_POLL`
seconds for sources changed from the chat. A role process that is given a `Leadership` (see
`newswatch.leadership`; `run` on PostgreSQL too) stands by until it holds its role's lock; when
it loses a PostgreSQL lock (its connection ended) it stops its work and stands by again, when it
loses a lock file it stops.

Scores come from the topics' rules blended with the model `newswatch train` wrote
(`model.path`, `model.blend`), loaded at start and again on SIGHUP. With
`model.retrain_after_votes` > 0 the learn task trains the model again in a worker thread once
that many votes were given since it was made, writes it and swaps it in.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

from aiohttp.abc import AbstractResolver
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from newswatch.alerts.bot.core import BotCommands
from newswatch.alerts.config import ConfigError, NewswatchConfig, address_policy, load_config
from newswatch.alerts.dispatch import Dispatcher, DispatchSummary
from newswatch.alerts.feedback import Votes
from newswatch.alerts.deliver.format import plural
from newswatch.heartbeat import Heartbeat
from newswatch.leadership import BOT, DISPATCH, ROLES, WORKER, FileLeadership, Leadership, keep, lead
from newswatch.alerts.bot.history import History
from newswatch.alerts.match.blended import BlendedMatcher
from newswatch.alerts.match.matcher import Matcher
from newswatch.alerts.model_file import load_model, train, training_rows, write_model
from newswatch.metrics import Metrics
from newswatch.alerts.deliver.notifier import TELEGRAM_DOWN_KEY, TELEGRAM_PROBLEM_KEY, ConsoleSink, DeliverySummary, Notifier
from newswatch.alerts.deliver.outbox import Outbox
from newswatch.alerts.runtime_sources import RuntimeSources
from newswatch.alerts.story_clusters import StoryClusters
from newswatch.alerts.subscriptions import Subscriptions
from newswatch.alerts.match.watches import Watches
from newswatch.crawler.fetch.addresses import AddressPolicy
from newswatch.crawler.clock import Clock, SystemClock
from newswatch.crawler.fetch.engine import Crawler
from newswatch.crawler.leases import BUSY_RETRY, REST_SHARE, SingleWorkerLeases, SourceLeases, host_of
from newswatch.crawler.outcomes import CrawlSummary, OutcomeRecorder, held_note
from newswatch.crawler.sources import SourceConfig
from newswatch.crawler.store import DatabaseUnreachable, InstanceLock, StorageError, db_time
from newswatch.storage import open_storage

log = logging.getLogger("newswatch")

STARTUP_SPREAD = 5.0  # seconds over which the first polls are spread
MAX_CONCURRENT_CRAWLS = 3
SHUTDOWN_GRACE = 10.0
DISPATCH_STEP = 50  # stories matched per transaction between turns of the event loop
DB_RETRY = 5.0  # seconds before retrying after the database refused a write (disk full, locked)
DB_BUSY_TIMEOUT = 0.25  # seconds a write on the event loop waits for another process's lock
LEARN_CHECK = 5.0  # seconds between looks at the votes, when model.retrain_after_votes is set
OTHERS_POLL = 1.0  # seconds between looks at the database for another role process's work
SOURCES_POLL = 5.0  # seconds between a worker's looks at the sources changed from the chat


@dataclass
class CycleReport:
    crawl: CrawlSummary
    dispatch: DispatchSummary
    delivery: DeliverySummary
    failures: dict[str, str] = field(default_factory=dict)


class Daemon:
    def __init__(self, config: NewswatchConfig, *, token: str | None, clock: Clock | None = None,
                 console: TextIO | None = None, rng: random.Random | None = None,
                 policy: AddressPolicy | None = None, resolver: AbstractResolver | None = None,
                 instance_lock: InstanceLock | None = None, roles: tuple[str, ...] = ROLES,
                 leadership: Leadership | None = None, leases: SourceLeases | None = None) -> None:
        self.config = config
        self.instance_lock = instance_lock  # held while this daemon uses the database
        self.roles = tuple(r for r in ROLES if r in roles)
        self.leadership = leadership  # the role's lock, taken before its loops start (role processes)
        self.leases = leases or SingleWorkerLeases()
        self.standing_by = False  # waiting for the role's lock
        # alone in its process, a stage looks for the other stages' work in the database; so does
        # `run` on PostgreSQL (a leadership), where workers of other processes may store stories too
        self.others_poll = None if set(self.roles) == set(ROLES) and leadership is None else OTHERS_POLL
        self.token = token
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.storage = open_storage(config.database)  # made, or upgraded in place, here
        self.store = self.storage.stories
        alerts = self.storage.alerts
        self.subscriptions = Subscriptions(alerts)
        self.outbox = Outbox(alerts)
        self.votes = Votes(alerts)
        self.matcher = self._blended(Matcher(config.topics), config)
        self.watches = Watches(alerts, max_per_chat=config.telegram.max_watches_per_chat,
                               max_watches=config.telegram.max_watches)
        self.policy = policy or address_policy(config)
        self.runtime_sources = RuntimeSources(alerts, config.sources, policy=self.policy, resolver=resolver)
        self.sources = self.runtime_sources.enabled()
        self.scheduler: AsyncIOScheduler | None = None
        self.clusters = StoryClusters(alerts)
        self.dispatcher = Dispatcher(self.store, self.subscriptions, self.outbox, self.matcher, self.clock,
                                     console=token is None, watches=self.watches, clusters=self.clusters,
                                     votes=self.votes)
        self.commands: BotCommands | None = None
        telegram_sink = self._telegram(token if BOT in self.roles else None)
        self.metrics = Metrics()
        self.notifier = Notifier(self.outbox, self.store, self.subscriptions, self.clock, telegram_sink,
                                 ConsoleSink(console or sys.stdout), rng=self.rng, observer=self.metrics,
                                 clusters=self.clusters)
        self.recorder = OutcomeRecorder(self.store, self.clock, config.crawler, self._stories_stored, self.rng,
                                        alert_max_age=config.alert_max_age)
        self.recorder.observers.append(self.metrics.fetched)
        self.metrics.known([s.name for s in self.sources], self.matcher.topics, self.store)
        self.metrics.watch(self.outbox, self.notifier)
        self.crawler = Crawler(config.crawler, self.recorder, policy=self.policy, resolver=resolver)
        self.heartbeat = Heartbeat(self.store, self.clock)
        # every statement runs on the event loop: a lock held elsewhere fails it quickly, and the
        # loops retry it later (DB_RETRY), instead of freezing the bot, delivery and /healthz
        self.storage.set_busy_timeout(DB_BUSY_TIMEOUT)
        self._due: set[str] = set()
        self._due_event = asyncio.Event()
        self._dispatch_event = asyncio.Event()
        self._notify_event = asyncio.Event()

    def _telegram(self, token: str | None):
        """The Telegram application, its link and the sink the notifier sends through (None
        without a token: alerts go to the console)."""
        self.application = None
        self.link = None
        if not token:
            return None
        from newswatch.alerts.deliver.telegram import TelegramLink, TelegramSink, build_application

        self.application = build_application(token, self.config.telegram)
        self.link = TelegramLink(self.application, self.clock, api_url=self.config.telegram.api_url,
                                 start=self._start_bot, on_up=self._wake_notifier,
                                 on_change=self._telegram_changed, rng=self.rng)
        return TelegramSink(self.application, self.link)

    @property
    def sources(self) -> list[SourceConfig]:
        """The sources polled now (config plus runtime changes)."""
        return self._sources

    @sources.setter
    def sources(self, sources: list[SourceConfig]) -> None:
        self._sources = list(sources)
        self._sources_by_name = {s.name: s for s in self._sources}

    # -- one pass (newswatch crawl) --------------------------------------------------------------
    async def run_once(self) -> CycleReport:
        if self.link is not None:
            await self.link.check_once()  # unreachable: the alerts wait in the outbox for the daemon
        try:
            crawl = await self.crawler.crawl(self._fetchable(self.sources), self.runtime_sources.added_from_chat())
            await self.watches.refresh()
            dispatch = self.dispatcher.run()
            delivery = await self.notifier.deliver_due()
        finally:
            await self.crawler.close()
            if self.application:
                await self.application.shutdown()
        return CycleReport(crawl, dispatch, delivery, crawl.failures)

    # -- the daemon -----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> int:
        """Run the daemon's roles until stopped: 0, or 1 when the role's lock was lost."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig, handler in ((signal.SIGTERM, stop.set), (signal.SIGINT, stop.set), (signal.SIGHUP, self.reload)):
            try:
                loop.add_signal_handler(sig, handler)
            except (NotImplementedError, RuntimeError, AttributeError):  # not the main thread, or no SIGHUP
                pass
        mode = "Telegram" if self.token else "console (no NEWSWATCH_TELEGRAM_TOKEN set)"
        roles = "" if set(self.roles) == set(ROLES) else f" as {', '.join(self.roles)}"
        log.info("newswatch starting%s: %s, topics %s, database %s, alerts to %s", roles,
                 plural(len(self.sources), "source"), ", ".join(self.matcher.topics), self.config.database_path, mode)
        self.heartbeat.beat()
        http = None
        if self.config.http is not None:
            from newswatch.http_api import start_http

            http = await start_http(self.config, self.metrics, store=self.store, outbox=self.outbox,
                                    notifier=self.notifier, scheduler=lambda: self.scheduler, sources=lambda: self.sources,
                                    telegram=self._telegram_state, heartbeat=self.heartbeat, roles=self.roles,
                                    standing_by=lambda: self.standing_by)
        heartbeat = asyncio.create_task(self.heartbeat.run(), name="heartbeat")
        lost = await self._lead_and_work(stop)
        log.info("newswatch stopping")
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)
        await self._stop_bot()
        if http:
            await http.stop()
        await self.crawler.close()
        self.leases.close()
        self.storage.close()
        if self.leadership is not None:
            self.leadership.release()
        if self.instance_lock is not None:
            self.instance_lock.release()
        log.info("newswatch stopped")
        return 1 if lost else 0

    async def _lead_and_work(self, stop: asyncio.Event) -> bool:
        """Work while this process holds the role's lock (always, without one). A lock lost with
        its PostgreSQL connection (the server went away, restarted, or was cut off) puts the
        process back to standing by, to work again once it holds the lock; a lost file lock
        (SQLite) ends the process. True when it ends for a lost lock."""
        while True:
            self.standing_by = self.leadership is not None
            if self.leadership is not None and not await lead(self.leadership, stop):
                return False
            self.standing_by = False
            lost = await self._work(stop)
            if not lost or stop.is_set() or isinstance(self.leadership, FileLeadership):
                return lost
            await self._stop_bot()
            if self.link is not None:
                self.link.stopped()
            log.warning("%s: standing by again until this process holds the lock", self.leadership.role)

    async def _work(self, stop: asyncio.Event) -> bool:
        """The loops of this process's roles, until `stop` or one of them ends; True when the
        role's lock was lost."""
        tasks = self._role_tasks()
        keeper = None
        if self.leadership is not None:
            keeper = asyncio.create_task(keep(self.leadership), name="leadership")
            tasks.append(keeper)
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task not in (stopper, keeper) and task.exception():
                log.error("task %s died: %r", task.get_name(), task.exception())
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        for task in [stopper, *tasks]:
            task.cancel()
        try:
            await asyncio.wait_for(asyncio.gather(*tasks, stopper, return_exceptions=True), SHUTDOWN_GRACE)
        except TimeoutError:
            log.warning("some work did not stop within %.0fs; stopping anyway (nothing is lost: it resumes "
                        "from the database)", SHUTDOWN_GRACE)
        return keeper is not None and keeper in done

    def _role_tasks(self) -> list[asyncio.Task]:
        """Start the loops of this process's roles (the scheduler too, for a worker)."""
        tasks = []
        if WORKER in self.roles:
            scheduler = self.scheduler = AsyncIOScheduler(timezone="UTC")
            for source in self.sources:
                self._schedule(source)
            scheduler.start()
            tasks.append(asyncio.create_task(self._crawl_loop(), name="crawl"))
            if BOT not in self.roles:  # sources added or disabled from the chat, by the bot's process
                tasks.append(asyncio.create_task(self._follow_sources(), name="sources"))
        if DISPATCH in self.roles:
            tasks.append(asyncio.create_task(self._dispatch_loop(), name="dispatch"))
            if self.config.model.retrain_after_votes:
                tasks.append(asyncio.create_task(self._learn_loop(), name="learn"))
            self._dispatch_event.set()  # catch up on anything stored before a restart
        if BOT in self.roles:
            tasks.append(asyncio.create_task(self._notify_loop(), name="notify"))
            if self.link is not None:  # the bot connects beside the rest, never before it
                tasks.append(asyncio.create_task(self.link.connect_forever(), name="telegram"))
            self._notify_event.set()
        return tasks

    async def _follow_sources(self) -> None:
        """Poll the sources the database says are enabled, as the bot's process changes them."""
        while True:
            await asyncio.sleep(SOURCES_POLL)
            try:
                enabled = self.runtime_sources.enabled()
            except StorageError as exc:
                if not isinstance(exc, DatabaseUnreachable):  # an outage: the heartbeat says it
                    log.warning("could not read the sources changed from the chat: %s", exc)
                continue
            if enabled != self.sources:
                self._apply_sources(enabled)

    @staticmethod
    def _blended(rules: Matcher, config: NewswatchConfig) -> BlendedMatcher:
        """The rules blended with the model file, when `model.blend` asks for one."""
        blend = config.model.blend
        model = load_model(config.model_path, config.topics) if blend > 0 else None
        return BlendedMatcher(rules, model, blend)

    def _use_matcher(self, matcher: BlendedMatcher) -> None:
        self.matcher = self.dispatcher.matcher = matcher

    def reload(self) -> bool:
        """Re-read the config file and the model file (SIGHUP). A bad config file is refused and
        the running config stays (the model file is read again all the same)."""
        path = self.config.file
        if not path or path.startswith("<"):
            log.warning("config reload: the built-in config cannot be reloaded; start with -c FILE")
            self._use_matcher(self._blended(self.matcher.rules, self.config))
            return False
        try:
            new = load_config(path)
        except ConfigError as exc:
            log.error("config reload refused, still running the previous config: %s", "; ".join(exc.problems))
            self._use_matcher(self._blended(self.matcher.rules, self.config))
            return False
        restart = [name for name in ("storage", "telegram", "crawler", "http")
                   if getattr(new, name) != getattr(self.config, name)]
        self.config = new
        self.recorder.alert_max_age = new.alert_max_age
        self._use_matcher(self._blended(Matcher(new.topics), new))
        self.runtime_sources.config_sources = list(new.sources)
        self._apply_sources(self.runtime_sources.enabled())
        if self.commands is not None:
            self.commands.apply_config(new)
        log.info("config reloaded from %s: %s polled, topics %s", path, plural(len(self.sources), "source"),
                 ", ".join(new.topics))
        if restart:
            log.warning("config reload: changes to %s take effect after a restart", ", ".join(restart))
        return True

    def _schedule(self, source: SourceConfig) -> None:
        assert self.scheduler is not None
        first = self.clock.now() + timedelta(seconds=self.rng.uniform(0, min(STARTUP_SPREAD, source.interval)))
        self.scheduler.add_job(
            self._mark_due, IntervalTrigger(seconds=source.interval), args=[source.name],
            id=f"source:{source.name}", next_run_time=first, coalesce=True, max_instances=1,
            misfire_grace_time=max(1, source.interval // 2), replace_existing=True,
        )

    def _apply_sources(self, enabled: list[SourceConfig]) -> None:
        """Sources were added, disabled or enabled at runtime: poll exactly `enabled` from now on."""
        before = {s.name: s for s in self.sources}
        after = {s.name: s for s in enabled}
        self.sources = list(enabled)
        if self.scheduler is None:
            return
        for name in before.keys() - after.keys():
            if self.scheduler.get_job(f"source:{name}"):
                self.scheduler.remove_job(f"source:{name}")
            self._due.discard(name)
        for name, source in after.items():
            if name not in before:
                self.store.clear_backoff(name)
            if before.get(name) != source:
                self._schedule(source)
        log.info("sources changed: %d polled (%s)", len(self.sources), ", ".join(sorted(after)) or "none")

    async def _start_bot(self) -> None:
        """Initialise the bot, publish its menu and start polling (`TelegramLink` calls this until it
        succeeds; every step may be repeated after a failure)."""
        app = self.application
        assert app is not None and self.link is not None
        if self.commands is None:
            self.commands = BotCommands(
                config=self.config, subscriptions=self.subscriptions, watches=self.watches,
                history=History(self.store, self.storage.alerts), runtime_sources=self.runtime_sources, clock=self.clock,
                outbox=self.outbox, votes=self.votes, on_sources_changed=self._apply_sources,
                on_queued=self._wake_notifier,
            )
            self.commands.install(app)
        await app.initialize()
        try:
            await self.commands.publish_menu(app)
        except Exception as exc:
            log.warning("could not publish the command menu: %s", exc)
        if not app.running:
            await app.start()
        if not app.updater.running:
            await app.updater.start_polling(
                timeout=self.config.telegram.poll_timeout, drop_pending_updates=False,
                allowed_updates=["message", "edited_message", "channel_post", "callback_query", "my_chat_member"],
                error_callback=self.link.polling_error,
            )
        log.info("Telegram bot @%s is listening", app.bot.username)

    def _telegram_state(self) -> str:
        return self.link.describe() if self.link is not None else "not used (console output)"

    def _telegram_changed(self, since, reason: str) -> None:
        """Keep the Bot API's state in the database, where `newswatch stats` reads it."""
        try:
            self.store.set_meta(TELEGRAM_DOWN_KEY, db_time(since) or "")
            self.store.set_meta(TELEGRAM_PROBLEM_KEY, reason)
        except StorageError as exc:
            log.warning("could not record the Telegram state in the database: %s", exc)

    def _wake_notifier(self) -> None:
        self._notify_event.set()

    async def _stop_bot(self) -> None:
        app = self.application
        if app is None:
            return
        try:
            if app.updater and app.updater.running:
                await app.updater.stop()
            if app.running:
                await app.stop()
            await app.shutdown()
        except Exception as exc:
            log.warning("bot shutdown: %s", exc)

    async def _mark_due(self, name: str) -> None:
        self._due.add(name)
        self._due_event.set()

    def _fetchable(self, sources: list[SourceConfig]) -> list[SourceConfig]:
        blocked = self.store.blocked_until(self.clock.now())
        return [s for s in sources if s.name not in blocked]

    def _stories_stored(self, source: str, stories: list) -> None:
        self._dispatch_event.set()

    async def _crawl_loop(self) -> None:
        """Start a crawl for the due sources whenever some are due; a slow crawl (a big site,
        a hanging server) does not hold up the next ones, and no source is crawled twice at once."""
        crawling: set[str] = set()
        running: set[asyncio.Task] = set()
        try:
            while True:
                await self._due_event.wait()
                self._due_event.clear()
                if len(running) >= MAX_CONCURRENT_CRAWLS:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    self._due_event.set()
                    continue
                by_name = self._sources_by_name
                names = sorted(n for n in self._due if n in by_name and n not in crawling)
                try:
                    batch, waiting = self._claim([by_name[n] for n in names])
                except StorageError as exc:  # the sources stay due: tried again when it answers
                    _log_storage(exc, "claiming the due sources")
                    await asyncio.sleep(DB_RETRY)
                    self._due_event.set()
                    continue
                self._due -= set(names) - set(waiting)
                if waiting:  # their host is another worker's now: asked for again shortly
                    asyncio.get_running_loop().call_later(BUSY_RETRY, self._due_event.set)
                if not batch:
                    continue
                names = [s.name for s in batch]
                crawling.update(names)
                task = asyncio.create_task(self._crawl(batch))
                running.add(task)

                def finished(task: asyncio.Task, names: list[str] = names) -> None:
                    running.discard(task)
                    crawling.difference_update(names)
                    if self._due:  # sources that came due while these were being crawled
                        self._due_event.set()

                task.add_done_callback(finished)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    def _claim(self, due: list[SourceConfig]) -> tuple[list[SourceConfig], list[str]]:
        """Of the `due` sources, those this worker crawls now (not blocked, and leased to it), and
        the names of those whose host another worker crawls now (the rest are resting)."""
        batch = self._fetchable(due)
        if not batch:
            return [], []
        granted, waiting = self.leases.claim({s.name: host_of(s.url) for s in batch})
        names = set(granted)
        return [s for s in batch if s.name in names], waiting

    async def _crawl(self, batch: list[SourceConfig]) -> None:
        try:
            summary = await self.crawler.crawl(batch, self.runtime_sources.added_from_chat())
        except asyncio.CancelledError:
            raise
        except DatabaseUnreachable as exc:  # fetched again at the next poll, as nothing was stored
            log.debug("crawl of %s: waiting for the database: %s", plural(len(batch), "source"), exc)
            return
        except Exception:
            log.exception("crawl of %s failed", plural(len(batch), "source"))
            return
        finally:
            self._finish_leases(batch)
        log.info("cycle: %s (%d ok, %d unchanged, %d failed), %s of %d seen%s, %.1fs",
                 plural(summary.sources, "source"), summary.ok, summary.not_modified, summary.failed,
                 plural(summary.stories_new, "new story"), summary.stories_seen, held_note(summary), summary.seconds)
        self.metrics.crawled(summary)
        self._dispatch_event.set()
        if summary.failures:
            await self._disable_failing(summary.failures)

    def _finish_leases(self, batch: list[SourceConfig]) -> None:
        try:
            self.leases.finish({s.name: s.interval * REST_SHARE for s in batch})
        except Exception as exc:  # the leases run out on their own (an outage ends them at once)
            level = logging.DEBUG if isinstance(exc, DatabaseUnreachable) else logging.WARNING
            log.log(level, "could not hand back the leases of %s: %s", plural(len(batch), "source"), exc)

    async def _disable_failing(self, failures: dict[str, str]) -> None:
        """Disable sources that kept failing (crawler.disable_after in a row) and tell the admins
        (`telegram.notice_chats`) with a notice queued in the outbox."""
        limit = self.config.crawler.disable_after
        if not limit:
            return
        disabled = []
        for name, error in failures.items():
            if self.store.fetch_state(name).failures < limit:
                continue
            try:
                self.runtime_sources.set_enabled(name, False, by=0, now=self.clock.now())
            except Exception as exc:
                log.error("source %s: could not disable it: %s", name, exc)
                continue
            disabled.append((name, error))
            log.warning("source %s: disabled after %s in a row (last: %s); /enablesource %s resumes it",
                        name, plural(limit, "failure"), error, name)
        if not disabled:
            return
        self._apply_sources(self.runtime_sources.enabled())
        if not self.token or not self.config.telegram.notice_chats:
            return
        for name, error in disabled:  # through the outbox, as alerts go: retried, in order, once
            text = (f"⚠️ Source {name} was disabled after {plural(limit, 'failed fetch')} in a row.\n"
                    f"Last error: {error[:300]}\n/enablesource {name} polls it again.")
            self.outbox.queue_notice(self.config.telegram.notice_chats, text, self.clock.now())
        self._notify_event.set()

    async def _dispatch_loop(self) -> None:
        while True:
            await _wait(self._dispatch_event, self.others_poll)
            self._dispatch_event.clear()
            try:
                if self.others_poll is not None:  # watches added or removed by the bot's process
                    self.watches.follow_stored()
                # Watches added or removed since the last step are compiled in a worker thread
                # (the first step compiles every stored one): the loop never waits for that.
                await self.watches.refresh()
                summary = self.dispatcher.run(DISPATCH_STEP, batches=1)
            except StorageError as exc:
                _log_storage(exc, "matching new stories")
                await asyncio.sleep(DB_RETRY)
                self._dispatch_event.set()
                continue
            except Exception:
                log.exception("matching new stories failed; will retry on the next batch")
                await asyncio.sleep(1)
                continue
            self.metrics.dispatched(summary)
            if summary.queued:
                log.info("matched %d of %s; %s queued", summary.matched, plural(summary.stories, "new story"),
                         plural(summary.queued, "alert"))
                self._notify_event.set()
            if summary.more:
                self._dispatch_event.set()
                await asyncio.sleep(0)  # let waiting sends record their result between steps

    async def _learn_loop(self) -> None:
        """Train the model again once `model.retrain_after_votes` votes were given or changed
        since it was made: on the label files it was trained on and every stored vote, in a worker
        thread; then write it and score with it."""
        tried: datetime | None = None  # the last training, also one that made no model
        while True:
            await asyncio.sleep(LEARN_CHECK)
            config = self.config
            model = self.matcher.model
            made = model.meta.get("created") if model is not None else None
            try:
                since = datetime.fromisoformat(made) if isinstance(made, str) else None
                if tried is not None and (since is None or tried > since):
                    since = tried
                fresh = self.votes.changed_since(since)
                if fresh < config.model.retrain_after_votes or config.model.retrain_after_votes == 0:
                    continue
                votes = list(self.votes.labels(topics=config.topics))
            except (StorageError, ValueError) as exc:
                log.warning("model: could not read the votes (%s); trying again later", exc)
                continue
            files = [f for f in (model.meta.get("label_files", []) if model is not None else []) if Path(f).is_file()]
            tried = self.clock.now()
            log.info("model: %s since it was made; training again on %s and %s",
                     plural(fresh, "new vote"), plural(len(votes), "voted story", "voted stories"),
                     plural(len(files), "label file"))
            try:
                trained, report = await asyncio.to_thread(self._train, config, files, votes)
            except Exception:
                log.exception("model: training failed; still scoring with the previous model")
                continue
            if not trained.topics:
                log.warning("model: no topic has both 👍 and 👎 yet; not trained")
                continue
            self._use_matcher(BlendedMatcher(self.matcher.rules, trained, config.model.blend))
            log.info("model: trained again and in use (%s)", "; ".join(
                f"{t}: F1 rules {f.rules_f1}, blended {f.blended_f1}" for t, f in report.items()))

    @staticmethod
    def _train(config: NewswatchConfig, files: list[str], votes: list[dict]):
        """Train and write the model (in a worker thread: nothing here touches the event loop's
        database connection)."""
        rows = training_rows(files, votes)
        trained, report = train(config.topics, rows, blend=config.model.blend, label_files=files, votes=len(votes))
        if trained.topics:
            write_model(config.model_path, trained)
        return trained, report

    async def _notify_loop(self) -> None:
        while True:
            try:
                await self.notifier.deliver_due()
                next_due = None if self.notifier.waiting_for_telegram else self.outbox.next_due()
            except StorageError as exc:
                _log_storage(exc, "delivering alerts")
                await asyncio.sleep(DB_RETRY)
                self._notify_event.set()
                next_due = None
            except Exception:
                log.exception("delivering alerts failed; will retry in %.0fs", DB_RETRY)
                await asyncio.sleep(DB_RETRY)  # never a busy loop
                next_due = None
            timeout = None
            if next_due is not None:
                timeout = max(0.05, (next_due - self.clock.now()).total_seconds())
            if self.others_poll is not None:  # alerts and notices queued by the other processes
                timeout = min(timeout, self.others_poll) if timeout is not None else self.others_poll
            await _wait(self._notify_event, timeout)
            self._notify_event.clear()


def _log_storage(exc: StorageError, doing: str) -> None:
    """A loop's database failure: an unreachable server is logged once, by the heartbeat (the
    loop only waits and tries again); a refused write each time."""
    if isinstance(exc, DatabaseUnreachable):
        log.debug("%s: waiting for the database (%s); retrying in %.0fs", doing, exc, DB_RETRY)
        return
    log.error("%s: the database refused the write (%s: %s); retrying in %.0fs", doing, type(exc).__name__, exc, DB_RETRY)


async def _wait(event: asyncio.Event, timeout: float | None) -> None:
    """Until `event` is set, or `timeout` seconds (None: no limit) have passed."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        pass
