"""parse_feed: fetched feed bytes in, stories out, problems described, never an exception."""

from __future__ import annotations

import json
import random
import time
from datetime import datetime, timedelta, timezone

import pytest

from newswatch.crawler.parse.feeds import ParsedFeed, parse_feed
from newswatch.crawler.story import story_id

UTC = timezone.utc
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
FEED_URL = "https://news.example.com/rss/world.xml"


def parse(body: bytes, **options: object) -> ParsedFeed:
    options.setdefault("url", FEED_URL)
    return parse_feed(body, source="example", now=NOW, **options)  # type: ignore[arg-type]


def rss(items: str, *, channel: str = "<title>Example</title>", declaration: str = "") -> str:
    head = f'<?xml version="1.0" encoding="{declaration}"?>\n' if declaration else ""
    return f'{head}<rss version="2.0"><channel>{channel}{items}</channel></rss>'


def rss_item(title: str = "Title", link: str = "https://news.example.com/a/1", extra: str = "") -> str:
    return f"<item><title>{title}</title><link>{link}</link>{extra}</item>"


# --- the four syntaxes --------------------------------------------------------------------

RSS_20 = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel>
  <title>World &amp; Politics</title>
  <language>en-us</language>
  <ttl>15</ttl>
  <item>
    <title>Summit ends without a deal</title>
    <link>https://news.example.com/world/summit?utm_source=rss&amp;id=42</link>
    <guid isPermaLink="false">summit-42</guid>
    <pubDate>Tue, 30 Apr 2024 08:00:00 GMT</pubDate>
    <dc:creator>Jane Doe</dc:creator>
    <description>Short summary.</description>
    <content:encoded><![CDATA[<p>The summit ended.</p><p>No deal & no date.</p>]]></content:encoded>
  </item>
  <item>
    <title>Sanctions widened</title>
    <link>/world/sanctions</link>
    <pubDate>Tue, 30 Apr 2024 09:30:00 +0200</pubDate>
  </item>
</channel>
</rss>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="ko">
  <title type="html">&lt;b&gt;Atom&lt;/b&gt; news</title>
  <entry>
    <title>Entry one</title>
    <link rel="alternate" href="https://news.example.com/e/1#comments"/>
    <id>tag:news.example.com,2024:1</id>
    <published>2024-04-30T10:00:00+09:00</published>
    <updated>2024-04-30T11:00:00+09:00</updated>
    <author><name>Kim</name></author>
    <summary>Short.</summary>
    <content type="html">&lt;p&gt;Longer content of entry one.&lt;/p&gt;</content>
  </entry>
  <entry>
    <title>Entry two</title>
    <link href="e/2"/>
    <id>tag:news.example.com,2024:2</id>
    <updated>2024-04-29T23:00:00Z</updated>
  </entry>
</feed>"""

RDF = b"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
         xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/"
         xmlns:sy="http://purl.org/rss/1.0/modules/syndication/">
  <channel rdf:about="https://news.example.com/">
    <title>RDF news</title>
    <dc:language>ja</dc:language>
    <sy:updatePeriod>hourly</sy:updatePeriod>
    <sy:updateFrequency>4</sy:updateFrequency>
  </channel>
  <item rdf:about="https://news.example.com/r/1">
    <title>RDF item</title>
    <link>https://news.example.com/r/1</link>
    <dc:date>2024-04-30T10:00:00+09:00</dc:date>
    <description>RDF description</description>
  </item>
</rdf:RDF>"""

JSON_FEED = json.dumps(
    {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "JSON news",
        "language": "en",
        "feed_url": "https://news.example.com/feed.json",
        "items": [
            {
                "id": "1",
                "url": "https://news.example.com/j/1?fbclid=abc",
                "title": "JSON &amp; friends",
                "content_html": "<p>Body <b>bold</b></p><script>track()</script>",
                "summary": "Body",
                "date_published": "2024-04-30T10:00:00+09:00",
                "authors": [{"name": "Lee"}],
            },
            {"id": 2, "url": "j/2", "content_text": "An item without a title."},
            {"id": "3", "content_text": "Neither title nor url: skipped."},
        ],
    }
).encode()

JSON_FEED_1_0 = json.dumps(
    {
        "version": "https://jsonfeed.org/version/1",
        "title": "Old JSON",
        "items": [
            {
                "id": "a",
                "external_url": "https://other.example.org/x",
                "title": "Linked item",
                "date_modified": "2024-04-30T00:00:00Z",
                "author": {"name": "Park"},
            }
        ],
    }
).encode()


