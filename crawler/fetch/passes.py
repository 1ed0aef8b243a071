"""One pass over a batch of sources inside a long-lived Scrapy crawler.

The `Crawler` (`newswatch.crawler.fetch.engine`) keeps one Scrapy crawler per kind of source
for the life of the process and feeds it the first requests of each pass. `CrawlPass` is what
one pass keeps while the spider works on it: its `CrawlSummary`, the address guard of each
source, the sources that asked to wait (429/503), each source's article budget, the article
URLs it fetches and the robots.txt rules it read. Requests carry their pass in
`meta["crawl_pass"]`; outcomes reach the pipeline as `PassOutcome`s.

A pass is done when nothing of it is open: every request it made counts until its callback
or errback has finished (`tracked`), every outcome until the pipeline has recorded it. The
spider going idle also ends every pass it holds (a request some Scrapy component dropped
without a callback cannot keep a pass open).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import scrapy
from scrapy.exceptions import IgnoreRequest

from newswatch.crawler.fetch.addresses import AddressPolicy, SourceGuard
from newswatch.crawler.outcomes import CrawlSummary, FetchOutcome
from newswatch.crawler.sources import SourceConfig


class SourceHalted(IgnoreRequest):
    """A request not sent: its source asked to wait (429/503) earlier in the pass."""


class CrawlPass:
    """What one pass keeps while a long-lived spider works on its sources."""

    def __init__(self, summary: CrawlSummary, guards: Mapping[str, SourceGuard] | None = None) -> None:
        self.summary = summary
        self.guards = dict(guards or {})
        self.halted: set[str] = set()  # sources that asked to wait: nothing more is sent for them
        self.budget: dict[str, int] = {}  # article pages each source may still fetch
        self.queued: set[str] = set()  # article URLs this pass fetches
        self.robots: dict[str, Any] = {}  # robots.txt rules read in this pass, by host
        self.open = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def guard_for(self, source: SourceConfig) -> SourceGuard:
        """The address guard of a source in this pass (a config source's default: trusted)."""
        guard = self.guards.get(source.name)
        if guard is None:
            guard = self.guards[source.name] = AddressPolicy().guard(source)
        return guard

    def adopt(self, output: Any) -> Any:
        """Count a request or an outcome as open in this pass; outcomes become `PassOutcome`s."""
        if isinstance(output, FetchOutcome):
            self.open += 1
            return PassOutcome(self, output)
        if isinstance(output, scrapy.Request):
            output.meta["crawl_pass"] = self
            self.open += 1
        return output

    def settle(self) -> None:
        """One request or outcome of this pass is done."""
        self.open -= 1
        if self.open <= 0:
            self.finish()

    def finish(self, error: BaseException | None = None) -> None:
        if self.done.done():
            return
        if error is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(error)


@dataclass(frozen=True)
class PassOutcome:
    """A `FetchOutcome` on its way to the pipeline, with the pass whose summary it counts in."""

    crawl_pass: CrawlPass
    outcome: FetchOutcome


def tracked(method: Callable[..., Any]) -> Callable[..., Any]:
    """A spider callback or errback whose output its request's pass adopts, and after which
    that request is settled."""

    @functools.wraps(method)
    async def callback(spider: Any, result: Any, **kwargs: Any) -> Any:
        crawl_pass: CrawlPass = result.request.meta["crawl_pass"]
        try:
            outputs = method(spider, result, **kwargs)
            if hasattr(outputs, "__aiter__"):
                async for output in outputs:
                    yield crawl_pass.adopt(output)
            else:
                for output in outputs or ():
                    yield crawl_pass.adopt(output)
        finally:
            crawl_pass.settle()

    return callback
