"""Alert formatting: every rendering must be accepted by Telegram's HTML parser and fit."""

from __future__ import annotations

import asyncio
import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from telegram import Bot

from newswatch.alerts.deliver.format import (
    AlertView,
    escape,
    fit,
    hashtag,
    plural,
    render_alert,
    render_alert_plain,
    render_console,
    render_digest,
    safe_url,
    utf16_len,
    visible_length,
)
from newswatch.progress import describe_outcome
from newswatch.crawler.outcomes import FetchOutcome
from newswatch.crawler.sources import SourceConfig
from newswatch.crawler.story import Story
from tests.fakes.bot_api import FakeBotAPI, parse_html

PUBLISHED = datetime(2025, 3, 1, 0, 30, tzinfo=UTC)
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
    "0000000c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082")


def view(**changes) -> AlertView:
    fields = dict(
        title="Kim and Trump meet in Hanoi",
        url="https://example.com/news/1",
        source="Yonhap",
        published=PUBLISHED,
        topics=(("summit", 7.2), ("north-korea", 5.0)),
        terms=("summit", "Hanoi"),
        summary="The two leaders met for a second summit.",
        also_reported_by=(),
    )
    fields.update(changes)
    return AlertView(**fields)


CASES = {
    "ordinary": view(),
    "script tag in title": view(title="<script>alert('x')</script> Summit"),
    "ampersands": view(title="AT&T & Samsung &amp; partners", source="R&D <Weekly>",
                       terms=("AT&T", "<b>")),
    "quotes in title and url": view(title='"Kim" said \'no\'', url='https://example.com/?q="x"&a=<b>'),
    "unbalanced tags": view(title="<b>bold <i>never closed", summary="</b> closes </i> first <a href=x>"),
    "5,000-char summary": view(summary="word " * 1000),
    "5,000-char title and summary": view(title="T" * 5000, summary="S" * 5000),
    "emoji and astral": view(title="🇰🇷🇰🇵 summit 👨‍👩‍👧 𝕏 𠀋 ✌🏽", summary="😀👨‍👩‍👧🇰🇷" * 700),
    "korean": view(title="김정은, 트럼프와 하노이서 정상회담", source="연합뉴스",
                   topics=(("북한", 9.1), ("north-korea", 8.0)), terms=("정상회담",),
                   summary="김정은 국무위원장은 " * 400),
    "chinese without spaces": view(title="中朝峰会在北京举行", source="新华社", summary="中华人民共和国" * 800),
    "javascript url": view(url="javascript:alert(document.cookie)"),
    "data url": view(url="data:text/html,<script>alert(1)</script>"),
    "control and bidi characters": view(title="Red\x1b[31m alert\u202e txet", source="Bad\x00Source\r\nX"),
    "lone surrogate": view(title="broken \ud800 text"),
    "entities already in text": view(title="&lt;escaped&gt; &#x1F600; &nbsp; &"),
    "many outlets": view(also_reported_by=tuple(f"Outlet <{i}> & Co" for i in range(10))),
    "many terms": view(terms=tuple(f"term&{i}" for i in range(30))),
    "empty title and summary": view(title="   ", summary=""),
    "no topics": view(topics=()),
}


def round_trip(fake: FakeBotAPI, messages: list[tuple[str, str | None]], *, caption: str | None = None):
    """Send each (text, parse_mode) through the real client; return what the fake accepted."""
    async def send():
        async with Bot(fake.token, base_url=fake.api_base) as bot:
            for text, parse_mode in messages:
                await bot.send_message(1, text, parse_mode=parse_mode)
            if caption is not None:
                await bot.send_photo(1, PNG_1X1, caption=caption, parse_mode="HTML")
    asyncio.run(send())
    return fake.sent


@pytest.fixture
def fake():
    with FakeBotAPI() as server:
        yield server


# --------------------------------------------------------------------------- Telegram accepts everything


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_every_rendering_is_accepted_by_telegram_and_fits(fake, case):
    html = render_alert(case)
    plain = render_alert_plain(case)
    caption = render_alert(case, limit=1024)
    sent = round_trip(fake, [(html, "HTML"), (plain, None)], caption=caption)

    assert len(sent) == 3
    html_sent, plain_sent, photo_sent = sent
    assert utf16_len(html_sent["visible"]) <= 4096
    assert utf16_len(html_sent["visible"]) == visible_length(html)
    assert utf16_len(plain_sent["visible"]) <= 4096
    assert utf16_len(photo_sent["visible"]) <= 1024
    assert "\x1b" not in html_sent["visible"] and "\u202e" not in html_sent["visible"]