FORMATS = [
    # (name, body, feed title, ttl, [(title, url, published, guid, author, language, text)])
    (
        "rss 2.0",
        RSS_20,
        "World & Politics",
        900,
        [
            (
                "Summit ends without a deal",
                "https://news.example.com/world/summit?id=42",
                "2024-04-30T08:00:00+00:00",
                "summit-42",
                "Jane Doe",
                "en-us",
                "The summit ended.\nNo deal & no date.",
            ),
            (
                "Sanctions widened",
                "https://news.example.com/world/sanctions",
                "2024-04-30T07:30:00+00:00",
                "https://news.example.com/world/sanctions",
                "",
                "en-us",
                "",
            ),
        ],
    ),
    (
        "atom",
        ATOM,
        "Atom news",
        None,
        [
            (
                "Entry one",
                "https://news.example.com/e/1",
                "2024-04-30T01:00:00+00:00",
                "tag:news.example.com,2024:1",
                "Kim",
                "ko",
                "Longer content of entry one.",
            ),
            (
                "Entry two",
                "https://news.example.com/rss/e/2",
                "2024-04-29T23:00:00+00:00",
                "tag:news.example.com,2024:2",
                "",
                "ko",
                "",
            ),
        ],
    ),
    (
        "rdf",
        RDF,
        "RDF news",
        900,
        [
            (
                "RDF item",
                "https://news.example.com/r/1",
                "2024-04-30T01:00:00+00:00",
                "https://news.example.com/r/1",
                "",
                "ja",
                "RDF description",
            )
        ],
    ),
    (
        "json feed 1.1",
        JSON_FEED,
        "JSON news",
        None,
        [
            (
                "JSON & friends",
                "https://news.example.com/j/1",
                "2024-04-30T01:00:00+00:00",
                "1",
                "Lee",
                "en",
                "Body bold",
            ),
            (
                "",
                "https://news.example.com/rss/j/2",
                NOW.isoformat(),
                "2",
                "",
                "en",
                "An item without a title.",
            ),
        ],
    ),
    (
        "json feed 1.0",
        JSON_FEED_1_0,
        "Old JSON",
        None,
        [
            (
                "Linked item",
                "https://other.example.org/x",
                "2024-04-30T00:00:00+00:00",
                "a",
                "Park",
                "",
                "",
            )
        ],
    ),
]


@pytest.mark.parametrize(
    ("body", "title", "ttl", "expected"),
    [case[1:] for case in FORMATS],
    ids=[case[0] for case in FORMATS],
)
def test_formats(body: bytes, title: str, ttl: int | None, expected: list[tuple[str, ...]]) -> None:
    feed = parse(body)
    assert feed.problem == ""
    assert feed.title == title
    assert feed.ttl_seconds == ttl
    got = [
        (s.title, s.url, s.published.isoformat(), s.guid, s.author, s.language, s.text)
        for s in feed.stories
    ]
    assert got == expected
    for story in feed.stories:
        assert story.source == "example"
        assert story.id == story_id("example", story.url, story.guid or story.title)
        assert story.published.tzinfo is not None


# --- dates ------------------------------------------------------------------------------

