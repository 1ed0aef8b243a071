"""The baselines the daemon is compared with, each a plain script a person might write.

    python -m bench.baselines sequential --base URL --feeds N [--rounds 1]
    python -m bench.baselines aiohttp    --base URL --feeds N [--rounds 2] [--concurrency 32]

(a) `sequential`: `feedparser.parse(url)` for one feed after the other, nothing kept between
    rounds (feedparser fetches with urllib, gzip accepted, no conditional GET).
(b) `aiohttp`: what a well-written bot does: one aiohttp session, `concurrency` requests at
    once, conditional GET with the ETag / Last-Modified of the previous round (304 means
    nothing to parse), `feedparser.parse(body)` on each changed feed in the same process,
    and new entries found with an in-memory set of ids. No storage, no matching, no alerts.

Between rounds the script prints `{"round": i, ...}` and, when `--wait` is given, waits for a
line on stdin (the harness advances the farm meanwhile). Each round reports its own wall
time and CPU (`time.process_time()`, all threads of the process), and peak RSS at the end
(`VmHWM` of the process). Every loop is bounded: `--feeds` requests per round, and a round
stops at `--deadline` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import feedparser


def _hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _urls(base: str, feeds: int) -> list[str]:
    return [f"{base}/feed/{n}.xml" for n in range(feeds)]


def sequential_round(urls: list[str], deadline: float) -> dict:
    entries = failed = done = 0
    for url in urls:
        if time.monotonic() > deadline:
            break
        done += 1
        try:
            parsed = feedparser.parse(url)
        except Exception:  # feedparser lets some connection errors through
            failed += 1
            continue
        if parsed.get("status", 0) >= 400 or (parsed.bozo and not parsed.entries):
            failed += 1
        entries += len(parsed.entries)
    return {"requests": done, "entries": entries, "new": entries, "failed": failed, "finished": done == len(urls)}


class ConditionalPoller:
    def __init__(self, urls: list[str], concurrency: int, timeout: float) -> None:
        self.urls = urls
        self.concurrency = concurrency
        self.timeout = timeout
        self.validators: dict[str, tuple[str | None, str | None]] = {}
        self.seen: set[str] = set()

    async def round(self, deadline: float) -> dict:
        import aiohttp

        counts = {"requests": 0, "not_modified": 0, "parsed": 0, "entries": 0, "new": 0, "failed": 0}
        queue = list(reversed(self.urls))
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=self.concurrency)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

            async def worker() -> None:
                while queue and time.monotonic() < deadline:
                    url = queue.pop()
                    counts["requests"] += 1
                    headers = {}
                    etag, modified = self.validators.get(url, (None, None))
                    if etag:
                        headers["If-None-Match"] = etag
                    if modified:
                        headers["If-Modified-Since"] = modified
                    try:
                        async with session.get(url, headers=headers) as response:
                            if response.status == 304:
                                counts["not_modified"] += 1
                                continue
                            body = await response.read()
                            if response.status >= 400:
                                counts["failed"] += 1
                                continue
                            self.validators[url] = (response.headers.get("ETag"), response.headers.get("Last-Modified"))
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        counts["failed"] += 1
                        continue
                    parsed = feedparser.parse(body, response_headers={"content-location": url})
                    counts["parsed"] += 1
                    for entry in parsed.entries:
                        counts["entries"] += 1
                        key = entry.get("id") or entry.get("link") or entry.get("title", "")
                        if key not in self.seen:
                            self.seen.add(key)
                            counts["new"] += 1

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        counts["finished"] = not queue
        return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Baseline feed pollers for the benchmark.")
    parser.add_argument("kind", choices=["sequential", "aiohttp"])
    parser.add_argument("--base", required=True, help="the farm, e.g. http://127.0.0.1:8080")
    parser.add_argument("--feeds", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--deadline", type=float, default=900.0, help="longest round, seconds")
    parser.add_argument("--wait", action="store_true", help="wait for a line on stdin between rounds")
    args = parser.parse_args(argv)
    urls = _urls(args.base, args.feeds)
    poller = ConditionalPoller(urls, args.concurrency, args.timeout) if args.kind == "aiohttp" else None
    for index in range(1, args.rounds + 1):
        if index > 1 and args.wait:
            if not sys.stdin.readline():
                break
        wall0, cpu0 = time.perf_counter(), time.process_time()
        deadline = time.monotonic() + args.deadline
        if poller is None:
            result = sequential_round(urls, deadline)
        else:
            result = asyncio.run(poller.round(deadline))
        result.update(round=index, wall=time.perf_counter() - wall0, cpu=time.process_time() - cpu0, hwm=_hwm())
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
