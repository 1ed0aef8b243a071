"""The address policy: its rules, and every fetch path held to them against real local servers.

Every server here listens on 127.0.0.0/8. An injected policy treats 127.0.0.2 as a public
address (the production default treats all of 127.0.0.0/8 as loopback); 127.0.0.1 is "the
forbidden server", which counts every request it gets, and must get none.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from datetime import UTC, datetime

import pytest

from newswatch.alerts.runtime_sources import RuntimeSources
from newswatch.crawler.fetch.addresses import AddressPolicy, forbidden_kind
from newswatch.crawler.clock import ManualClock
from newswatch.crawler.fetch.engine import Crawler
from newswatch.crawler.outcomes import CrawlSummary, OutcomeRecorder
from newswatch.crawler.sources import CrawlerConfig, SourceConfig
from newswatch.crawler.store import StoryStore
from newswatch.storage import open_storage
from tests.fakes.feed_server import FeedItem
from tests.fakes.resolver import ScriptedResolver

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PUBLIC_ALIAS = ipaddress.ip_address("127.0.0.2")


def loopback_alias_is_public(address) -> str | None:
    return None if address == PUBLIC_ALIAS else forbidden_kind(address)


TEST_POLICY = AddressPolicy(classify=loopback_alias_is_public)


# -- the rules -------------------------------------------------------------------------------------

FEED = SourceConfig(name="wire", url="http://feeds.example.com/feed.xml")
IP = ipaddress.ip_address


@pytest.mark.parametrize(("from_chat", "restrict", "allowed", "steps", "refused"), [
    # config source, trusted: its own host may be anything
    (False, False, (), [("http://feeds.example.com/a", "10.0.0.5")], None),
    # ... but a public one may not lead into the private network
    (False, False, (), [("http://feeds.example.com/a", "93.184.216.34"), ("http://intra.example/x", "10.0.0.5")],
     "a public source's links and redirects may not lead to a private address"),
    (False, False, (), [("http://feeds.example.com/a", "93.184.216.34"), ("http://127.0.0.1/x", "127.0.0.1")],
     "resolves to a loopback address (127.0.0.1), not allowed for source wire"),
    # a private one may (an intranet feed with intranet article pages)
    (False, False, (), [("http://feeds.example.com/a", "10.0.0.5"), ("http://intra.example/x", "10.0.0.6")], None),
    # from Telegram: only public addresses and the allowed networks
    (True, False, (), [("http://feeds.example.com/a", "127.0.0.1")], "sources added from Telegram may reach only"),
    (True, False, ("10.0.0.0/8",), [("http://feeds.example.com/a", "10.0.0.5")], None),
    (True, False, ("10.0.0.0/8",), [("http://feeds.example.com/a", "10.0.0.5"), ("http://b.example/", "127.0.0.1")],
     "loopback"),
    (True, False, ("10.0.0.0/8",), [("http://feeds.example.com/a", "93.184.216.34"), ("http://b.example/", "10.1.1.1")],
     "a public source's links"),
    # crawler.restrict_private_addresses: config sources too
    (False, True, (), [("http://feeds.example.com/a", "192.168.1.1")], "crawler.restrict_private_addresses"),
    (False, False, (), [("http://feeds.example.com/a", "93.184.216.34"), ("http://b.example/", "169.254.169.254")],
     "link-local"),
])
def test_policy_rules(from_chat, restrict, allowed, steps, refused) -> None:
    policy = AddressPolicy(allowed_networks=tuple(ipaddress.ip_network(n) for n in allowed),
                           restrict_config_sources=restrict)
    guard = policy.guard(FEED, from_chat=from_chat)
    reasons = [guard.refusal(url, IP(address)) for url, address in steps]
    assert reasons[:-1] == [None] * (len(steps) - 1)
    if refused is None:
        assert reasons[-1] is None
    else:
        assert reasons[-1] is not None and refused in reasons[-1] and reasons[-1].startswith("refused: ")


def test_refusal_names_the_url_without_credentials() -> None:
    guard = AddressPolicy().guard(FEED, from_chat=True)
    why = guard.refusal("http://bob:hunter2@feeds.example.com/a", IP("127.0.0.1"))
    assert why is not None and "hunter2" not in why and "http://***@feeds.example.com/a" in why


# -- the fetch paths ---------------------------------------------------------------------------------


def _crawl(tmp_path, sources, *, from_chat=(), resolver=None, policy=TEST_POLICY) -> tuple[CrawlSummary, StoryStore]:
    config = CrawlerConfig(delay=0, timeout=5, autothrottle=False, parse_workers=0)
    store = open_storage(tmp_path / "nw.db").stories
    crawler = Crawler(config, OutcomeRecorder(store, ManualClock(NOW), config), policy=policy, resolver=resolver)

    async def run() -> CrawlSummary:
        try:
            return await crawler.crawl(sources, from_chat)
        finally:
            await crawler.close()

    return asyncio.run(run()), store


def test_feed_redirect_into_loopback_is_refused(tmp_path, public, forbidden) -> None:
    public.set("/feed.xml", status=302, headers={"Location": forbidden.url("/secret")})
    summary, _ = _crawl(tmp_path, [SourceConfig(name="wire", url=public.url("/feed.xml"))])
    assert forbidden.hits == []
    error = summary.failures["wire"]
    assert error == (f"refused: {forbidden.url('/secret')} resolves to a loopback address (127.0.0.1), not allowed "
                     "for source wire: a public source's links and redirects may not lead to a loopback address")


def test_config_feed_on_loopback_still_works_and_may_redirect_there(tmp_path, forbidden) -> None:
    forbidden.set_feed("/feed.xml", [FeedItem("Kim meets Trump", "http://127.0.0.1/kim")])
    forbidden.set("/old.xml", status=301, headers={"Location": forbidden.url("/feed.xml")})
    summary, _ = _crawl(tmp_path, [SourceConfig(name="local", url=forbidden.url("/old.xml"))], policy=AddressPolicy())
    assert summary.ok == 1 and summary.stories_new == 1


def test_dns_rebinding_after_addsource_is_refused_when_fetching(tmp_path, forbidden) -> None:
    resolver = ScriptedResolver({"rebind.test": ["127.0.0.2", "127.0.0.1"]})
    runtime = RuntimeSources(open_storage(tmp_path / "rs.db").alerts, [], policy=TEST_POLICY, resolver=resolver)
    url = f"http://rebind.test:{forbidden.port}/secret"
    source = asyncio.run(runtime.add("rebound", url, "1m", by=1, now=NOW))  # checked: "public"
    summary, _ = _crawl(tmp_path, [source], from_chat={"rebound"}, resolver=resolver)
    assert resolver.lookups["rebind.test"] == 2
    assert forbidden.hits == []
    assert summary.failures["rebound"].startswith(
        f"refused: {url} resolves to a loopback address (127.0.0.1), not allowed for source rebound: "
        "sources added from Telegram may reach only public addresses")


def test_rebinding_within_a_crawl_is_refused_for_article_pages(tmp_path, public, forbidden, caplog) -> None:
    """A full-text feed whose item links a name that resolves to the public server first and
    to the forbidden one next: the second connection is refused."""
    resolver = ScriptedResolver({"news.test": ["127.0.0.2", "127.0.0.1"]})
    port = public.port
    forbidden_port = forbidden.port
    public.set_feed("/feed.xml", [FeedItem("Kim meets Trump again", f"http://news.test:{forbidden_port}/secret",
                                           description="Kim Jong Un and Donald Trump met.")])
    source = SourceConfig(name="full", url=f"http://news.test:{port}/feed.xml", full_text=True)
    # the feed's own host is news.test:port; its item is news.test:forbidden_port, another origin
    with caplog.at_level(logging.INFO, logger="newswatch.crawler"):
        summary, store = _crawl(tmp_path, [source], resolver=resolver)
    assert forbidden.hits == []
    assert summary.ok == 1 and summary.pages_failed == 1
    assert "refused: http://news.test:" in caplog.text and "not allowed for source full" in caplog.text
    assert store.known_urls([f"http://news.test:{forbidden_port}/secret"])  # stored with the feed's text


def test_sitemap_entries_into_loopback_are_refused(tmp_path, public, forbidden) -> None:
    public.set("/sitemap.xml", (
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<url><loc>{forbidden.url('/secret')}</loc></url></urlset>"), content_type="application/xml")
    summary, store = _crawl(tmp_path, [SourceConfig(name="map", kind="sitemap", url=public.url("/sitemap.xml"))])
    assert forbidden.hits == []
    assert summary.ok == 1 and summary.pages_failed == 1 and summary.stories_new == 0


def test_site_link_that_redirects_into_loopback_is_refused(tmp_path, public, forbidden) -> None:
    public.set("/index", f'<html><body><a href="{public.url("/view/1")}">story</a></body></html>',
               content_type="text/html")
    public.set("/view/1", status=302, headers={"Location": forbidden.url("/secret")})
    source = SourceConfig(name="site", kind="site", url=public.url("/index"), follow="/view/")
    summary, _ = _crawl(tmp_path, [source])
    assert forbidden.hits == []
    assert summary.ok == 1 and summary.pages_failed == 1 and summary.stories_new == 0
