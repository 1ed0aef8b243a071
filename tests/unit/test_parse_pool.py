"""Parsing in worker processes: results come back, and an overlong parse is cut off."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from newswatch.crawler.parse.pool import ParsePool

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FEED = (b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        b"<item><title>North Korea summit</title><link>https://x.example/1</link></item></channel></rss>")


def _big_feed(items: int) -> bytes:
    body = "".join(f"<item><title>Story {i} &amp; more</title><link>https://x.example/{i}</link>"
                   f"<description>{'word ' * 40}</description></item>" for i in range(items))
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{body}</channel></rss>'.encode()


def test_parses_in_a_worker_process() -> None:
    pool = ParsePool(workers=1, inline_below=0)
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


def test_small_documents_are_parsed_inline_and_large_ones_start_the_workers() -> None:
    pool = ParsePool(workers=1, inline_below=4096)
    big = _big_feed(100)
    assert len(FEED) < 4096 < len(big)

    async def scenario():
        small = await pool.parse(FEED, source="s", url="https://x.example/feed", content_type="", now=NOW)
        started_by_small = pool._pool is not None
        large = await pool.parse(big, source="b", url="https://x.example/big", content_type="", now=NOW)
        return small, started_by_small, large, pool._pool is not None

    try:
        small, started_by_small, large, started_by_large = asyncio.run(scenario())
    finally:
        pool.close()
    assert len(small.stories) == 1 and len(large.stories) == 100
    assert not started_by_small and started_by_large


def test_inline_mode() -> None:
    parsed = asyncio.run(ParsePool(workers=0).parse(FEED, source="s", url="https://x.example/feed", content_type="", now=NOW))
    assert len(parsed.stories) == 1


WORKER_SCRIPT = """
import asyncio, os, sys
from datetime import datetime, UTC
from newswatch.crawler.parse.pool import ParsePool

async def main():
    pool = ParsePool(workers=2, inline_below=0)
    await pool.parse(sys.stdin.buffer.read(), source="s", url="https://x.example/f", content_type="",
                     now=datetime.now(UTC))
    me = str(os.getpid())
    kids = [p for p in os.listdir("/proc") if p.isdigit() and open(f"/proc/{p}/stat").read().split()[3] == me]
    print(" ".join(kids), flush=True)
    os.kill(os.getpid(), 9)

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_workers_die_with_a_killed_daemon(tmp_path) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    if not Path("/proc").is_dir():
        return
    script = tmp_path / "daemon_like.py"
    script.write_text(WORKER_SCRIPT)
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(script)], input=FEED, capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(root)})
    kids = proc.stdout.decode().split()
    assert len(kids) >= 2, proc.stderr.decode()[-2000:]
    def running(pid: str) -> bool:
        """The process is there and not a zombie (it may vanish while we look)."""
        try:
            return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False

    deadline = time.monotonic() + 20  # a bound on a loaded machine, not a speed requirement
    while time.monotonic() < deadline and any(running(pid) for pid in kids):
        time.sleep(0.05)
    alive = [pid for pid in kids if running(pid)]
    assert not alive, f"worker processes outlived the killed parent: {alive}"