DATES = [
    # (pubDate, feed language, expected UTC time)
    ("Mon, 07 Jan 2019 10:00:00 KST", "", "2019-01-07T01:00:00"),
    ("Mon, 07 Jan 2019 10:00:00 KST", "en", "2019-01-07T01:00:00"),
    ("Mon, 07 Jan 2019 10:00:00 kst", "", "2019-01-07T01:00:00"),
    ("Mon, 07 Jan 2019 10:00:00 JST", "", "2019-01-07T01:00:00"),
    ("Mon, 07 Jan 2019 10:00:00 HKT", "", "2019-01-07T02:00:00"),
    ("Mon, 07 Jan 2019 10:00:00 SGT", "", "2019-01-07T02:00:00"),
    ("Mon, 07 Jan 2019 10:00:00 IST", "", "2019-01-07T04:30:00"),
    ("Mon, 07 Jan 2019 10:00:00 CET", "", "2019-01-07T09:00:00"),
    ("Mon, 07 Jan 2019 10:00:00 CST", "en-us", "2019-01-07T16:00:00"),
    ("Mon, 07 Jan 2019 10:00:00 CST", "zh-cn", "2019-01-07T02:00:00"),
    ("Mon, 07 Jan 2019 10:00:00 EST", "", "2019-01-07T15:00:00"),
    ("Mon, 07 Jan 2019 10:00:00 GMT", "ko", "2019-01-07T10:00:00"),
    ("Mon, 07 Jan 2019 10:00:00 +0900", "", "2019-01-07T01:00:00"),
    ("Mon, 07 Jan 2019 10:00:00 +0900 (KST)", "", "2019-01-07T01:00:00"),
    ("Mon, 07 Jan 2019 10:00:00 -0000", "ko", "2019-01-07T10:00:00"),
    ("2019-01-07T10:00:00+09:00", "", "2019-01-07T01:00:00"),
    ("2019-01-07T10:00:00.000Z", "ko", "2019-01-07T10:00:00"),
    ("2019-01-07 10:00:00", "", "2019-01-07T10:00:00"),
    ("2019-01-07 10:00:00", "ko-kr", "2019-01-07T01:00:00"),
    ("2019-01-07 10:00:00", "ja", "2019-01-07T01:00:00"),
    ("2019-01-07 10:00:00", "zh-cn", "2019-01-07T02:00:00"),
    ("2019.01.07 10:00", "ko", "2019-01-07T01:00:00"),
    ("Mon, 07 Jan 2019 10:00:00", "ko", "2019-01-07T01:00:00"),
    ("  Mon,  07 Jan 2019\n 10:00:00 GMT ", "", "2019-01-07T10:00:00"),
    # ahead of the fetch by less than a day (clock skew): the fetch time; more, or before 1970: no date
    ("Wed, 01 May 2024 14:00:00 GMT", "", NOW.replace(tzinfo=None).isoformat()),
    ("Fri, 03 May 2024 12:00:00 GMT", "", NOW.replace(tzinfo=None).isoformat()),
    ("Mon, 07 Jan 2099 10:00:00 GMT", "", NOW.replace(tzinfo=None).isoformat()),
    ("0001-01-01T00:00:00Z", "", NOW.replace(tzinfo=None).isoformat()),
    ("Thu, 01 Jan 1920 00:00:00 GMT", "", NOW.replace(tzinfo=None).isoformat()),
    ("yesterday", "", NOW.replace(tzinfo=None).isoformat()),
    ("", "", NOW.replace(tzinfo=None).isoformat()),
]
UNDATED = {"Fri, 03 May 2024 12:00:00 GMT", "Mon, 07 Jan 2099 10:00:00 GMT", "0001-01-01T00:00:00Z",
           "Thu, 01 Jan 1920 00:00:00 GMT", "yesterday", ""}


@pytest.mark.parametrize(("raw", "language", "expected"), DATES)
def test_dates(raw: str, language: str, expected: str) -> None:
    channel = f"<title>t</title><language>{language}</language>" if language else "<title>t</title>"
    feed = parse(rss(rss_item(extra=f"<pubDate>{raw}</pubDate>"), channel=channel).encode())
    [story] = feed.stories
    assert story.published.tzinfo is not None
    assert story.published.utcoffset() == timedelta(0)
    assert story.published == datetime.fromisoformat(expected).replace(tzinfo=UTC)
    assert story.dated == (raw not in UNDATED)


def test_kst_is_nine_hours_ahead_of_utc() -> None:
    [story] = parse(rss(rss_item(extra="<pubDate>Mon, 07 Jan 2019 10:00:00 KST</pubDate>")).encode()).stories
    assert story.published == datetime(2019, 1, 7, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("<pubDate>garbage</pubDate><dc:date>2024-04-02T00:00:00Z</dc:date>", datetime(2024, 4, 2, tzinfo=UTC)),
        ("<dc:date>2024-04-02T09:00:00+09:00</dc:date>", datetime(2024, 4, 2, tzinfo=UTC)),
        ("<atom:updated>2024-04-03T00:00:00Z</atom:updated>", datetime(2024, 4, 3, tzinfo=UTC)),
        ("", NOW),
    ],
    ids=["bad published, good updated", "dc:date", "updated only", "no date"],
)
def test_missing_dates_fall_back(extra: str, expected: datetime) -> None:
    body = (
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"'
        ' xmlns:atom="http://www.w3.org/2005/Atom"><channel><title>t</title>'
        f"{rss_item(extra=extra)}</channel></rss>"
    ).encode()
    [story] = parse(body).stories
    assert story.published == expected


