"""Article pages, sitemaps, listing pages and site/sitemap source validation (no sockets)."""

from __future__ import annotations

from dataclasses import replace

import gzip
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from parsel import Selector
from pydantic import ValidationError

from newswatch.crawler.parse.articles import article_story, decode_html, extract_article, strip_site_name
from newswatch.crawler.parse.dates import parse_date
from newswatch.crawler.fetch.sites import listing_links, next_page
from newswatch.crawler.parse.sitemaps import parse_sitemap
from newswatch.crawler.sources import SourceConfig

KST = timezone(timedelta(hours=9))
KOREAN = "김정은 북한 국무위원장이 블라디보스토크에서 푸틴 러시아 대통령과 정상회담을 열었다."


def page(body: str, head: str = "", lang: str = "en") -> str:
    return f'<!doctype html><html lang="{lang}"><head>{head}</head><body>{body}</body></html>'


ARTICLE = page(
    "<nav><a href='/'>Home</a><a href='/world'>World</a></nav>"
    "<article><h1>Kim and Xi hold summit talks</h1>"
    + "".join(f"<p>Paragraph {i}: North Korean leader Kim Jong Un met Chinese President Xi Jinping in Beijing "
              f"for talks on the peninsula and on sanctions relief, officials said on Tuesday.</p>" for i in range(4))
    + "</article><footer><p>Copyright Example News. All rights reserved.</p></footer>",
    head='<meta charset="utf-8"><title>Kim and Xi hold summit talks | Example News</title>'
         '<meta property="og:title" content="Kim and Xi hold summit talks | Example News">'
         '<meta property="og:site_name" content="Example News">'
         '<script type="application/ld+json">{"@context": "https://schema.org", "@type": "NewsArticle",'
         ' "headline": "Kim and Xi hold summit talks", "datePublished": "2019-01-08T12:00:00+09:00",'
         ' "author": {"@type": "Person", "name": "Jane Reporter"}}</script>',
)


def test_extracts_title_date_author_language_and_body() -> None:
    article = extract_article(ARTICLE.encode(), "https://news.example.com/a/1")
    assert article.title == "Kim and Xi hold summit talks"
    assert article.published == datetime(2019, 1, 8, 12, 0, tzinfo=KST)
    assert article.author == "Jane Reporter"
    assert article.language == "en"
    assert "Paragraph 3: North Korean leader" in article.text
    assert "All rights reserved" not in article.text and "Home" not in article.text
    assert not article.text.startswith("Kim and Xi hold summit talks")
    assert article.problem == ""


def test_selectors_override_the_extractor() -> None:
    html = page("<div class='hd'>Real headline</div><span class='when'>2024.05.03 14:20</span>"
                "<div id='story'><p>First line.</p><p>Second line.</p></div><div class='ad'>Buy now</div>",
                head="<title>Wrong title</title>", lang="ko")
    selectors = {"title": "div.hd", "date": "//span[@class='when']", "body": "#story"}
    article = extract_article(html.encode(), "https://example.com/x", selectors=selectors)
    assert article.title == "Real headline"
    assert article.published == datetime(2024, 5, 3, 14, 20, tzinfo=KST)
    assert article.text == "First line.\nSecond line."


def test_json_ld_article_body_is_used_when_the_page_renders_with_script() -> None:
    html = page("<div id='app'></div><script>render()</script>",
                head='<script type="application/ld+json"><![CDATA[{"@type": "NewsArticle", "headline": "H",'
                     ' "articleBody": "The whole story &amp; more, as published by the newsroom on Tuesday, told'
                     ' at length so that it counts as an article body rather than a teaser."}]]></script>')
    article = extract_article(html.encode(), "https://example.com/x")
    assert article.title == "H"
    assert article.text.startswith("The whole story & more")