@pytest.mark.parametrize("limit", [4096, 1024, 400, 120, 60, 25, 5, 1])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_any_limit_is_respected_with_valid_markup(case, limit):
    html = render_alert(case, limit=limit)
    visible, _ = parse_html(html)
    assert utf16_len(visible) <= limit
    assert utf16_len(render_alert_plain(case, limit=limit)) <= limit


def test_digest_splits_into_several_accepted_messages(fake):
    views = [view(title=f"Story {n}: " + "long headline words " * 12, url=f"https://example.com/{n}",
                  topics=(("sanctions", 5.0 + n / 10), ("north-korea", 4.0)))
             for n in range(1, 61)]
    messages = render_digest(views, title="Morning <digest> & more", tz=ZoneInfo("Asia/Seoul"))

    assert len(messages) > 1
    sent = round_trip(fake, [(m, "HTML") for m in messages])
    assert len(sent) == len(messages)
    shown = []
    for index, entry in enumerate(sent, start=1):
        assert utf16_len(entry["visible"]) <= 4096
        assert entry["visible"].startswith(f"Morning <digest> & more ({index}/{len(messages)})")
        shown += [int(n) for n in re.findall(r"^(\d+)\. ", entry["visible"], re.M)]
    assert shown == list(range(1, 61))


@pytest.mark.parametrize("limit", [4096, 1024, 200])
def test_digest_of_astral_heavy_titles_fits_small_limits(fake, limit):
    views = [view(title="🇰🇷 정상회담 😀" * 30, url="javascript:void(0)") for _ in range(25)]
    messages = render_digest(views, title="요약", limit=limit)
    for message in messages:
        visible, _ = parse_html(message)
        assert utf16_len(visible) <= limit
    sent = round_trip(fake, [(m, "HTML") for m in messages])
    assert len(sent) == len(messages)


def test_digest_of_nothing_is_no_message():
    assert render_digest([], title="Digest") == []


# --------------------------------------------------------------------------- layout


def test_layout_of_an_alert():
    alert = view(published=datetime(2025, 3, 1, 0, 30, tzinfo=UTC),
                 also_reported_by=("KCNA Watch", "NK News", "Reuters", "AP", "AFP"))
    assert render_alert(alert, tz=ZoneInfo("Asia/Seoul")) == (
        '<b><a href="https://example.com/news/1">Kim and Trump meet in Hanoi</a></b>\n'
        "Yonhap · 2025-03-01 09:30 KST\n"
        "#summit 7.2 · #north_korea 5.0\n"
        "<i>matched: summit, Hanoi</i>\n"
        "\n"
        "The two leaders met for a second summit.\n"
        "\n"
        "also reported by KCNA Watch, NK News, Reuters (+2)"
    )


def test_plain_and_console_renderings_carry_the_url_as_text():
    alert = view()
    plain = render_alert_plain(alert)
    assert plain.splitlines()[:3] == [
        "Kim and Trump meet in Hanoi",
        "https://example.com/news/1",
        "Yonhap · 2025-03-01 00:30 UTC",
    ]
    console = render_console(view(source="Bad\x1b[2JSource"), tz=timezone(timedelta(hours=9)))
    assert console.splitlines()[0] == "[2025-03-01 09:30 UTC+09:00] Bad [2JSource"
    assert "https://example.com/news/1" in console
    assert not any(unicodedata.category(ch) == "Cc" for ch in console.replace("\n", ""))


def test_topics_become_whole_hashtags_in_telegram(fake):
    alert = view(topics=(("north-korea", 5.0), ("U.S. sanctions", 9.0), ("북한-핵", 3.0)))
    [sent] = round_trip(fake, [(render_alert(alert), "HTML")])
    tags = [sent["visible"][e["offset"]:e["offset"] + e["length"]]
            for e in sent["entities"] if e["type"] == "hashtag"]
    assert tags == ["#U_S_sanctions", "#north_korea", "#북한_핵"]


def test_unsafe_urls_are_not_linked():
    for url in ("javascript:alert(1)", "data:text/html,x", "ftp://example.com/x", "//example.com",
                "https://", "http://exa mple.com", "https://example.com:99999/"):
        html = render_alert(view(url=url))
        assert "<a " not in html, url


def test_summary_is_cut_on_a_word_boundary_near_300():
    summary = " ".join(f"word{n}" for n in range(200))
    line = render_alert(view(summary=summary)).split("\n\n")[1]
    assert line.endswith("…")
    assert 250 <= utf16_len(line) <= 300
    assert re.fullmatch(r"(word\d+ )*word\d+…", line)


