"""Experimental changes to the daemon, applied only inside a benchmark run, to measure what a
product change would buy before it is made (`python -m bench cycle --variant NAME`).

A variant patches `crawler.fetch.scrapy_settings` in the daemon process (through
`bench.probe`, which `DaemonRun` and `crawl_once` use when a variant is set); the product's
files are not touched. Results of a variant run are labelled with its name.

    no-return-check   WARN_ON_GENERATOR_RETURN_VALUE = False: Scrapy stops checking, for
                      every response, whether the callback is a generator with a `return
                      value` (the check re-reads and re-parses the callback's source when
                      its weak cache has dropped the bound method, which is most of the time)
    lean-scrapy       no-return-check, plus the Scrapy components a feed poll does not use
                      switched off: the referer, URL-length, depth and offsite middlewares,
                      HTTP auth, proxy, meta-refresh, downloader stats, and a stats collector
                      that keeps nothing
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

VARIANTS = ("no-return-check", "lean-scrapy")


def _no_return_check(settings: dict[str, Any]) -> None:
    settings["WARN_ON_GENERATOR_RETURN_VALUE"] = False


def _lean(settings: dict[str, Any]) -> None:
    _no_return_check(settings)
    downloader = dict(settings.get("DOWNLOADER_MIDDLEWARES", {}))
    for name in ("offsite.OffsiteMiddleware", "httpauth.HttpAuthMiddleware", "redirect.MetaRefreshMiddleware",
                 "httpproxy.HttpProxyMiddleware", "stats.DownloaderStats"):
        downloader[f"scrapy.downloadermiddlewares.{name}"] = None
    settings["DOWNLOADER_MIDDLEWARES"] = downloader
    spider = dict(settings.get("SPIDER_MIDDLEWARES", {}))
    for name in ("referer.RefererMiddleware", "urllength.UrlLengthMiddleware", "depth.DepthMiddleware"):
        spider[f"scrapy.spidermiddlewares.{name}"] = None
    settings["SPIDER_MIDDLEWARES"] = spider
    settings["STATS_CLASS"] = "scrapy.statscollectors.DummyStatsCollector"
    extensions = dict(settings.get("EXTENSIONS", {}))
    extensions["scrapy.extensions.corestats.CoreStats"] = None
    settings["EXTENSIONS"] = extensions


_PATCHES: dict[str, Callable[[dict[str, Any]], None]] = {"no-return-check": _no_return_check, "lean-scrapy": _lean}


def apply(name: str) -> None:
    """Patch the daemon's Scrapy settings in this process."""
    from crawler import fetch

    patch = _PATCHES[name]
    original = fetch.scrapy_settings

    def scrapy_settings(config):
        settings = original(config)
        patch(settings)
        return settings

    fetch.scrapy_settings = scrapy_settings  # type: ignore[assignment]