@pytest.mark.parametrize(
    ("body", "content_type", "expected_encoding"),
    [
        (page(f"<p>{KOREAN}</p>", head='<meta charset="utf-8">').encode("utf-8"), "text/html", "utf-8"),
        (page(f"<p>{KOREAN}</p>").encode("euc-kr"), "text/html", "cp949"),
        (page(f"<p>{KOREAN}</p>", head='<meta charset="euc-kr">').encode("euc-kr"), "text/html", "cp949"),
        (page(f"<p>{KOREAN}</p>").encode("utf-8"), "text/html; charset=iso-8859-1", "utf-8"),
        (b"\xef\xbb\xbf" + page(f"<p>{KOREAN}</p>").encode("utf-8"), "text/html; charset=euc-kr", "utf-8"),
    ],
    ids=["utf8-meta", "euc-kr-undeclared", "euc-kr-meta", "utf8-labelled-latin1", "bom-wins"],
)
def test_decoding(body: bytes, content_type: str, expected_encoding: str) -> None:
    text, encoding = decode_html(body, content_type)
    assert KOREAN in text
    assert encoding.replace("-", "_") == expected_encoding.replace("-", "_")


@pytest.mark.parametrize(
    ("raw", "language", "expected"),
    [
        ("2019-08-20T09:31:01+09:00", "", datetime(2019, 8, 20, 9, 31, 1, tzinfo=KST)),
        ("2024-12-06T22:00:40.000Z", "", datetime(2024, 12, 6, 22, 0, 40, tzinfo=UTC)),
        ("20180619T055000+0900", "", datetime(2018, 6, 19, 5, 50, tzinfo=KST)),
        ("Tue, 08 Jan 2019 03:00:00 GMT", "", datetime(2019, 1, 8, 3, 0, tzinfo=UTC)),
        ("2019.08.20 09:31", "ko", datetime(2019, 8, 20, 9, 31, tzinfo=KST)),
        ("2019-08-20 09:31:01", "en", datetime(2019, 8, 20, 9, 31, 1, tzinfo=UTC)),
        ("입력 2019년 8월 20일 오후 3:05", "ko", datetime(2019, 8, 20, 15, 5, tzinfo=KST)),
        ("2018年6月19日 5:50", "ja", datetime(2018, 6, 19, 5, 50, tzinfo=KST)),
        ("Updated 2023-11-17", "zh", datetime(2023, 11, 17, tzinfo=timezone(timedelta(hours=8)))),
        ("yesterday", "", None),
        ("1970-01-01", "", None),
        ("2019-13-45", "", None),
    ],
)
def test_parse_date(raw: str, language: str, expected: datetime | None) -> None:
    got = parse_date(raw, language)
    assert got == expected
    if expected is not None:
        assert got is not None and got.utcoffset() == expected.utcoffset()


def test_parse_date_refuses_the_far_future() -> None:
    assert parse_date((datetime.now(UTC) + timedelta(days=30)).isoformat()) is None


@pytest.mark.parametrize(
    ("title", "sites", "expected"),
    [
        ("Kim and Xi hold talks | Example News", ("Example News",), "Kim and Xi hold talks"),
        ("Kim and Xi hold talks - The Verge", (), "Kim and Xi hold talks"),
        ("장동혁, 한동훈 제명했지만 부담 커졌다-정치ㅣ한국일보", ("한국일보",), "장동혁, 한동훈 제명했지만 부담 커졌다-정치"),
        ("宮崎県で震度5弱 気象庁：朝日新聞デジタル", ("朝日新聞デジタル",), "宮崎県で震度5弱 気象庁"),
        ("Laos methanol poisonings: Australian teenager dies", (), "Laos methanol poisonings: Australian teenager dies"),
        ("Japan Prime Minister on Revising Japan-U.S. Pact", (), "Japan Prime Minister on Revising Japan-U.S. Pact"),
        ("Home | News", (), "Home | News"),
    ],
)
def test_strip_site_name(title: str, sites: tuple[str, ...], expected: str) -> None:
    assert strip_site_name(title, sites) == expected


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00\x01\x02\xff" * 1000,
        b"<html><body>" + b"<div><span>x" * 200_000 + b"</body></html>",
        b"<html><body>" + b"<p>word</p>" * 70_000 + b"</body></html>",
        b'<?xml version="1.0" encoding="utf-8"?><html><body><p>xhtml</p></body></html>',
    ],
    ids=["empty", "binary", "nested-tags", "too-many-elements", "xml-declaration"],
)
def test_hostile_bodies_never_raise_and_stay_fast(body: bytes) -> None:
    started = time.perf_counter()
    article = extract_article(body, "https://example.com/x")
    assert time.perf_counter() - started < 5
    assert isinstance(article.text, str)


