"""A local news server for tests: feeds and pages on 127.0.0.1 that behave like real ones.

Runs an aiohttp app in a background thread with its own loop, so synchronous tests and
daemons in subprocesses can both use it. Feeds honour conditional GET (ETag and
Last-Modified -> 304); paths can be made to misbehave (status codes, Retry-After, delays,
dropped connections, redirects, responses that never end). Every request is recorded, when it
is answered (`hits`) and when it arrives (`arrivals`), and so are the requests being answered
at once per host (`in_flight`, and the most there were: `most_in_flight`).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from xml.sax.saxutils import escape

from aiohttp import web


@dataclass
class FeedItem:
    title: str
    link: str
    description: str = ""
    guid: str = ""
    published: datetime = field(default_factory=lambda: datetime.now(UTC))
    pub_date_text: str = ""  # raw <pubDate> when a test needs an exact string (e.g. "... KST")
    undated: bool = False  # no <pubDate> at all


def rss(items: list[FeedItem], *, title: str = "Test feed", link: str = "http://example.invalid/", language: str = "en") -> bytes:
    """An RSS 2.0 document for `items`."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>',
        f"<title>{escape(title)}</title><link>{escape(link)}</link><description>{escape(title)}</description>",
        f"<language>{escape(language)}</language>",
    ]
    for item in items:
        date = item.pub_date_text or format_datetime(item.published.astimezone(UTC), usegmt=True)
        guid = item.guid or item.link
        parts.append(
            f"<item><title>{escape(item.title)}</title><link>{escape(item.link)}</link>"
            f"<description>{escape(item.description)}</description>"
            f'<guid isPermaLink="false">{escape(guid)}</guid>'
            + ("" if item.undated else f"<pubDate>{escape(date)}</pubDate>") + "</item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


@dataclass
class Route:
    body: bytes = b""
    content_type: str = "application/rss+xml; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    conditional: bool = True
    last_modified: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    forever: bool = False  # stream `body` again and again (for at most FOREVER_LIMIT seconds)


FOREVER_LIMIT = 60.0


@dataclass(frozen=True)
class Hit:
    path: str
    status: int
    headers: dict[str, str]
    at: float


class FeedServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self.hits: list[Hit] = []
        self.arrivals: list[tuple[str, float]] = []  # (path, time.monotonic()) when each request arrived
        self.in_flight: dict[str, int] = {}  # host -> requests being answered now
        self.most_in_flight: dict[str, int] = {}  # host -> the most requests answered at once
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- content ---------------------------------------------------------------------------------
    def set(self, path: str, body: bytes | str = b"", **kwargs) -> None:
        if isinstance(body, str):
            body = body.encode("utf-8")
        with self._lock:
            old = self._routes.get(path)
            route = Route(body=body, **kwargs)
            if old and old.body == body and "last_modified" not in kwargs:
                route.last_modified = old.last_modified
            self._routes[path] = route

    def set_feed(self, path: str, items: list[FeedItem], **kwargs) -> None:
        self.set(path, rss(items), **kwargs)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def hits_for(self, path: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.path == path]

    def arrivals_for(self, path: str, since: float = 0.0) -> list[float]:
        with self._lock:
            return [at for p, at in self.arrivals if p == path and at >= since]

    # -- serving -----------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        host = request.host.rsplit(":", 1)[0] if request.host else self.host
        with self._lock:
            self.arrivals.append((request.path, time.monotonic()))
            self.in_flight[host] = self.in_flight.get(host, 0) + 1
            self.most_in_flight[host] = max(self.most_in_flight.get(host, 0), self.in_flight[host])
        try:
            return await self._answer(request)
        finally:
            with self._lock:
                self.in_flight[host] -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        path = request.path_qs if request.path_qs in self._routes else request.path
        with self._lock:
            route = self._routes.get(path)
        req_headers = {k: v for k, v in request.headers.items()}
        if route is None:
            self._record(path, 404, req_headers)
            return web.Response(status=404, text="not found")
        if route.delay:
            await asyncio.sleep(route.delay)
        if route.drop:
            self._record(path, 0, req_headers)
            if request.transport:
                request.transport.close()
            return web.Response(status=500)
        etag = '"' + hashlib.sha1(route.body).hexdigest()[:16] + '"'
        last_modified = format_datetime(route.last_modified, usegmt=True)
        headers = {"ETag": etag, "Last-Modified": last_modified, **route.headers}
        if route.status == 200 and route.conditional:
            if request.headers.get("If-None-Match") == etag or (
                "If-None-Match" not in request.headers and request.headers.get("If-Modified-Since") == last_modified
            ):
                self._record(path, 304, req_headers)
                return web.Response(status=304, headers=headers)
        self._record(path, route.status, req_headers)
        if route.forever:
            return await self._stream_forever(request, route, headers)
        return web.Response(status=route.status, body=route.body, headers={**headers, "Content-Type": route.content_type})

    async def _stream_forever(self, request: web.Request, route: Route, headers: dict[str, str]) -> web.StreamResponse:
        response = web.StreamResponse(status=route.status, headers={**headers, "Content-Type": route.content_type})
        await response.prepare(request)
        deadline = time.monotonic() + FOREVER_LIMIT
        try:
            while time.monotonic() < deadline:
                await response.write(route.body or b" ")
                await asyncio.sleep(0.01)
        except (ConnectionError, RuntimeError):
            pass
        return response

    def _record(self, path: str, status: int, headers: dict[str, str]) -> None:
        with self._lock:
            self.hits.append(Hit(path, status, headers, time.monotonic()))

    def start(self) -> FeedServer:
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, 0)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="feed-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
