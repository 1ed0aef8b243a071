"""End to end: news sites without feeds, full-text feeds and hostile pages, crawled by the
real daemon process (console mode: no token, alerts on stdout) from a local server.

- A site with a paginated listing, English and Korean articles, a robots.txt that disallows
  /private/, and a Google News sitemap: every article is stored once, nothing disallowed is
  requested, relevant stories alert, and later passes request no article page again.
- A `full_text: true` feed whose items carry one-line summaries: the stored stories carry
  the pages' whole text.
- Hostile pages (nested tags, a response that never ends, a redirect loop, EUC-KR without a
  charset): each costs bounded time and memory, and the daemon keeps running.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.e2e.conftest import ROOT, wait_until, write_config
from tests.fakes.feed_server import FeedItem, FeedServer

FAST = {"crawler": {"delay": 0, "timeout": 3}}

ARTICLES = {
    "kim-xi": ("en", "Kim Jong Un holds summit talks with Xi Jinping in Beijing",
               "North Korean leader Kim Jong Un held summit talks with Chinese President Xi Jinping in Beijing on "
               "Tuesday, state media said, as Pyongyang and Washington prepare for a second summit between Kim and "
               "U.S. President Donald Trump. The two leaders discussed the denuclearisation of the Korean Peninsula "
               "and sanctions relief, officials said."),
    "g20": ("en", "G20 leaders open summit in Rio de Janeiro with pledge on hunger",
            "Leaders of the Group of 20 major economies opened their annual summit in Rio de Janeiro on Monday, where "
            "host Brazil launched a global alliance against hunger and poverty and pressed for a tax on the super-rich."),
    "sanctions": ("en", "UN Security Council tightens sanctions on North Korea over missile tests",
                  "The United Nations Security Council voted on Friday to tighten sanctions on North Korea, capping oil "
                  "imports and banning exports of coal after Pyongyang's latest ballistic missile tests. The resolution "
                  "also targets ship-to-ship transfers at sea."),
    "ko-summit": ("ko", "김정은, 푸틴과 블라디보스토크서 첫 북러 정상회담",
                  "김정은 북한 국무위원장이 블라디보스토크에서 블라디미르 푸틴 러시아 대통령과 첫 북러 정상회담을 열었다고 "
                  "조선중앙통신이 보도했다. 두 정상은 한반도 비핵화와 대북 제재 문제를 논의했다."),
    "ko-weather": ("ko", "내일 전국 맑고 일교차 커…서울 낮 최고 25도",
                   "기상청은 내일 전국이 대체로 맑겠으나 낮과 밤의 기온 차가 크겠다고 밝혔다. 서울의 낮 최고기온은 "
                   "25도로 예상되며 주말에는 비 소식이 있다."),
    "hanoi": ("en", "Trump and Kim to meet in Hanoi for second summit",
              "U.S. President Donald Trump and North Korean leader Kim Jong Un will hold their second summit in Hanoi, "
              "Vietnam, the White House said, as negotiations on denuclearization and sanctions relief continue."),
}
FILLER = {
    "en": "Reporting was contributed by correspondents in the region. The story was updated with further details "
          "after the officials spoke to reporters at the end of the day.",
    "ko": "이 기사는 현지 특파원들의 취재를 바탕으로 작성됐다. 관계자들의 추가 설명에 따라 내용이 보완됐다.",
}
RELEVANT = ("kim-xi", "sanctions", "ko-summit", "hanoi")


def article_page(key: str, published: datetime) -> str:
    language, title, text = ARTICLES[key]
    paragraphs = "".join(f"<p>{p}</p>" for p in (text, FILLER[language], FILLER[language]))
    return (
        f'<!doctype html><html lang="{language}"><head><meta charset="utf-8"><title>{title} | Local News</title>'
        f'<meta property="og:title" content="{title}"><meta property="og:site_name" content="Local News">'
        f'<meta property="article:published_time" content="{published.isoformat()}"></head>'
        f'<body><nav><a href="/">Home</a> <a href="/news/">News</a></nav>'
        f"<article><h1>{title}</h1>{paragraphs}</article>"
        f"<footer><p>Copyright Local News. All rights reserved.</p></footer></body></html>"
    )


def listing(links: list[str], next_href: str = "") -> str:
    items = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    more = f'<a class="pager" rel="next" href="{next_href}">Next</a>' if next_href else ""
    return f"<!doctype html><html><body><nav><a href='/about'>About</a></nav><ul>{items}</ul>{more}</body></html>"


def news_sitemap(entries: list[tuple[str, str, datetime]]) -> str:
    urls = "".join(
        f"<url><loc>{loc}</loc><news:news><news:publication><news:name>Wire</news:name>"
        f"<news:language>en</news:language></news:publication>"
        f"<news:publication_date>{when.isoformat()}</news:publication_date><news:title>{title}</news:title>"
        f"</news:news></url>"
        for loc, title, when in entries
    )
    return ('<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
            f'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">{urls}</urlset>')


def stored(db: Path) -> list[sqlite3.Row]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM stories ORDER BY seq").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def test_site_and_news_sitemap_crawled_on_schedule(tmp_path, feeds: FeedServer, daemon_factory) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    pages = {
        "/news/2019/kim-xi-beijing.html": "kim-xi",
        "/news/2024/g20-rio.html": "g20",
        "/news/ko/kim-putin-summit.html": "ko-summit",
        "/news/ko/weather.html": "ko-weather",
        "/news/2017/un-sanctions.html": "sanctions",
        "/wire/trump-kim-hanoi.html": "hanoi",
    }
    for i, (path, key) in enumerate(pages.items()):
        feeds.set(path, article_page(key, now - timedelta(hours=i)), content_type="text/html; charset=utf-8")
    feeds.set("/private/leaked-cable.html", article_page("kim-xi", now), content_type="text/html")
    feeds.set("/robots.txt", "User-agent: *\nDisallow: /private/\n", content_type="text/plain")
    feeds.set("/news/", listing(["/news/2019/kim-xi-beijing.html", "/news/2024/g20-rio.html",
                                 "/news/ko/kim-putin-summit.html", "/private/leaked-cable.html", "/about"],
                                next_href="/news/?page=2"), content_type="text/html")
    feeds.set("/news/?page=2", listing(["/news/ko/weather.html", "/news/2017/un-sanctions.html"]),
              content_type="text/html")
    feeds.set("/news-sitemap.xml", news_sitemap([
        (feeds.url("/wire/trump-kim-hanoi.html"), "Trump and Kim to meet in Hanoi for second summit", now),
        (feeds.url("/news/2019/kim-xi-beijing.html"), "Kim Jong Un holds summit talks with Xi Jinping in Beijing", now),
    ]), content_type="application/xml")
    config = write_config(tmp_path, [
        {"name": "local-news", "kind": "site", "url": feeds.url("/news/"), "follow": r"/(news|private)/.+\.html$",
         "depth": 2, "interval": 1},
        {"name": "wire-sitemap", "kind": "sitemap", "url": feeds.url("/news-sitemap.xml"), "interval": 1},
    ], **FAST)
    daemon = daemon_factory(config, token=None).start()
    db = tmp_path / "newswatch.db"
    wait_until(lambda: len(stored(db)) >= len(pages), timeout=60, what="every article stored")
    listing_polls = len(feeds.hits_for("/news/"))
    sitemap_polls = len(feeds.hits_for("/news-sitemap.xml"))
    wait_until(lambda: len(feeds.hits_for("/news/")) >= listing_polls + 2
               and len(feeds.hits_for("/news-sitemap.xml")) >= sitemap_polls + 2, timeout=30, what="two more passes")
    assert daemon.stop() == 0
    output = daemon.output()
    alerts = (tmp_path / "daemon-1.out").read_text()

    rows = stored(db)
    urls = [r["url"] for r in rows]
    assert sorted(urls) == sorted(feeds.url(p) for p in pages), urls
    for path in pages:
        assert len(feeds.hits_for(path)) == 1, f"{path} requested {len(feeds.hits_for(path))} times"
    assert not feeds.hits_for("/private/leaked-cable.html"), "a page disallowed by robots.txt was requested"
    assert len(feeds.hits_for("/robots.txt")) <= 2, "robots.txt is kept between passes (one fetch per spider)"
    assert all("newswatch" in h.headers.get("User-Agent", "") for h in feeds.hits)
    by_url = {r["url"]: r for r in rows}
    korean = by_url[feeds.url("/news/ko/kim-putin-summit.html")]
    assert korean["title"] == ARTICLES["ko-summit"][1] and korean["language"] == "ko"
    assert "조선중앙통신" in korean["text"] and "All rights reserved" not in korean["text"]
    assert by_url[feeds.url("/wire/trump-kim-hanoi.html")]["title"] == ARTICLES["hanoi"][1]
    for key in RELEVANT:
        assert alerts.count(ARTICLES[key][1]) == 1, f"{key}: {alerts.count(ARTICLES[key][1])} alerts"
    for key in ("g20", "ko-weather"):
        assert ARTICLES[key][1] not in alerts, f"alert for {key}"
    assert "Traceback" not in output, output[-3000:]


def test_full_text_feed_stores_whole_stories(tmp_path, feeds: FeedServer) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    items = []
    for i, key in enumerate(("kim-xi", "sanctions", "g20")):
        path = f"/story/{key}.html"
        feeds.set(path, article_page(key, now - timedelta(hours=i)), content_type="text/html")
        items.append(FeedItem(ARTICLES[key][1], feeds.url(path), ARTICLES[key][2].split(",")[0] + ".",
                              published=now - timedelta(hours=i)))
    items.append(FeedItem("Briefing: no page", feeds.url("/private/briefing.html"), "A one-line summary.",
                          published=now))
    feeds.set("/private/briefing.html", article_page("hanoi", now), content_type="text/html")
    feeds.set("/robots.txt", "User-agent: *\nDisallow: /private/\n", content_type="text/plain")
    feeds.set_feed("/wire.xml", items)
    config = write_config(tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed",
                                      "full_text": True, "interval": 60}], **FAST)
    proc = subprocess.run([sys.executable, "-m", "newswatch.cli", "crawl", "--once", "-c", str(config)],
                          cwd=ROOT, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = {r["url"]: r for r in stored(tmp_path / "newswatch.db")}
    assert len(rows) == 4
    for key in ("kim-xi", "sanctions", "g20"):
        row = rows[feeds.url(f"/story/{key}.html")]
        summary = next(i.description for i in items if i.link.endswith(f"/{key}.html"))
        assert row["title"] == ARTICLES[key][1]
        assert len(row["text"]) > 3 * len(summary) and ARTICLES[key][2][-40:] in row["text"], row["text"]
    assert rows[feeds.url("/private/briefing.html")]["text"] == "A one-line summary."
    assert not feeds.hits_for("/private/briefing.html")
    assert "Kim Jong Un holds summit talks" in proc.stdout
    # A second pass: the feed is unchanged (304) and no page is requested again.
    proc = subprocess.run([sys.executable, "-m", "newswatch.cli", "crawl", "--once", "-c", str(config)],
                          cwd=ROOT, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert all(len(feeds.hits_for(f"/story/{k}.html")) == 1 for k in ("kim-xi", "sanctions", "g20"))


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_hostile_pages_cost_bounded_time_and_memory(tmp_path, feeds: FeedServer, daemon_factory) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    nested_small = b"<html><head><title>x</title></head><body>" + b"<div><span>deep " * 230_000 + b"</body></html>"
    nested_big = b"<html><body>" + b"<div><b>" * 1_400_000 + b"</body></html>"
    euc_kr = article_page("ko-summit", now).replace('<meta charset="utf-8">', "").encode("euc-kr")
    hostile = {
        "/h/nested-3mb.html": dict(body=nested_small, content_type="text/html"),
        "/h/nested-10mb.html": dict(body=nested_big, content_type="text/html"),
        "/h/never-ending.html": dict(body=b"<p>more and more</p>" * 500, content_type="text/html", forever=True),
        "/h/loop-a.html": dict(status=302, headers={"Location": "/h/loop-b.html"}),
        "/h/loop-b.html": dict(status=302, headers={"Location": "/h/loop-a.html"}),
        "/h/euc-kr.html": dict(body=euc_kr, content_type="text/html"),
        "/h/plain.html": dict(body=article_page("hanoi", now).encode(), content_type="text/html"),
    }
    for path, route in hostile.items():
        feeds.set(path, **route)
    entry = ["/h/nested-3mb.html", "/h/nested-10mb.html", "/h/never-ending.html", "/h/loop-a.html",
             "/h/euc-kr.html", "/h/plain.html"]
    feeds.set("/", listing(entry), content_type="text/html")
    config = write_config(tmp_path, [{"name": "hostile", "kind": "site", "url": feeds.url("/"),
                                      "follow": r"/h/", "interval": 1}], **FAST)
    daemon = daemon_factory(config, token=None).start()
    started = time.monotonic()
    db = tmp_path / "newswatch.db"
    wait_until(lambda: {feeds.url("/h/euc-kr.html"), feeds.url("/h/plain.html")} <= {r["url"] for r in stored(db)},
               timeout=60, what="the sound pages stored")
    wait_until(lambda: all(feeds.hits_for(p) for p in entry), timeout=30, what="every hostile page requested")
    polls = len(feeds.hits_for("/"))
    wait_until(lambda: len(feeds.hits_for("/")) >= polls + 2, timeout=40, what="two more passes")
    elapsed = time.monotonic() - started
    assert daemon.proc is not None and daemon.proc.poll() is None, "the daemon died"
    peak = _peak_rss_mb(daemon.proc.pid)
    assert daemon.stop() == 0
    rows = {r["url"]: r for r in stored(db)}
    korean = rows[feeds.url("/h/euc-kr.html")]
    assert korean["title"] == ARTICLES["ko-summit"][1] and "조선중앙통신" in korean["text"]
    assert len(feeds.hits_for("/h/loop-a.html")) + len(feeds.hits_for("/h/loop-b.html")) <= 6
    for path in ("/h/nested-10mb.html", "/h/never-ending.html"):
        assert len(feeds.hits_for(path)) == 1, f"{path} was tried again at once"
    assert peak < 700, f"peak memory {peak:.0f} MB"
    assert elapsed < 60
    output = daemon.output()
    assert "Traceback" not in output, output[-3000:]
    report = {"seconds_until_two_more_passes": round(elapsed, 1), "peak_rss_mb": round(peak)}
    print("hostile pages:", json.dumps(report))


def test_retry_after_halts_a_source_and_failures_back_it_off(tmp_path, feeds: FeedServer, caplog) -> None:
    import asyncio
    import logging

    from newswatch.crawler.clock import ManualClock
    from newswatch.crawler.fetch.engine import Crawler
    from newswatch.crawler.outcomes import OutcomeRecorder
    from newswatch.crawler.sources import CrawlerConfig, SourceConfig
    from newswatch.storage import open_storage

    now = datetime.now(UTC).replace(microsecond=0)
    feeds.set("/busy/", listing([f"/busy/{i}.html" for i in range(5)]), content_type="text/html")
    feeds.set("/busy/0.html", "slow down", status=429, headers={"Retry-After": "120"}, content_type="text/plain")
    for i in range(1, 5):
        feeds.set(f"/busy/{i}.html", article_page("hanoi", now), content_type="text/html", delay=0.2)
    feeds.set("/down/", "maintenance", status=500, content_type="text/plain")
    clock = ManualClock(now)
    config = CrawlerConfig(delay=0, per_host=1, timeout=5, failure_backoff_max=3600)
    store = open_storage(tmp_path / "nw.db").stories
    crawler = Crawler(config, OutcomeRecorder(store, clock, config))
    busy = SourceConfig(name="busy", kind="site", url=feeds.url("/busy/"), follow=r"/busy/\d", interval=60)
    down = SourceConfig(name="down", kind="site", url=feeds.url("/down/"), follow=r"/down/\d", interval=60)

    async def passes() -> list:
        try:
            first = await crawler.crawl([busy, down])
            second = await crawler.crawl([down])
        finally:
            await crawler.close()
        return [first, second]

    with caplog.at_level(logging.INFO, logger="newswatch.crawler"):
        first, second = asyncio.run(passes())
    crawler.pages.close()
    state = store.fetch_state("busy")
    assert state.failures == 1 and state.not_before == now + timedelta(seconds=120)
    assert sum(len(feeds.hits_for(f"/busy/{i}.html")) for i in range(1, 5)) <= 1, "requests went on after a 429"
    assert store.fetch_state("down").failures == 2 and store.fetch_state("down").not_before is not None
    assert first.failures == {"busy": f"HTTP 429 from {feeds.url('/busy/0.html')}",
                              "down": f"HTTP 500 from {feeds.url('/down/')}"}
    assert "source down: HTTP 500" in caplog.text and "failure 2 in a row; next try in" in caplog.text
