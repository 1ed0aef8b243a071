"""Parsing feeds off the event loop, in worker processes with a time and memory bound.

feedparser is pure Python: a large or broken document can take seconds (a truncated 10 MB
feed ~30 s). Parsed in the daemon's loop, that would stall every other source and the
Telegram notifier. `ParsePool` runs `parse_feed` in a small process pool instead:

- each parse has a deadline; a worker that overruns is killed and the pool rebuilt, and the
  source gets a clear error ("parsing took longer than 20s");
- each worker's address space is capped (RLIMIT_AS), so a pathological document ends in a
  MemoryError for that source, not an out-of-memory machine;
- parsing large documents in a worker while the loop parses small ones uses a second core.

Small documents are parsed inline, in the loop, because that is far cheaper than a round
trip to a worker (pickling the document there and its stories back) and cannot stall for
long: feedparser needs 1-3 microseconds per byte even on broken feeds, so a document under
`inline_below` (64 KB by default) costs at most a fifth of a second. The workers are
started only when the first larger document arrives. `ParsePool(workers=0)` parses
everything inline (for tools and tests that do not need isolation).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
from datetime import datetime

from newswatch.crawler.parse.feeds import ParsedFeed, parse_feed

log = logging.getLogger("newswatch.crawler")

DEFAULT_TIMEOUT = 20.0
DEFAULT_MEMORY_LIMIT = 1 << 30  # bytes of address space per worker
DEFAULT_INLINE_BELOW = 64 * 1024  # bytes: smaller documents are parsed in the loop


def _prepare_worker(limit: int) -> None:
    """Cap the worker's memory, and (on Linux) make it die with the daemon, even a killed one."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # not on this platform, or already lower
        pass
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the daemon died before the line above took effect
            os._exit(0)
    except (OSError, AttributeError):  # not Linux
        pass


_PR_SET_PDEATHSIG = 1


def _parse(body: bytes, source: str, url: str, content_type: str, now: datetime) -> ParsedFeed:
    try:
        return parse_feed(body, source=source, url=url, content_type=content_type, now=now)
    except MemoryError:
        return ParsedFeed(stories=[], title="", ttl_seconds=None,
                          problem="parsing needed more memory than allowed; gave up")


class ParsePool:
    def __init__(self, workers: int = 1, *, timeout: float = DEFAULT_TIMEOUT,
                 memory_limit: int = DEFAULT_MEMORY_LIMIT, inline_below: int = DEFAULT_INLINE_BELOW) -> None:
        self.workers = workers
        self.timeout = timeout
        self.memory_limit = memory_limit
        self.inline_below = inline_below
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            # spawn: workers are the daemon's own children (so they die with it) and inherit
            # nothing of its state (sockets, threads, the event loop)
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_prepare_worker, initargs=(self.memory_limit,),
            )
        return self._pool

    async def parse(self, body: bytes, *, source: str, url: str, content_type: str, now: datetime) -> ParsedFeed:
        if self.workers <= 0 or len(body) < self.inline_below:
            return _parse(body, source, url, content_type, now)
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor(), _parse, body, source, url, content_type, now)
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            log.warning("source %s: parsing took longer than %.0fs; worker stopped", source, self.timeout)
            self._reset()
            return ParsedFeed([], "", None, f"parsing took longer than {self.timeout:.0f}s; gave up")
        except concurrent.futures.process.BrokenProcessPool:
            self._reset()
            return ParsedFeed([], "", None, "the parser process died (out of memory?); gave up")

    def _reset(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
