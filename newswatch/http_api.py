"""The daemon's HTTP endpoint (config `http: {listen: "127.0.0.1:9108"}`), in its own loop.

    GET /healthz   200 when the scheduler runs, the database answers and takes writes (the
                   daemon's heartbeat, `newswatch.heartbeat`, is fresh), delivery is not stuck
                   and no chat's next alert has been overdue for `http.stuck_after`, else 503;
                   a JSON body says which check failed and why, the outbox's backlog (pending
                   rows, the oldest one's age, stuck rows), and whether the Telegram Bot API
                   can be reached ("telegram": "unreachable since …" does not fail the check:
                   sources are polled and alerts wait). A process running some of the roles
                   (`newswatch worker`, `dispatch`, `bot`) checks what its roles do: the
                   scheduler for a worker, delivery and the outbox for the bot; the body names
                   the roles and whether the process stands by for another one's lock
    GET /metrics   the counters of `newswatch.metrics`, in the Prometheus text format
                   (OpenMetrics when the scraper asks for it)

No authentication: bind it to localhost or a private network only. Requests are not logged.

Limits, so that a flood of connections cannot take the daemon's file descriptors (and with
them its feeds and alerts): at most `http.max_connections` open at once (when full, the
connection that has waited longest for its request head is dropped to make room; when none
is waiting, the newcomer is closed), a request line and headers must arrive within
`http.header_timeout`, and what is dropped, like the loop's "socket.accept() out of system
resource" errors, is logged at most once per `LOG_EVERY` seconds, with a count.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from aiohttp import web
from apscheduler.schedulers.base import BaseScheduler
from prometheus_client.exposition import choose_encoder

from newswatch.alerts.config import ConfigError, NewswatchConfig
from newswatch.alerts.deliver.format import plural
from newswatch.heartbeat import Heartbeat
from newswatch.leadership import BOT, ROLES, WORKER
from newswatch.metrics import Metrics
from newswatch.alerts.deliver.notifier import Notifier
from newswatch.alerts.deliver.outbox import Outbox
from newswatch.alerts.service_config import HttpConfig
from newswatch.crawler.sources import SourceConfig
from newswatch.crawler.store import StorageError, StoryStore

log = logging.getLogger("newswatch.http")

LOG_EVERY = 60.0  # seconds between two log lines about the same kind of trouble
ACCEPT_ERROR = "socket.accept() out of system resource"


class ThrottledLog:
    """Logs a recurring event at most once per `interval` seconds: the first one at once,
    later ones as a count when the interval has passed and the next one comes."""

    def __init__(self, logger: logging.Logger, interval: float = LOG_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def event(self, key: str, message: str, level: int = logging.WARNING) -> None:
        now = self.clock()
        self._count[key] = self._count.get(key, 0) + 1
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return
        count, self._count[key], self._last[key] = self._count[key], 0, now
        if last is None or count == 1:
            self.logger.log(level, "%s", message)
        else:
            self.logger.log(level, "%s (%d times in the last %.0fs)", message, count, now - last)


def quiet_accept_errors(loop: asyncio.AbstractEventLoop, throttle: ThrottledLog) -> None:
    """Route the loop's "socket.accept() out of system resource" reports through `throttle`
    (asyncio logs one per failed accept); anything else goes to the handler in place."""
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == ACCEPT_ERROR:
            exc = context.get("exception")
            throttle.event("accept", f"the HTTP endpoint cannot accept connections: {exc or ACCEPT_ERROR}",
                           logging.ERROR)
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


class ConnectionLimits:
    """The open connections of the endpoint, bounded as the module docstring says."""

    def __init__(self, max_connections: int, header_timeout: float, throttle: ThrottledLog) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.throttle = throttle
        self.open: dict[LimitedConnection, None] = {}  # oldest first

    def admit(self, conn: LimitedConnection) -> bool:
        if len(self.open) >= self.max_connections:
            waiting = next((c for c in self.open if c.head_pending), None)
            if waiting is None:
                self.throttle.event("full", f"HTTP endpoint: {self.max_connections} connections open "
                                            "(http.max_connections), new ones closed")
                return False
            self.throttle.event("evicted", f"HTTP endpoint: {self.max_connections} connections open "
                                           "(http.max_connections); dropping those that send no request")
            waiting.drop()
        self.open[conn] = None
        return True

    def timed_out(self) -> None:
        self.throttle.event("timeout", f"HTTP endpoint: connections dropped for sending no complete request "
                                       f"within {self.header_timeout:g}s (http.header_timeout)")


class LimitedConnection(asyncio.Protocol):
    """aiohttp's protocol for one connection, wrapped: admitted by `ConnectionLimits`, and
    closed when a request head (line and headers, up to the blank line) takes too long."""

    def __init__(self, inner: Any, limits: ConnectionLimits) -> None:
        self.inner = inner
        self.limits = limits
        self.transport: asyncio.BaseTransport | None = None
        self.head_pending = True
        self._tail = b""
        self._timer: asyncio.TimerHandle | None = None
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if not self.limits.admit(self):
            transport.abort()
            return
        self._admitted = True
        self.inner.connection_made(transport)
        self._await_head()

    def _await_head(self) -> None:
        self.head_pending, self._tail = True, b""
        self._timer = asyncio.get_running_loop().call_later(self.limits.header_timeout, self._expire)

    def _expire(self) -> None:
        if self.head_pending:
            self.limits.timed_out()
            self.drop()

    def drop(self) -> None:
        self.limits.open.pop(self, None)  # its slot is free now; the socket closes in a moment
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if not self.head_pending:
            self._await_head()  # a next request on a kept-alive connection
        seen = self._tail + data
        if b"\r\n\r\n" in seen or b"\n\n" in seen:
            self.head_pending = False
            if self._timer is not None:
                self._timer.cancel()
        else:
            self._tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self._admitted else None

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.limits.open.pop(self, None)
        if self._admitted:
            self.inner.connection_lost(exc)


class LimitedSite(web.TCPSite):
    """A TCP site whose connections go through `LimitedConnection`."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, limits: ConnectionLimits) -> None:
        super().__init__(runner, host, port, reuse_address=True)
        self.limits = limits

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        limits = self.limits
        # asyncio accepts up to `backlog` connections in a row before closing any it turns
        # away: a small backlog keeps the descriptors of one such burst few
        self._server = await asyncio.get_running_loop().create_server(
            lambda: LimitedConnection(server(), limits), self._host, self._port,
            backlog=min(self._backlog, limits.max_connections), reuse_address=True)