def test_article_story_prefers_sitemap_title_and_date_and_clamps_the_future() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    article = extract_article(ARTICLE.encode(), "https://news.example.com/a/1")
    story = article_story(article, source="s", url="https://news.example.com/a/1?utm_source=x", now=now,
                          title=" Sitemap  title ", published=datetime(2024, 12, 31, tzinfo=UTC))
    assert story is not None
    assert (story.title, story.url, story.published) == ("Sitemap title", "https://news.example.com/a/1",
                                                         datetime(2024, 12, 31, tzinfo=UTC))
    skewed = article_story(article, source="s", url="https://e.com/2", now=now, published=now + timedelta(hours=3))
    assert skewed is not None and (skewed.published, skewed.dated) == (now, True)
    # more than a day ahead is no date: the page's own date is used instead
    future = article_story(article, source="s", url="https://e.com/2", now=now, published=now + timedelta(days=3))
    assert future is not None and future.published == article.published and future.dated
    undated = article_story(replace(article, published=None), source="s", url="https://e.com/4", now=now,
                            published=datetime(1, 1, 1, tzinfo=UTC))
    assert undated is not None and (undated.published, undated.dated) == (now, False)
    empty = extract_article(b"<html><body></body></html>", "https://e.com/3")
    assert article_story(empty, source="s", url="https://e.com/3", now=now) is None


NEWS_SITEMAP = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"
        xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
  <url><loc>https://wire.example.com/old</loc><news:news><news:publication><news:name>Wire</news:name>
    <news:language>en</news:language></news:publication><news:publication_date>2019-02-26T10:00:00+07:00</news:publication_date>
    <news:title>Trump arrives in Hanoi</news:title></news:news>
    <image:image><image:loc>https://img.example.com/1.jpg</image:loc></image:image></url>
  <url><loc>https://wire.example.com/new?utm_source=sm</loc><news:news><news:publication_date>2019-02-27T18:00:00+07:00</news:publication_date>
    <news:title>Trump and Kim meet   for dinner</news:title></news:news></url>
  <url><loc>https://wire.example.com/undated</loc></url>
