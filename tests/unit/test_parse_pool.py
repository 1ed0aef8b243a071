"""Parsing in worker processes: results come back, and an overlong parse is cut off."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from crawler.parse_pool import ParsePool

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FEED = (b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        b"<item><title>North Korea summit</title><link>https://x.example/1</link></item></channel></rss>")


def _big_feed(items: int) -> bytes:
    body = "".join(f"<item><title>Story {i} &amp; more</title><link>https://x.example/{i}</link>"
                   f"<description>{'word ' * 40}</description></item>" for i in range(items))
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{body}</channel></rss>'.encode()


def test_parses_in_a_worker_process() -> None:
    pool = ParsePool(workers=1)
    try:
        parsed = asyncio.run(pool.parse(FEED, source="s", url="https://x.example/feed", content_type="", now=NOW))
    finally:
        pool.close()
    assert [s.title for s in parsed.stories] == ["North Korea summit"]


def test_overlong_parse_is_stopped_and_the_pool_recovers() -> None:
    pool = ParsePool(workers=1, timeout=1.5)

    async def scenario():
        started = time.monotonic()
        slow = await pool.parse(_big_feed(80_000), source="huge", url="https://x.example/f", content_type="", now=NOW)
        took = time.monotonic() - started
        fine = await pool.parse(FEED, source="s", url="https://x.example/feed", content_type="", now=NOW)
        return slow, took, fine

    try:
        slow, took, fine = asyncio.run(scenario())
    finally:
        pool.close()
    assert slow.stories == [] and "longer than" in slow.problem
    assert took < 6
    assert len(fine.stories) == 1


def test_inline_mode() -> None:
    parsed = asyncio.run(ParsePool(workers=0).parse(FEED, source="s", url="https://x.example/feed", content_type="", now=NOW))
    assert len(parsed.stories) == 1