def test_default_now_is_current_time() -> None:
    before = datetime.now(UTC)
    [story] = parse_feed(rss(rss_item()).encode(), source="s", url=FEED_URL).stories
    assert before <= story.published <= datetime.now(UTC)


# --- encodings ----------------------------------------------------------------------------

KOREAN = rss(
    rss_item("북한, 동해상으로 탄도미사일 발사", extra="<description>합동참모본부는 밝혔다.</description>"),
    channel="<title>연합뉴스 정치</title><language>ko</language>",
    declaration="UTF-8",
)
PORTUGUESE = rss(rss_item("Mãe de utente é a nova presidente"), channel="<title>Jornal de Notícias</title>")
CHINESE = rss(rss_item("习近平为何如此强调崇尚英雄"), channel="<title>新闻国内</title>")
JAPANESE = rss(rss_item("北朝鮮が弾道ミサイルを発射"), channel="<title>ニュース</title>")

ENCODINGS = [
    # (name, body, content type, feed title, first story title, problem)
    ("utf-8 declared", KOREAN.encode(), "", "연합뉴스 정치", "북한, 동해상으로 탄도미사일 발사", ""),
    (
        "euc-kr declared utf-8",
        KOREAN.encode("euc-kr"),
        "",
        "연합뉴스 정치",
        "북한, 동해상으로 탄도미사일 발사",
        "invalid UTF-8; decoded as cp949",
    ),
    (
        "cp949 declared utf-8 in http",
        KOREAN.replace(' encoding="UTF-8"', "").encode("cp949"),
        "application/rss+xml; charset=utf-8",
        "연합뉴스 정치",
        "북한, 동해상으로 탄도미사일 발사",
        "invalid UTF-8; decoded as cp949",
    ),
    (
        "euc-kr declared euc-kr",
        KOREAN.replace("UTF-8", "euc-kr").encode("euc-kr"),
        "",
        "연합뉴스 정치",
        "북한, 동해상으로 탄도미사일 발사",
        "",
    ),
    (
        "euc-kr label, cp949-only syllable",
        KOREAN.replace("UTF-8", "euc-kr").replace("북한", "똠방").encode("cp949"),
        "",
        "연합뉴스 정치",
        "똠방, 동해상으로 탄도미사일 발사",
        "",
    ),
    (
        "utf-8 declared euc-kr",
        KOREAN.replace("UTF-8", "euc-kr").encode(),
        "",
        "연합뉴스 정치",
        "북한, 동해상으로 탄도미사일 발사",
        "declared euc-kr but decoded as utf-8",
    ),
    (
        "latin-1 declared",
        PORTUGUESE.replace("<rss", '<?xml version="1.0" encoding="ISO-8859-1"?><rss').encode("latin-1"),
        "",
        "Jornal de Notícias",
        "Mãe de utente é a nova presidente",
        "",
    ),
    (
        "latin-1 declared utf-8",
        PORTUGUESE.replace("<rss", '<?xml version="1.0" encoding="utf-8"?><rss').encode("latin-1"),
        "",
        "Jornal de Notícias",
        "Mãe de utente é a nova presidente",
        "invalid UTF-8; decoded as cp1252",
    ),
    (
        "latin-1 in http charset",
        PORTUGUESE.encode("latin-1"),
        "text/xml; charset=ISO-8859-1",
        "Jornal de Notícias",
        "Mãe de utente é a nova presidente",
        "",
    ),
    (
        "utf-8 served as latin-1",
        PORTUGUESE.replace("<rss", '<?xml version="1.0" encoding="utf-8"?><rss').encode(),
        "text/xml; charset=ISO-8859-1",
        "Jornal de Notícias",
        "Mãe de utente é a nova presidente",
        "",
    ),
    (
        "utf-8 declared latin-1",
        PORTUGUESE.replace("<rss", '<?xml version="1.0" encoding="iso-8859-1"?><rss').encode(),
        "",
        "Jornal de Notícias",
        "Mãe de utente é a nova presidente",
        "declared iso-8859-1 but decoded as utf-8",
    ),
    (
        "windows-1252 quotes",
        rss(rss_item("“Quoted” – €5")).encode("cp1252"),
        "application/xml; charset=windows-1252",
        "Example",
        "“Quoted” – €5",
        "",
    ),
    (
        "gb2312 declared",
        CHINESE.replace("<rss", '<?xml version="1.0" encoding="gb2312"?><rss').encode("gb2312"),
        "",
        "新闻国内",
        "习近平为何如此强调崇尚英雄",
        "",
    ),
    (
        "gb2312 undeclared",
        CHINESE.encode("gb2312"),
        "",
        "新闻国内",
        "习近平为何如此强调崇尚英雄",
        "invalid UTF-8; decoded as gb18030",
    ),
    (
        "shift_jis declared utf-8",
        JAPANESE.replace("<rss", '<?xml version="1.0" encoding="utf-8"?><rss').encode("shift_jis"),
        "",
        "ニュース",
        "北朝鮮が弾道ミサイルを発射",
        "invalid UTF-8; decoded as cp932",
    ),
    (
        "utf-8 with bom",
        b"\xef\xbb\xbf" + KOREAN.encode(),
        "",
        "연합뉴스 정치",
        "북한, 동해상으로 탄도미사일 발사",
        "",
    ),
    (
        "utf-16 with bom",
        KOREAN.replace("UTF-8", "UTF-16").encode("utf-16"),
        "",
        "연합뉴스 정치",
        "북한, 동해상으로 탄도미사일 발사",
        "",
    ),
    (
        "utf-16le without bom",
        KOREAN.replace("UTF-8", "UTF-16").encode("utf-16-le"),
        "",
        "연합뉴스 정치",
        "북한, 동해상으로 탄도미사일 발사",
        "",
    ),
    (
        "utf-32be without bom",
        KOREAN.replace("UTF-8", "UTF-32").encode("utf-32-be"),
        "",
        "연합뉴스 정치",
        "북한, 동해상으로 탄도미사일 발사",
        "",
    ),
    (
        "utf-8 with one stray latin-1 byte",
        KOREAN.encode().replace(b"</channel>", "<item><title>caf\xe9</title></item></channel>".encode("latin-1")),
        "",
        "연합뉴스 정치",
        "북한, 동해상으로 탄도미사일 발사",
        "1 invalid UTF-8 sequences replaced",
    ),
    (
        "unknown charset",
        KOREAN.replace("UTF-8", "bogus").encode(),
        "",
        "연합뉴스 정치",
        "북한, 동해상으로 탄도미사일 발사",
        "unknown charset 'bogus' ignored",
    ),
]