class Health:
    """The checks behind `/healthz`; each says what it saw."""

    def __init__(self, *, store: StoryStore, outbox: Outbox, notifier: Notifier,
                 scheduler: Callable[[], BaseScheduler | None], sources: Callable[[], list[SourceConfig]],
                 stuck_after: float, telegram: Callable[[], str] = lambda: "not used",
                 heartbeat: Heartbeat | None = None, roles: tuple[str, ...] = ROLES,
                 standing_by: Callable[[], bool] = lambda: False) -> None:
        self.store = store
        self.roles = roles
        self.standing_by = standing_by
        self.heartbeat = heartbeat
        self.telegram = telegram
        self.outbox = outbox
        self.notifier = notifier
        self.scheduler = scheduler
        self.sources = sources
        self.stuck_after = stuck_after

    def check(self) -> tuple[bool, dict[str, Any]]:
        standing_by = self.standing_by()
        checks = {"scheduler": self._scheduler()} if WORKER in self.roles and not standing_by else {}
        checks["database"] = self._database()
        if BOT in self.roles and not standing_by:
            checks["notifier"], checks["outbox"] = self._notifier(), self._outbox()
        healthy = all(c["ok"] for c in checks.values())
        body: dict[str, Any] = {"status": "ok" if healthy else "unhealthy", "checks": checks,
                                "telegram": self.telegram()}
        if set(self.roles) != set(ROLES):
            body["roles"] = list(self.roles)
            body["standby"] = standing_by
        if checks["database"]["ok"]:
            body["sources"] = self._sources()
        return healthy, body

    def _scheduler(self) -> dict[str, Any]:
        scheduler = self.scheduler()
        if scheduler is None:
            return {"ok": False, "problem": "the scheduler has not started"}
        if not scheduler.running:
            return {"ok": False, "problem": "the scheduler is not running"}
        return {"ok": True, "jobs": len(scheduler.get_jobs())}

    def _database(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            latest = self.store.latest_seq()
            pending = self.outbox.pending_count()
            beat = self.heartbeat.check() if self.heartbeat is not None else {}
        except StorageError as exc:
            return {"ok": False, "problem": f"the database does not answer: {exc}"}
        return {"ok": "problem" not in beat, "latest_story": latest or 0, "outbox_pending": pending, **beat,
                "seconds": round(time.perf_counter() - started, 4)}

    def _outbox(self) -> dict[str, Any]:
        now = self.notifier.clock.now()
        try:
            pending, oldest, stuck = self.outbox.backlog(now - timedelta(seconds=self.stuck_after))
        except StorageError as exc:
            return {"ok": False, "problem": f"the database does not answer: {exc}"}
        waiting = self.notifier.waiting_for_telegram  # the alerts wait for the Bot API: not stuck
        out: dict[str, Any] = {"ok": not stuck or waiting, "pending": pending,
                               "oldest_pending_seconds": round((now - oldest).total_seconds(), 1) if oldest else 0,
                               "stuck": stuck}
        if not out["ok"]:
            out["problem"] = (f"{plural(stuck, 'chat')} with an alert overdue for more than "
                              f"{self.stuck_after:g}s and not delivered")
        return out

    def _notifier(self) -> dict[str, Any]:
        n = self.notifier
        problem = n.stuck(self.stuck_after)
        out: dict[str, Any] = {"ok": not problem, "in_flight": len(n.in_flight),
                               "last_progress": n.last_progress.isoformat(),
                               "failing_since": n.failing_since.isoformat() if n.failing_since else None,
                               "stuck_after_seconds": self.stuck_after}
        if problem:
            out["problem"] = f"delivery is stuck: {problem}"
        return out

    def _sources(self) -> dict[str, Any]:
        names = [s.name for s in self.sources()]
        states = self.store.all_fetch_states()
        failing = sorted(n for n in names if n in states and states[n].failures)
        return {"polled": len(names), "failing": failing}


class HttpService:
    """The aiohttp app, started and stopped by the daemon inside its own loop."""

    def __init__(self, config: HttpConfig, metrics: Metrics, health: Health,
                 throttle: ThrottledLog | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.health = health
        self.throttle = throttle or ThrottledLog(log)
        self.limits = ConnectionLimits(config.max_connections, config.header_timeout, self.throttle)
        self.runner: web.AppRunner | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self) -> None:
        """Listen on `http.listen`; raises OSError (e.g. the port is taken) with the runner cleaned up."""
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False,
                               keepalive_timeout=max(self.config.header_timeout, 15))
        await runner.setup()
        quiet_accept_errors(asyncio.get_running_loop(), self.throttle)
        site = LimitedSite(runner, self.config.host, self.config.port, self.limits)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self.runner = runner
        sockets = getattr(site._server, "sockets", None) or []  # the bound port when 0 was asked for
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port
        log.info("serving /healthz and /metrics on http://%s/", _hostport(self.config.host, self.port))

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text="newswatch\n  /healthz  health checks (JSON; 503 when unhealthy)\n"
                                 "  /metrics  Prometheus metrics\n")

    async def _healthz(self, request: web.Request) -> web.Response:
        healthy, body = self.health.check()
        return web.Response(status=200 if healthy else 503, text=json.dumps(body, indent=2) + "\n",
                            content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(self.metrics.registry), headers={"Content-Type": content_type})


async def start_http(config: NewswatchConfig, metrics: Metrics, *, store: StoryStore, outbox: Outbox,
                     notifier: Notifier, scheduler: Callable[[], BaseScheduler | None],
                     sources: Callable[[], list[SourceConfig]], telegram: Callable[[], str],
                     heartbeat: Heartbeat | None = None, roles: tuple[str, ...] = ROLES,
                     standing_by: Callable[[], bool] = lambda: False) -> HttpService:
    """Start the endpoint the `http:` section asks for; a port that cannot be had is a config error."""
    assert config.http is not None
    health = Health(store=store, outbox=outbox, notifier=notifier, scheduler=scheduler, sources=sources,
                    stuck_after=config.http.stuck_after, telegram=telegram, heartbeat=heartbeat,
                    roles=roles, standing_by=standing_by)
    service = HttpService(config.http, metrics, health)
    try:
        await service.start()
    except OSError as exc:
        raise ConfigError([f"{config.file}: http.listen: cannot listen on {config.http.listen}: "
                           f"{exc.strerror or exc}"]) from None
    return service


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
