"""The feed farm: thousands of RSS feeds served from one process on 127.0.0.1.

    python -m bench.farm --feeds 10000 [--seed 1] [--slow 0.01] [--failing 0.01] [--port 0]

Prints one JSON line `{"port": P, ...}` once every feed is rendered, then serves until it is
stopped or `--max-seconds` have passed (it always stops by itself).

Feeds (`GET /feed/<n>.xml`, feed n on loopback address n % `--hosts`, see `feed_url`):
- content is deterministic per (seed, feed, cycle): feed n shows its newest 10-50 items;
  four feeds in five carry summaries (1-4 sentences), one in five full text (8-25
  sentences), so a feed weighs 5-150 KB (about 30 KB on average);
- ETag and Last-Modified on every 200; `If-None-Match` / `If-Modified-Since` that match
  get a 304 with no body; bodies are gzipped when the client accepts it (pre-compressed);
- a few items are cross-posted wire stories (the same URL in several feeds), to exercise
  deduplication by URL;
- `--slow` of the feeds answer after a delay of 1-5 s (`--slow-delay` sets the upper end);
  `--failing` of them fail the same way every time: HTTP 500, 404, 429 with Retry-After,
  a dropped connection, or a truncated document.
Items that exist when the farm starts never match the shipped topics, so a first crawl
stores a lot and alerts nobody; items added later match them with probability `matching`.
With `--texts FILE` (JSON lines with title and text, such as ../shared/eval/dev.jsonl) every
item added later is a real story instead, syndicated as wire copy spreads
(`bench.stories.syndicate`: about half the events in one feed, the others in 2-6, each copy
under its own link, some retitled or lightly edited), so as many match as the stories' own mix
does; `GET /control/events` maps each such link to its event.

Control (JSON in and out):
    POST /control/advance {"share": 0.05, "matching": 0.02}  the next cycle: `share` of the
         healthy and slow feeds get 1-3 new items each; returns what changed
    POST /control/publish {"feed": n, "count": 1}  add tracked matching items to feed n now
    POST /control/reset   zero the traffic counters (start of a measured window)
    GET  /control/stats   traffic since the last reset: requests by status, bytes sent,
         bytes saved by 304s, distinct feeds, first request and last response times,
         requests in flight
    GET  /control/events  link -> event of every real story served (with --texts)
    GET  /control/tracked every tracked item: feed, url, published and first-served times
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from xml.sax.saxutils import escape

from aiohttp import web

from bench.stories import labelled_texts, syndicate

HOST = "127.0.0.1"
MIN_ITEMS, MAX_ITEMS = 10, 50
FAILURE_KINDS = ("500", "404", "429", "drop", "truncated")

_WORDS = (
    "the city council approved a new budget on monday after weeks of debate over school funding "
    "transport and housing while residents gathered outside to protest rising rents and the mayor "
    "promised that the plan would bring relief to families hit by higher prices for food and energy "
    "analysts said the decision could shape the coming election campaign as candidates argue over "
    "taxes jobs and public services in a region where unemployment has fallen to its lowest level "
    "in a decade according to figures published by the statistics office this week company shares "
    "rose sharply in early trading after the firm reported stronger than expected quarterly profits "
    "driven by demand for its cloud software and chips the football club signed a young striker "
    "from a rival team for a record fee and the coach said he expected the player to start in the "
    "cup final next month scientists announced the discovery of a new species of frog in the "
    "rainforest while doctors warned about a rise in flu cases as temperatures dropped across the "
    "country and heavy snow closed roads airports and railway lines in several northern provinces"
).split()
_SECTIONS = ("world", "business", "sport", "science", "health", "culture", "local", "tech", "opinion")
_MATCHING = (
    ("Trump and Kim Jong Un to hold summit talks in {place}, White House says",
     "President Trump will meet North Korean leader Kim Jong Un for summit talks in {place}, the White "
     "House said, as envoys prepare a joint statement."),
    ("Putin hosts Kim Jong Un for summit in {place} as Russia and North Korea deepen ties",
     "Russian President Vladimir Putin met North Korea's Kim Jong Un for summit talks in {place}, state "
     "media said, the leaders' first meeting since their agreement last year."),
    ("UN Security Council adopts new sanctions on North Korea after missile launch",
     "The UN Security Council unanimously adopted new sanctions on North Korea, capping oil imports "
     "and banning ship-to-ship transfers, after Pyongyang's latest launch near {place}."),
    ("Xi Jinping and Kim Jong Un meet in {place} for talks ahead of summit with Trump",
     "Chinese President Xi Jinping held talks with North Korean leader Kim Jong Un in {place}, Xinhua "
     "said, weeks before a planned summit with the United States."),
)
_PLACES = ("Hanoi", "Singapore", "Vladivostok", "Beijing", "Panmunjom", "Pyongyang", "Moscow", "Seoul")


def _sentences(seed: int, count: int = 4000) -> list[str]:
    rnd = random.Random(seed)
    out = []
    for _ in range(count):
        words = [rnd.choice(_WORDS) for _ in range(rnd.randint(10, 26))]
        out.append(" ".join(words).capitalize() + ".")
    return out


@dataclass
class Item:
    key: str       # unique within the farm, also the tail of the link
    xml: str       # the rendered <item>
    tracked: bool = False


@dataclass
class Feed:
    n: int
    kind: str                        # healthy, slow, or one of FAILURE_KINDS
    full_text: bool
    size: int                        # items shown
    delay: float = 0.0
    head: int = 0                    # index of the newest item
    items: list[Item] = field(default_factory=list)  # newest first
    etag: str = ""
    modified: float = 0.0
    body: bytes = b""
    gz: bytes = b""


@dataclass
class Tracked:
    feed: int
    url: str
    published: float
    first_served: float | None = None


class Farm:
    def __init__(self, feeds: int, *, seed: int = 1, slow: float = 0.01, failing: float = 0.01,
                 slow_delay: float = 5.0, use_gzip: bool = True, port: int = 0,
                 texts: list[tuple[str, str]] | None = None, instance: int | None = None,
                 hosts: int = 1) -> None:
        self.seed = seed
        self.hosts = hosts  # feed n is served on host n % hosts (see feed_url)
        self.texts = list(texts or [])  # real stories for the new items (shuffled once), or none
        random.Random(seed).shuffle(self.texts)
        self.next_event = 0
        self.events: dict[str, int] = {}  # link of a real story's item -> its event (index into texts)
        self.port = port
        self.use_gzip = use_gzip
        self.cycle = 0
        # in the validators: by default they never outlive the farm; a given instance keeps them
        # valid for another farm of the same seed and instance (the same content at each cycle)
        self.instance = int.from_bytes(os.urandom(3), "big") if instance is None else instance
        self.sentences = _sentences(seed)
        rnd = random.Random(seed)
        self.feeds: list[Feed] = []
        for n in range(feeds):
            roll = rnd.random()
            if roll < failing:
                kind = FAILURE_KINDS[n % len(FAILURE_KINDS)]
            elif roll < failing + slow:
                kind = "slow"
            else:
                kind = "healthy"
            feed = Feed(n=n, kind=kind, full_text=rnd.random() < 0.2, size=rnd.randint(MIN_ITEMS, MAX_ITEMS),
                        delay=rnd.uniform(1.0, max(1.0, slow_delay)) if kind == "slow" else 0.0)
            self.feeds.append(feed)
        self.tracked: dict[str, Tracked] = {}
        self._by_feed_tracked: dict[int, list[str]] = {}
        started = time.time() - 3 * 86400
        for feed in self.feeds:
            feed.head = feed.size - 1
            fill = random.Random(seed * 1_000_003 + feed.n)
            feed.items = [self._item(feed, i, matching=False, published=started + i * 3600, rnd=fill)
                          for i in range(feed.head, -1, -1)]
            self._render(feed, started + feed.head * 3600)
        self.reset()

    # -- content ---------------------------------------------------------------------------------
    def _item(self, feed: Feed, index: int, *, matching: bool, published: float, key: str = "",
              rnd: random.Random | None = None, story: tuple[str, str] | None = None) -> Item:
        rnd = rnd or random.Random((self.seed * 1_000_003 + feed.n) * 1_000_003 + index)
        pool = self.sentences
        size = len(pool)
        key = key or f"{feed.n}-{index}"
        section = _SECTIONS[int(rnd.random() * len(_SECTIONS))]
        if story is not None:  # a real story: each outlet's copy under its own link
            return self._story_item(feed, key, section, story, published)
        if rnd.random() < 0.03:  # a wire story carried by several feeds
            wire = rnd.randrange(2000) if not matching else rnd.randrange(50)
            link = f"https://wire.example.invalid/{section}/story-{self.cycle}-{wire}" if self.cycle else \
                f"https://wire.example.invalid/{section}/archive-{wire}"
        else:
            link = f"https://site{feed.n}.example.invalid/{section}/{key}"
        if matching:
            title, lead = _MATCHING[rnd.randrange(len(_MATCHING))]
            place = _PLACES[rnd.randrange(len(_PLACES))]
            title, lead = title.format(place=place), lead.format(place=place)
            sentences = [lead] + [pool[int(rnd.random() * size)] for _ in range(1 + int(rnd.random() * 3))]
        else:
            words = pool[int(rnd.random() * size)].rstrip(".").split()
            title = " ".join(words[: 6 + int(rnd.random() * 7)])
            count = 8 + int(rnd.random() * 18) if feed.full_text else 1 + int(rnd.random() * 4)
            sentences = [pool[int(rnd.random() * size)] for _ in range(count)]
        if feed.full_text:
            paragraphs = ["<p>" + " ".join(sentences[i : i + 3]) + "</p>" for i in range(0, len(sentences), 3)]
            body = "".join(paragraphs) + f'<p><a href="{link}">Read more</a> &amp; share.</p>'
        else:
            body = " ".join(sentences)
        date = formatdate(published, usegmt=True)
        xml = (
            f"<item><title>{escape(title)} ({key})</title><link>{escape(link)}</link>"
            f"<description>{escape(body)}</description><category>{section}</category>"
            f'<guid isPermaLink="false">urn:farm:{key}</guid><pubDate>{date}</pubDate></item>'
        )
        return Item(key=key, xml=xml, tracked=matching)

    def _story_item(self, feed: Feed, key: str, section: str, story: tuple[str, str], published: float) -> Item:
        """An item carrying a real story: the whole text in a full-text feed, its first
        sentences (up to about 400 characters) in the others."""
        title, text = story
        link = f"https://site{feed.n}.example.invalid/{section}/{key}"
        if feed.full_text:
            paragraphs = [p.strip() for p in text.split("\n") if p.strip()] or [text]
            body = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
        else:
            body = _lead(text)
        xml = (
            f"<item><title>{escape(title)}</title><link>{escape(link)}</link>"
            f"<description>{escape(body)}</description><category>{section}</category>"
            f'<guid isPermaLink="false">urn:farm:{key}</guid><pubDate>{formatdate(published, usegmt=True)}</pubDate></item>'
        )
        return Item(key=key, xml=xml)

    def _render(self, feed: Feed, modified: float) -> None:
        head = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
            f"<title>Farm feed {feed.n}</title><link>https://site{feed.n}.example.invalid/</link>"
            f"<description>Synthetic news feed {feed.n}</description><language>en</language>"
            f"<lastBuildDate>{formatdate(modified, usegmt=True)}</lastBuildDate>"
        )
        text = head + "".join(item.xml for item in feed.items) + "</channel></rss>"
        if feed.kind == "truncated":
            text = text[: len(text) // 3]
        feed.body = text.encode("utf-8")
        feed.gz = gzip.compress(feed.body, 1, mtime=0) if self.use_gzip else b""
        feed.etag = f'"{feed.n:x}-{feed.head:x}-{self.seed:x}-{self.instance:x}"'
        feed.modified = modified

    def _add(self, feed: Feed, count: int, matching: float, rnd: random.Random, now: float,
             *, tracked: bool = False) -> int:
        matched = 0
        for _ in range(count):
            feed.head += 1
            is_match = tracked or rnd.random() < matching
            key = f"{feed.n}-{feed.head}"
            item = self._item(feed, feed.head, matching=is_match, published=now, key=key)
            if is_match:
                matched += 1
                url = item.xml.split("<link>", 1)[1].split("</link>", 1)[0]
                self.tracked[key] = Tracked(feed.n, url, now)
                self._by_feed_tracked.setdefault(feed.n, []).append(key)
            feed.items.insert(0, item)
        del feed.items[feed.size :]
        self._render(feed, now)
        return matched

    def advance(self, share: float, matching: float) -> dict:
        self.cycle += 1
        rnd = random.Random(self.seed * 7919 + self.cycle)
        candidates = [f for f in self.feeds if f.kind in ("healthy", "slow")]
        changed = rnd.sample(candidates, min(len(candidates), round(share * len(self.feeds))))
        now = time.time()
        if self.texts:
            return self._advance_stories(changed, rnd, now)
        new_items = matched = 0
        for feed in changed:
            count = rnd.randint(1, 3)
            new_items += count
            matched += self._add(feed, count, matching, rnd, now)
        if changed and matching > 0 and not matched:  # at least one alert per cycle to time
            matched += self._add(changed[0], 1, 1.0, rnd, now, tracked=True)
            new_items += 1
        return {"cycle": self.cycle, "changed": len(changed), "new_items": new_items, "matching": matched}

    def _advance_stories(self, changed: list[Feed], rnd: random.Random, now: float) -> dict:
        """A cycle of real stories: 1-3 new items in each changed feed, syndicated
        (`bench.stories.syndicate`); which link carries which event is kept in `events`."""
        slots = [feed for feed in changed for _ in range(rnd.randint(1, 3))]
        stories = syndicate(self.texts, [feed.n for feed in slots], self.next_event, rnd)
        by_feed: dict[int, list[tuple[int, str, str]]] = {}
        for feed, story in zip(slots, stories, strict=True):
            by_feed.setdefault(feed.n, []).append(story)
        for n, carried in by_feed.items():
            feed = self.feeds[n]
            for event, title, text in carried:
                feed.head += 1
                item = self._item(feed, feed.head, matching=False, published=now, key=f"{n}-{feed.head}",
                                  story=(title, text))
                self.events[item.xml.split("<link>", 1)[1].split("</link>", 1)[0]] = event
                feed.items.insert(0, item)
            del feed.items[feed.size :]
            self._render(feed, now)
        events = {event for event, _, _ in stories}
        self.next_event = max(events, default=self.next_event - 1) + 1
        return {"cycle": self.cycle, "changed": len(changed), "new_items": len(slots), "events": len(events)}

    def publish(self, n: int, count: int) -> dict:
        feed = self.feeds[n]
        now = time.time()
        rnd = random.Random(self.seed * 31 + feed.head)
        self._add(feed, count, 1.0, rnd, now, tracked=True)
        return {"feed": n, "keys": [i.key for i in feed.items[:count]], "published": now}

    # -- traffic ---------------------------------------------------------------------------------
    def reset(self) -> None:
        self.requests = 0
        self.by_status: dict[str, int] = {}
        self.bytes_sent = 0
        self.bytes_plain = 0
        self.bytes_saved = 0
        self.feeds_seen: set[int] = set()
        self.first_request: float | None = None
        self.last_response: float | None = None
        self.in_flight = 0
        self.timeline: list[tuple[float, float]] = []  # (arrival, answer) of every request

    def stats(self) -> dict:
        return {
            "cycle": self.cycle, "requests": self.requests, "by_status": self.by_status,
            "bytes_sent": self.bytes_sent, "bytes_plain": self.bytes_plain, "bytes_saved_304": self.bytes_saved,
            "feeds_requested": len(self.feeds_seen), "first_request": self.first_request,
            "last_response": self.last_response, "in_flight": self.in_flight,
            "concurrency": _concurrency(self.timeline),
            "kinds": _count(f.kind for f in self.feeds),
        }

    def _done(self, status: str, sent: int = 0, plain: int = 0, saved: int = 0, arrived: float = 0.0) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1
        self.bytes_sent += sent
        self.bytes_plain += plain
        self.bytes_saved += saved
        self.last_response = time.time()
        self.in_flight -= 1
        self.timeline.append((arrived, self.last_response))

    async def handle_feed(self, request: web.Request) -> web.StreamResponse:
        now = time.time()
        self.requests += 1
        self.in_flight += 1
        if self.first_request is None:
            self.first_request = now
        try:
            n = int(request.match_info["n"])
            feed = self.feeds[n]
        except (ValueError, IndexError):
            self._done("404", arrived=now)
            return web.Response(status=404, text="no such feed")
        self.feeds_seen.add(n)
        if feed.delay:
            await asyncio.sleep(feed.delay)
        kind = feed.kind
        if kind in ("500", "404"):
            self._done(kind, 20, 20, arrived=now)
            return web.Response(status=int(kind), text="server says no")
        if kind == "429":
            self._done("429", 17, 17, arrived=now)
            return web.Response(status=429, text="slow down please", headers={"Retry-After": "120"})
        if kind == "drop":
            self._done("drop", arrived=now)
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)
        gz = bool(feed.gz) and "gzip" in request.headers.get("Accept-Encoding", "")
        body = feed.gz if gz else feed.body
        modified = formatdate(feed.modified, usegmt=True)
        headers = {"ETag": feed.etag, "Last-Modified": modified, "Cache-Control": "max-age=0"}
        inm = request.headers.get("If-None-Match")
        ims = request.headers.get("If-Modified-Since")
        if (inm is not None and inm == feed.etag) or (inm is None and ims == modified):
            self._done("304", saved=len(body), arrived=now)
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = "application/rss+xml; charset=utf-8"
        if gz:
            headers["Content-Encoding"] = "gzip"
        for key in self._by_feed_tracked.get(n, ()):
            tracked = self.tracked[key]
            if tracked.first_served is None and any(i.key == key for i in feed.items):
                tracked.first_served = now
        self._done("200", len(body), len(feed.body), arrived=now)
        return web.Response(status=200, body=body, headers=headers)

    # -- control ---------------------------------------------------------------------------------
    async def handle_control(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        data = await request.json() if request.can_read_body else {}
        if action == "advance":
            result = self.advance(float(data.get("share", 0.05)), float(data.get("matching", 0.02)))
        elif action == "publish":
            result = self.publish(int(data["feed"]), int(data.get("count", 1)))
        elif action == "reset":
            self.reset()
            result = {"ok": True}
        elif action == "stats":
            result = self.stats()
        elif action == "events":
            result = self.events
        elif action == "tracked":
            result = {k: vars(t) for k, t in self.tracked.items()}
        elif action == "feeds":
            result = {"kinds": [f.kind for f in self.feeds],
                      "bytes": [len(f.body) for f in self.feeds], "gz": [len(f.gz) for f in self.feeds]}
        else:
            return web.json_response({"error": f"unknown action {action}"}, status=404)
        return web.json_response(result)


def host_address(host: int) -> str:
    """The loopback address of the farm's host number `host` (0 is 127.0.0.1; Linux answers on
    every address of 127.0.0.0/8): the daemon sees each as a host of its own."""
    return HOST if host == 0 else f"127.1.{host // 250}.{host % 250 + 1}"


def feed_url(port: int, n: int, hosts: int = 1) -> str:
    """Where feed n is served: on host n % hosts."""
    return f"http://{host_address(n % hosts)}:{port}/feed/{n}.xml"


def _lead(text: str, limit: int = 400) -> str:
    """The first sentences of a text, up to about `limit` characters (a feed's summary)."""
    cut = text[:limit]
    end = max(cut.rfind(". "), cut.rfind("。"), cut.rfind("? "), cut.rfind("! "))
    return cut[: end + 1] if end > limit // 4 else cut


def _concurrency(timeline: list[tuple[float, float]]) -> dict[str, float]:
    """How many requests the farm had in hand: on average over the span from the first
    arrival to the last answer, and the most at once."""
    if not timeline:
        return {"mean": 0.0, "max": 0, "mean_service_ms": 0.0}
    span = max(t for _, t in timeline) - min(a for a, _ in timeline)
    busy = sum(t - a for a, t in timeline)
    events = sorted([(a, 1) for a, _ in timeline] + [(t, -1) for _, t in timeline])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return {"mean": busy / span if span > 0 else 0.0, "max": peak, "mean_service_ms": busy / len(timeline) * 1e3}


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


async def serve(farm: Farm, max_seconds: float) -> None:
    app = web.Application()
    app.router.add_get("/feed/{n}.xml", farm.handle_feed)
    app.router.add_route("*", "/control/{action}", farm.handle_control)
    runner = web.AppRunner(app, access_log=None, handle_signals=True, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, HOST, farm.port, backlog=1024).start()
    port = runner.addresses[0][1]
    for host in range(1, farm.hosts):  # the same port on the other loopback addresses
        await web.TCPSite(runner, host_address(host), port, backlog=256).start()
    sizes = [len(f.body) for f in farm.feeds]
    print(json.dumps({"port": port, "feeds": len(farm.feeds), "mean_bytes": sum(sizes) / max(1, len(sizes)),
                      "mean_gzip_bytes": sum(len(f.gz) for f in farm.feeds) / max(1, len(sizes)),
                      "kinds": _count(f.kind for f in farm.feeds)}), flush=True)
    try:
        await asyncio.sleep(max_seconds)
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve thousands of RSS feeds on 127.0.0.1.")
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--slow", type=float, default=0.01, help="share of feeds that answer late")
    parser.add_argument("--slow-delay", type=float, default=5.0, help="longest delay of a slow feed, seconds")
    parser.add_argument("--failing", type=float, default=0.01, help="share of feeds that always fail")
    parser.add_argument("--no-gzip", action="store_true")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--hosts", type=int, default=1, help="serve feed n on loopback address n %% hosts "
                        "(127.0.0.1, 127.1.0.2, ...), so that the feeds are on that many hosts (1)")
    parser.add_argument("--instance", type=int, default=None, help="a number in the ETags: farms of the same "
                        "seed and instance answer each other's validators (default: new per farm)")
    parser.add_argument("--texts", default="", help="a JSON-lines file of real stories (title, text), such as "
                        "../shared/eval/dev.jsonl: every new item of a cycle is one of them, syndicated")
    parser.add_argument("--max-seconds", type=float, default=4 * 3600, help="stop by itself after this long")
    args = parser.parse_args(argv)
    farm = Farm(args.feeds, seed=args.seed, slow=args.slow, failing=args.failing, slow_delay=args.slow_delay,
                use_gzip=not args.no_gzip, port=args.port,
                texts=labelled_texts(Path(args.texts)) if args.texts else None, instance=args.instance,
                hosts=args.hosts)
    try:
        asyncio.run(serve(farm, args.max_seconds))
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