@pytest.mark.parametrize(
    ("body", "content_type", "title", "story_title", "problem"),
    [case[1:] for case in ENCODINGS],
    ids=[case[0] for case in ENCODINGS],
)
def test_encodings(body: bytes, content_type: str, title: str, story_title: str, problem: str) -> None:
    feed = parse(body, content_type=content_type)
    assert feed.title == title
    assert feed.stories[0].title == story_title
    assert feed.problem == problem


def test_mis_declared_korean_keeps_its_text_and_date() -> None:
    body = KOREAN.replace("<link>", "<pubDate>Mon, 07 Jan 2019 10:00:00 KST</pubDate><link>")
    [story] = parse(body.encode("euc-kr")).stories
    assert story.text == "합동참모본부는 밝혔다."
    assert story.language == "ko"
    assert story.published == datetime(2019, 1, 7, 1, 0, tzinfo=UTC)


# --- what the parsers must never see ------------------------------------------------------


def test_entity_bomb_does_not_expand() -> None:
    value = "x" * 50_000
    body = (
        f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY big "{value}">]>'
        f'<rss version="2.0"><channel><title>{"&big;" * 50_000}</title>'
        f"{rss_item()}</channel></rss>"
    ).encode()
    started = time.perf_counter()
    feed = parse(body)
    assert time.perf_counter() - started < 1.0
    assert len(feed.title) < 100
    assert feed.problem == "entity declarations removed (references dropped: 50000)"
    assert [story.title for story in feed.stories] == ["Title"]


