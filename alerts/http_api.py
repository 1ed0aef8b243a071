"""The daemon's HTTP endpoint (config `http: {listen: "127.0.0.1:9108"}`), in its own loop.

    GET /healthz   200 when the scheduler runs, the database answers and delivery is not
                   stuck, else 503; a JSON body says which check failed and why, and
                   whether the Telegram Bot API can be reached ("telegram": "unreachable
                   since …" does not fail the check: sources are polled and alerts wait)
    GET /metrics   the counters of `alerts.metrics`, in the Prometheus text format
                   (OpenMetrics when the scraper asks for it)

No authentication: bind it to localhost or a private network only. Requests are not logged.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from apscheduler.schedulers.base import BaseScheduler
from prometheus_client.exposition import choose_encoder

from alerts.config import ConfigError, NewswatchConfig
from alerts.metrics import Metrics
from alerts.notifier import Notifier
from alerts.outbox import Outbox
from alerts.service_config import HttpConfig
from crawler.sources import SourceConfig
from crawler.store import StoryStore

log = logging.getLogger("newswatch.http")


class Health:
    """The three checks behind `/healthz`; each says what it saw."""

    def __init__(self, *, store: StoryStore, outbox: Outbox, notifier: Notifier,
                 scheduler: Callable[[], BaseScheduler | None], sources: Callable[[], list[SourceConfig]],
                 stuck_after: float, telegram: Callable[[], str] = lambda: "not used") -> None:
        self.store = store
        self.telegram = telegram
        self.outbox = outbox
        self.notifier = notifier
        self.scheduler = scheduler
        self.sources = sources
        self.stuck_after = stuck_after

    def check(self) -> tuple[bool, dict[str, Any]]:
        checks = {"scheduler": self._scheduler(), "database": self._database(), "notifier": self._notifier()}
        healthy = all(c["ok"] for c in checks.values())
        body: dict[str, Any] = {"status": "ok" if healthy else "unhealthy", "checks": checks,
                                "telegram": self.telegram()}
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
            latest = self.store.conn.execute("SELECT MAX(seq) FROM stories").fetchone()[0]
            pending = self.outbox.pending_count()
        except sqlite3.Error as exc:
            return {"ok": False, "problem": f"the database does not answer: {exc}"}
        return {"ok": True, "latest_story": latest or 0, "outbox_pending": pending,
                "seconds": round(time.perf_counter() - started, 4)}

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

    def __init__(self, config: HttpConfig, metrics: Metrics, health: Health) -> None:
        self.config = config
        self.metrics = metrics
        self.health = health
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
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port, reuse_address=True)
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
                     sources: Callable[[], list[SourceConfig]], telegram: Callable[[], str]) -> HttpService:
    """Start the endpoint the `http:` section asks for; a port that cannot be had is a config error."""
    assert config.http is not None
    health = Health(store=store, outbox=outbox, notifier=notifier, scheduler=scheduler, sources=sources,
                    stuck_after=config.http.stuck_after, telegram=telegram)
    service = HttpService(config.http, metrics, health)
    try:
        await service.start()
    except OSError as exc:
        raise ConfigError([f"{config.file}: http.listen: cannot listen on {config.http.listen}: "
                           f"{exc.strerror or exc}"]) from None
    return service


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