def test_the_summary_gives_way_before_anything_else():
    alert = view(summary="filler " * 1000, also_reported_by=("NK News",))
    html = render_alert(alert, limit=400)
    assert visible_length(html) <= 400
    for kept in ("Kim and Trump", "Yonhap", "#summit", "matched:", "also reported by NK News", "filler"):
        assert kept in html
    without_summary = visible_length(render_alert(view(summary="", also_reported_by=("NK News",))))
    tight = render_alert(alert, limit=without_summary + 20)
    assert "filler" not in tight
    for kept in ("Kim and Trump", "Yonhap", "#summit", "matched:", "also reported by NK News"):
        assert kept in tight


def test_published_must_be_timezone_aware():
    with pytest.raises(ValueError, match="timezone-aware"):
        view(published=datetime(2025, 3, 1, 9, 30))


# --------------------------------------------------------------------------- primitives


@pytest.mark.parametrize(("raw", "escaped"), [
    ("a < b & c > d", "a &lt; b &amp; c &gt; d"),
    ('"quoted" \'single\'', '"quoted" \'single\''),
    ("&amp;", "&amp;amp;"),
    ("한국어 😀", "한국어 😀"),
])
def test_escape(raw, escaped):
    assert escape(raw) == escaped


def test_escape_for_attributes_quotes_double_quotes():
    assert escape('https://x.org/?a="b"&c', quote=True) == "https://x.org/?a=&quot;b&quot;&amp;c"


@pytest.mark.parametrize(("url", "expected"), [
    ("https://example.com/a?b=1", "https://example.com/a?b=1"),
    ("  HTTP://Example.com  ", "HTTP://Example.com"),
    ("javascript:alert(1)", None),
    ("JaVaScRiPt:alert(1)", None),
    ("mailto:x@example.com", None),
    ("example.com/no-scheme", None),
    ("https://exa mple.com", None),
    ("https://example.com/\nx", None),
    ("", None),
])
def test_safe_url(url, expected):
    assert safe_url(url) == expected


@pytest.mark.parametrize(("topic", "tag"), [
    ("summit", "#summit"),
    ("north-korea", "#north_korea"),
    ("U.S. sanctions", "#U_S_sanctions"),
    ("북한 핵", "#북한_핵"),
    ("2024", "#topic_2024"),
    ("--", "#topic"),
])
def test_hashtag(topic, tag):
    assert hashtag(topic) == tag


FIT_SAMPLES = [
    '<b><a href="https://x.org/?a=1&amp;b=2">Title &amp; more</a></b>\nsource · time\n<i>terms</i>',
    "<b>bold <i>nested <u>deep</u> text</i> tail</b> end",
    "😀👨‍👩‍👧🇰🇷🇰🇵 &lt;tag&gt; 정상회담 中朝峰会 ✌🏽 end",
    "<pre><code class=\"language-python\">x = 1 &amp;&amp; y</code></pre> after",
    "plain words only, nothing else at all",
]


@pytest.mark.parametrize("html", FIT_SAMPLES)
def test_fit_never_breaks_markup_at_any_limit(html):
    full = visible_length(html)
    assert fit(html, full) == html
    for limit in range(1, full):
        trimmed = fit(html, limit)
        visible, _ = parse_html(trimmed)
        assert utf16_len(visible) <= limit, (limit, trimmed)
        assert trimmed.endswith("…")
        assert not visible.rstrip("…").endswith("\u200d")
        flags = len(re.search(r"[\U0001F1E6-\U0001F1FF]*…?$", visible).group().rstrip("…"))
        assert flags % 2 == 0, trimmed


@pytest.mark.parametrize(("count", "noun", "expected"), [
    (1, "story", "1 story"), (2, "story", "2 stories"), (0, "alert", "0 alerts"), (1, "alert", "1 alert"),
    (1, "watch", "1 watch"), (3, "watch", "3 watches"), (2, "day", "2 days"), (1, "day", "1 day"),
    (2, "active chat", "2 active chats"), (1204, "failed fetch", "1,204 failed fetches"),
    (2, "entry", "2 entries"), (5, "new story", "5 new stories"), (2, "person", "2 people"),
])
def test_plural(count: int, noun: str, expected: str) -> None:
    many = "people" if noun == "person" else None
    assert plural(count, noun, many) == expected


def test_a_source_with_one_story_says_story() -> None:
    source = SourceConfig(name="wire", url="https://example.com/feed.xml")
    story = Story(id="x", source="wire", url="https://example.com/1", title="t", text="",
                  published=datetime(2026, 3, 1, tzinfo=UTC))
    assert describe_outcome(FetchOutcome(source, status=200, stories=[story]), [story]) == (
        "fetched", "HTTP 200, 1 story, 1 new")