SAFETY = [
    # (name, body, feed title, problem)
    (
        "billion laughs",
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        '<rss version="2.0"><channel><title>&lol3;</title></channel></rss>',
        "",
        "entity declarations removed (references dropped: 1)",
    ),
    (
        "external entity",
        '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        '<rss version="2.0"><channel><title>a&xxe;b</title></channel></rss>',
        "ab",
        "entity declarations removed (references dropped: 1)",
    ),
    (
        "parameter entity",
        '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY % ext SYSTEM "http://evil.example/x.dtd">'
        '%ext;]><rss version="2.0"><channel><title>plain</title></channel></rss>',
        "plain",
        "DOCTYPE internal subset removed",
    ),
    (
        "short entity expanded",
        '<!DOCTYPE rss [\n<!ENTITY org "Example News">\n<!ENTITY nbsp "&#160;">\n]>'
        '<rss version="2.0"><channel><title>&org;&nbsp;daily</title></channel></rss>',
        "Example News daily",
        "entity declarations removed",
    ),
    (
        "external doctype kept",
        '<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN"'
        ' "http://my.netscape.com/publish/formats/rss-0.91.dtd">'
        '<rss version="0.91"><channel><title>caf&eacute;</title></channel></rss>',
        "café",
        "",
    ),
    (
        "control characters",
        '<rss version="2.0"><channel><title>a\x01b\x0bc&#1;d&#x1F;e&#xFFFE;f</title></channel></rss>',
        "abcdef",
        "5 XML-illegal characters removed",
    ),
    (
        "html entities",
        '<rss version="2.0"><channel><title>Caf&eacute;&nbsp;&hellip; &amp; &mdash;</title></channel></rss>',
        "Café … & —",
        "",
    ),
    (
        "bare ampersand",
        '<rss version="2.0"><channel><title>AT&T & Co &unknown;</title></channel></rss>',
        "AT&T & Co &unknown;",
        "",
    ),
    (
        "uppercase hex reference",
        '<rss version="2.0"><channel><title>&#X41;&#x42;&#67;</title></channel></rss>',
        "ABC",
        "",
    ),
]


@pytest.mark.parametrize(
    ("body", "title", "problem"),
    [case[1:] for case in SAFETY],
    ids=[case[0] for case in SAFETY],
)
def test_declarations_and_characters(body: str, title: str, problem: str) -> None:
    feed = parse(body.encode())
    assert feed.title == title
    assert feed.problem == problem


@pytest.mark.parametrize(
    ("code", "legal"),
    [
        (0x8, False),
        (0x9, True),
        (0xB, False),
        (0x1F, False),
        (0x20, True),
        (0xD7FF, True),
        (0xD800, False),
        (0xDFFF, False),
        (0xE000, True),
        (0xFFFD, True),
        (0xFFFE, False),
        (0xFFFF, False),
        (0x10000, True),
        (0x10FFFF, True),
        (0x110000, False),
    ],
)
@pytest.mark.parametrize("form", ["&#{code};", "&#x{code:x};", "&#x{code:X};", "&#00{code};"])
def test_character_references(code: int, legal: bool, form: str) -> None:
    reference = form.format(code=code)
    feed = parse(rss(rss_item(f"a{reference}b")).encode())
    [story] = feed.stories
    if legal:
        assert feed.problem == ""
        assert story.title == ("a b" if chr(code).isspace() else f"a{chr(code)}b")
    else:
        assert feed.problem == "1 XML-illegal characters removed"
        assert story.title == "ab"


def test_ampersands_inside_cdata_are_left_alone() -> None:
    item = (
        "<item><title><![CDATA[AT&T &amp; you]]></title>"
        "<link><![CDATA[https://ex.com/?a=1&b=2]]></link></item>"
    )
    [story] = parse(rss(item).encode()).stories
    assert story.title == "AT&T & you"
    assert story.url == "https://ex.com/?a=1&b=2"


def test_bare_ampersand_in_link() -> None:
    [story] = parse(rss(rss_item(link="https://ex.com/view?a=1&b=2&utm_source=x")).encode()).stories
    assert story.url == "https://ex.com/view?a=1&b=2"


# --- fields -------------------------------------------------------------------------------


def test_title_markup_is_flattened() -> None:
    title = "&lt;b&gt;Bold&lt;/b&gt;\n   news &amp;amp; more&lt;br/&gt;here"
    [story] = parse(rss(rss_item(title)).encode()).stories
    assert story.title == "Bold news & more here"


def test_text_is_the_longest_plain_version() -> None:
    extra = (
        "<description>Teaser</description>"
        "<content:encoded><![CDATA[<div><h2>Head</h2><p>First&nbsp;para <a href='x'>link</a>.</p>"
        "<script>var x = 1;</script><style>p {}</style><!-- note --><ul><li>one</li><li>two</li></ul>"
        "</div>]]></content:encoded>"
    )
    body = rss(rss_item(extra=extra)).replace(
        "<rss ", '<rss xmlns:content="http://purl.org/rss/1.0/modules/content/" '
    )
    [story] = parse(body.encode()).stories
    assert story.text == "Head\nFirst para link.\none\ntwo"