</urlset>"""


def test_news_sitemap_entries_newest_first() -> None:
    sitemap = parse_sitemap(NEWS_SITEMAP)
    assert sitemap.problem == "" and sitemap.children == []
    assert [e.url for e in sitemap.entries] == [
        "https://wire.example.com/new", "https://wire.example.com/old", "https://wire.example.com/undated"]
    newest = sitemap.entries[0]
    assert newest.title == "Trump and Kim meet for dinner"
    assert newest.published == datetime(2019, 2, 27, 11, 0, tzinfo=UTC)
    assert sitemap.entries[1].language == "en"


def test_sitemap_index_gzip_and_garbage() -> None:
    index = (b'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
             b"<sitemap><loc>https://e.com/a.xml</loc><lastmod>2024-01-01</lastmod></sitemap>"
             b"<sitemap><loc>https://e.com/b.xml</loc><lastmod>2024-03-01</lastmod></sitemap></sitemapindex>")
    assert parse_sitemap(gzip.compress(index)).children == ["https://e.com/b.xml", "https://e.com/a.xml"]
    assert parse_sitemap(b"<html><body>not a sitemap</body></html>").problem.startswith("not a sitemap")
    assert parse_sitemap(b"\x00garbage").entries == []
    bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">'
            b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;">]><urlset><url><loc>https://e.com/&lol3;</loc></url></urlset>')
    assert len(str(parse_sitemap(bomb))) < 2000
    assert parse_sitemap(gzip.compress(b" " * 3000), max_bytes=1000).problem.startswith("sitemap larger")


LISTING = """<html><head><base href="https://news.example.com/"></head><body>
<nav><a href="/about">About</a></nav>
<ul class="headlines"><li><a href="news/2019/kim-xi.html?utm_source=home">Kim</a></li>
<li><a href="https://news.example.com/news/2019/kim-xi.html">again</a></li>
<li><a href="/news/2019/g20.html">G20</a></li></ul>
<aside><a href="/news/2019/popular.html">Most read</a></aside>
<div class="pages"><a href="/news/?page=2">다음</a></div></body></html>"""


def test_listing_links_and_next_page() -> None:
    selector = Selector(text=LISTING)
    site = SourceConfig(name="s", kind="site", url="https://news.example.com/news/", follow=r"/news/\d{4}/")
    assert listing_links(selector, "https://news.example.com/", site) == [
        "https://news.example.com/news/2019/kim-xi.html", "https://news.example.com/news/2019/g20.html",
        "https://news.example.com/news/2019/popular.html"]
    only = site.model_copy(update={"links": "ul.headlines a"})
    assert len(listing_links(selector, "https://news.example.com/", only)) == 2
    assert next_page(selector, "https://news.example.com/", site) == "https://news.example.com/news/?page=2"
    chosen = site.model_copy(update={"next": "//aside/a/@href"})
    assert next_page(selector, "https://news.example.com/", chosen) == "https://news.example.com/news/2019/popular.html"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": "https://e.com/feed", "follow": "x"}, "only for kind: site"),
        ({"kind": "site", "url": "https://e.com/"}, "follow: required for kind: site"),
        ({"kind": "site", "url": "https://e.com/", "follow": "(unclosed"}, "not a valid regular expression"),
        ({"kind": "site", "url": "https://e.com/", "follow": "x", "links": "a[["}, "not a valid CSS selector"),
        ({"kind": "site", "url": "https://e.com/", "follow": "x", "selectors": {"body": "//div["}}, "not a valid XPath"),
        ({"kind": "sitemap", "url": ["https://e.com/a.xml", "https://e.com/b.xml"]}, "only for kind: site"),
        ({"kind": "sitemap", "url": "https://e.com/s.xml", "depth": 2}, "only for kind: site"),
        ({"url": "https://e.com/feed", "selectors": {"body": "article"}}, "only for kinds that fetch article pages"),
        ({"kind": "site", "url": ["https://e.com/", "ftp://e.com/"], "follow": "x"}, "must be an absolute http"),
    ],
)
def test_source_validation(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        SourceConfig(name="s", **fields)
    assert message in str(info.value)


def test_valid_sources() -> None:
    site = SourceConfig(name="s", kind="site", url=["https://e.com/a", "https://e.com/b"], follow=r"/\d+$",
                        depth=3, selectors={"body": "article p"}, max_articles=10)
    assert site.urls == ("https://e.com/a", "https://e.com/b") and site.fetches_pages
    feed = SourceConfig(name="f", url="https://e.com/rss", full_text=True, selectors={"body": "//article"})
    assert feed.fetches_pages and feed.urls == ("https://e.com/rss",)
    assert not SourceConfig(name="g", url="https://e.com/rss").fetches_pages


def test_config_file_errors_name_line_and_field() -> None:
    from pathlib import Path

    from newswatch.alerts.config import ConfigError, parse_config

    text = """\
sources:
  - name: site
    kind: site
    url: [https://e.com/news, https://e.com/world]
    follow: '(unclosed'
  - name: feed
    url: https://e.com/rss
    depth: 2
topics:
  summit:
    description: Summits.
    threshold: 3
    groups:
      meeting: {weight: 3, terms: [summit]}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "cfg.yaml", base_dir=Path("/tmp"))
    problems = "\n".join(info.value.problems)
    assert "cfg.yaml:5: sources[0].follow: not a valid regular expression" in problems
    assert "cfg.yaml:8: sources[1].depth: only for kind: site sources (this one is kind: feed)" in problems