LINKS = [
    # (feed url, entry link, story url, guid)
    (FEED_URL, "/world/1", "https://news.example.com/world/1", "https://news.example.com/world/1"),
    (FEED_URL, "2", "https://news.example.com/rss/2", "https://news.example.com/rss/2"),
    (FEED_URL, "//cdn.example.com/x", "https://cdn.example.com/x", "https://cdn.example.com/x"),
    (
        FEED_URL,
        "HTTPS://News.Example.com:443/a?b=2&amp;a=1&amp;utm_campaign=x#top",
        "https://news.example.com/a?a=1&b=2",
        "https://News.Example.com:443/a?b=2&a=1&utm_campaign=x#top",
    ),
    ("", "/world/1", "", "/world/1"),
    (FEED_URL, "mailto:desk@example.com", "", "mailto:desk@example.com"),
]


@pytest.mark.parametrize(("feed_url", "link", "url", "guid"), LINKS)
def test_links(feed_url: str, link: str, url: str, guid: str) -> None:
    [story] = parse(rss(rss_item(link=link)).encode(), url=feed_url).stories
    assert story.url == url
    assert story.guid == guid


def test_tracking_parameters_do_not_change_the_id() -> None:
    first = parse(rss(rss_item(link="https://ex.com/a?id=1&utm_source=rss")).encode()).stories[0]
    second = parse(rss(rss_item(link="https://ex.com/a?utm_medium=x&id=1")).encode()).stories[0]
    assert first.url == second.url == "https://ex.com/a?id=1"
    assert first.id == second.id


def test_entries_need_a_title_or_a_link() -> None:
    items = (
        "<item><title>Only a title</title></item>"
        "<item><link>https://ex.com/only-link</link></item>"
        "<item><description>Neither</description></item>"
        "<item><title>  </title><description>Blank title</description></item>"
        "<item><title>Other title</title><guid isPermaLink='false'>g-1</guid></item>"
    )
    stories = parse(rss(items).encode()).stories
    assert [(s.title, s.url, s.guid) for s in stories] == [
        ("Only a title", "", ""),
        ("", "https://ex.com/only-link", "https://ex.com/only-link"),
        ("Other title", "", "g-1"),
    ]
    assert len({s.id for s in stories}) == 3


@pytest.mark.parametrize(
    ("channel", "ttl"),
    [
        ("<ttl>30</ttl>", 1800),
        ("<ttl> 5 </ttl>", 300),
        ("<ttl>0</ttl>", None),
        ("<ttl>soon</ttl>", None),
        ("<sy:updatePeriod>daily</sy:updatePeriod>", 86400),
        ("<sy:updatePeriod>hourly</sy:updatePeriod><sy:updateFrequency>2</sy:updateFrequency>", 1800),
        ("<sy:updatePeriod>sometimes</sy:updatePeriod>", None),
        ("", None),
    ],
)
def test_ttl(channel: str, ttl: int | None) -> None:
    body = rss("", channel=f"<title>t</title>{channel}").replace(
        "<rss ", '<rss xmlns:sy="http://purl.org/rss/1.0/modules/syndication/" '
    )
    assert parse(body.encode()).ttl_seconds == ttl


@pytest.mark.parametrize(
    ("body", "language"),
    [
        (rss(rss_item(), channel="<language>pt-PT</language>"), "pt-pt"),
        ('<rss version="2.0" xml:lang="de"><channel>' + rss_item() + "</channel></rss>", "de"),
        (
            '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
            + rss_item(extra="<dc:language>fr</dc:language>")
            + "</channel></rss>",
            "fr",
        ),
        (rss(rss_item()), ""),
    ],
    ids=["language element", "xml:lang", "entry dc:language", "none"],
)
def test_language(body: str, language: str) -> None:
    assert parse(body.encode()).stories[0].language == language


# --- documents that are not feeds, or are broken ------------------------------------------

NOT_FEEDS = [
    # (name, body, problem)
    ("empty", b"", "empty body"),
    ("whitespace", b" \r\n\t ", "empty body"),
    (
        "html page",
        b"<!DOCTYPE html>\n<html lang='en'><head><title>Home</title></head><body>Hi</body></html>",
        "not a feed: HTML page",
    ),
    ("html fragment", b"<head><title>Home</title></head>", "not a feed: HTML page"),
    ("plain text", b"Service temporarily unavailable", "not a feed: no XML root element"),
    (
        "sitemap",
        b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        b"<url><loc>https://ex.com/</loc></url></urlset>",
        "not a feed: unrecognised root element <urlset>",
    ),
    ("gzip", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", "not a feed: gzip-compressed data"),
    ("json array", b"[1, 2, 3]", "not a feed: JSON document without a JSON Feed version"),
    ("json object", b'{"items": []}', "not a feed: JSON document without a JSON Feed version"),
    (
        "broken json",
        b'{"version": "https://jsonfeed.org/version/1.1", "items": [',
        "not a feed: invalid JSON (Expecting value: line 1 column 59 (char 58))",
    ),
    (
        "unterminated doctype",
        b'<!DOCTYPE rss [<!ENTITY a "b"',
        "not a feed: unterminated declaration before the root element",
    ),
]


@pytest.mark.parametrize(
    ("body", "problem"),
    [case[1:] for case in NOT_FEEDS],
    ids=[case[0] for case in NOT_FEEDS],
)
def test_not_feeds(body: bytes, problem: str) -> None:
    feed = parse(body)
    assert feed.stories == []
    assert feed.problem == problem


def test_garbage_bytes() -> None:
    noise = random.Random(7).randbytes(5000)
    feed = parse(noise)
    assert feed.stories == []
    assert feed.problem.startswith("not a feed")


def test_malformed_xml_is_recovered_and_reported() -> None:
    body = (
        '<rss version="2.0"><channel><title>t</title>\n'
        "<item><title>One</title><link>https://ex.com/1</link></item>\n"
        "<item><title>Two</b></title><link>https://ex.com/2</link></item>\n"
        "<item><title>Three</title><link>https://ex.com/3</link></item>\n"
        "</channel></rss>"
    )
    feed = parse(body.encode())
    assert feed.problem == "XML error at line 3: mismatched tag (entries recovered: 3)"
    assert [s.url for s in feed.stories] == [f"https://ex.com/{n}" for n in (1, 2, 3)]


def test_line_numbers_survive_a_removed_doctype() -> None:
    body = (
        '<!DOCTYPE rss [\n<!ENTITY a "b">\n]>\n'
        '<rss version="2.0"><channel>\n<title>x</b></title>\n</channel></rss>'
    )
    assert parse(body.encode()).problem == (
        "entity declarations removed; XML error at line 5: mismatched tag (entries recovered: 0)"
    )


def test_oversized_body_is_truncated_after_the_last_complete_item() -> None:
    items = "".join(rss_item(f"Story {n}", f"https://ex.com/{n}") for n in range(100))
    body = rss(items).encode()
    feed = parse(body, max_bytes=len(body) // 2)
    assert feed.problem == f"body truncated to {len(body) // 2} bytes"
    assert 40 <= len(feed.stories) < 50
    assert [s.title for s in feed.stories] == [f"Story {n}" for n in range(len(feed.stories))]


def test_truncation_inside_a_multibyte_character() -> None:
    body = rss(rss_item("북한 첫 기사") + rss_item("두 번째 기사"), declaration="utf-8").encode()
    limit = body.index("번째".encode()) + 1
    feed = parse(body, max_bytes=limit)
    assert feed.problem == f"body truncated to {limit} bytes"
    assert [story.title for story in feed.stories] == ["북한 첫 기사"]


def test_never_raises_on_mangled_feeds() -> None:
    rng = random.Random(2024)
    sources = [RSS_20, ATOM, RDF, JSON_FEED, KOREAN.encode("euc-kr")]
    for _ in range(300):
        data = bytearray(rng.choice(sources))
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(data))
            action = rng.random()
            if action < 0.4:
                data[position] = rng.randrange(256)
            elif action < 0.7:
                del data[position : position + rng.randint(1, 40)]
            else:
                data[position:position] = rng.choice([b"<", b"&", b"]]>", b"<!ENTITY", b"\x00", b"<![CDATA["])
        feed = parse(bytes(data))
        assert isinstance(feed, ParsedFeed)
        assert all(story.published.tzinfo is not None for story in feed.stories)


def test_accepts_bytes_like_bodies() -> None:
    assert parse(bytearray(RSS_20)).stories == parse(RSS_20).stories
    assert parse(memoryview(RSS_20)).stories == parse(RSS_20).stories
