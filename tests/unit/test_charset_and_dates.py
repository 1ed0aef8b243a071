"""Where reading feeds and reading pages differ: decoding bytes and reading dates.

Feeds and pages were read by two copies of the decoder and of the date parser, now one each
(`newswatch.crawler.parse.charset`, `newswatch.crawler.parse.dates`); these are the cases where
the copies gave different results, pinned per caller (one row: the input, what a feed makes of
it, what a page makes of it). One was a crash, not a result: a page declared UTF-16 without a
BOM made the page decoder raise; it is now read as feeds read it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from newswatch.crawler.parse import charset, dates


def _zone(hours: float) -> timezone:
    return timezone(timedelta(hours=hours))


UTC = timezone.utc
KO = "김정은 북한 국무위원장이 블라디보스토크에서 푸틴 대통령과 정상회담을 열었다. " * 3


def feed_text(body: bytes, content_type: str = "", *, final: bool = True) -> tuple[str, str]:
    decoded = charset.decode(body, charset.xml_labels(body, content_type), charset.FEED, final=final)
    return decoded.text, "; ".join(decoded.notes)


def page_text(body: bytes, content_type: str = "") -> tuple[str, str]:
    decoded = charset.decode(body, charset.html_labels(body, content_type), charset.PAGE, final=False)
    return decoded.text, decoded.encoding


def feed_date(raw: str, language: str = "") -> datetime | None:
    return dates.feed_date(raw, None, language)


def page_date(raw: str, language: str = "") -> datetime | None:
    return dates.parse_date(raw, language)


# (body, content type, feed text and notes, page text and encoding)
DECODING = [
    pytest.param("<p>hello</p>".encode("utf-16-le"), "", ("<p>hello</p>", ""),
                 ("<\0p\0>\0h\0e\0l\0l\0o\0<\0/\0p\0>\0", "utf-8"), id="utf-16-without-bom"),
    pytest.param(f"<p>{KO}</p>".encode("cp949"), "", (f"<p>{KO}</p>", "invalid UTF-8; decoded as cp949"),
                 (f"<p>{KO}</p>", "cp949"), id="euc-kr-undeclared-short"),
    pytest.param(f"<p>{KO}</p>".encode() + b"\xff\xfe!", "", (f"<p>{KO}</p>\ufffd\ufffd!", "2 invalid UTF-8 sequences replaced"),
                 ((f"<p>{KO}</p>".encode() + b"\xff\xfe!").decode("cp1252", "replace"), "cp1252"), id="mostly-utf-8"),
    pytest.param(b"<p>abc" + "\ud55c".encode()[:2], "", ("<p>abc\u043d\u2022", "invalid UTF-8; decoded as cp1251"),
                 ("<p>abc", "utf-8"), id="character-cut-at-the-end"),
]


@pytest.mark.parametrize(("body", "content_type", "as_feed", "as_page"), DECODING)
def test_feeds_and_pages_decode_as_they_always_did(body: bytes, content_type: str, as_feed, as_page) -> None:
    assert feed_text(body, content_type) == as_feed
    assert page_text(body, content_type) == as_page


def test_a_cut_character_after_a_bom() -> None:
    body = b"\xef\xbb\xbf<p>" + "\ud55c".encode()[:2]
    assert feed_text(body, final=False) == ("<p>", "")
    assert feed_text(body) == ("<p>\ufffd", "invalid utf-8 bytes replaced")
    assert page_text(body) == ("<p>\ufffd", "utf-8")


# (text, language, feed date in UTC, page date)
DATES = [
    ("Wed, 01 May 2024 10:00:00 KST", "", datetime(2024, 5, 1, 1, tzinfo=UTC), datetime(2024, 5, 1, 10, tzinfo=_zone(9))),
    ("Wed, 01 May 2024 10:00:00 CST", "zh", datetime(2024, 5, 1, 2, tzinfo=UTC),
     datetime(2024, 5, 1, 10, tzinfo=_zone(8))),
    ("Wed, 01 May 2024 10:00:00 IST", "", datetime(2024, 5, 1, 4, 30, tzinfo=UTC),
     datetime(2024, 5, 1, 10, tzinfo=_zone(5.5))),
    ("Wed, 01 May 2024 10:00:00 IST", "he", datetime(2024, 5, 1, 8, tzinfo=UTC), datetime(2024, 5, 1, 10, tzinfo=_zone(2))),
    ("2024-05-01 10:00 HKT", "", datetime(2024, 5, 1, 2, tzinfo=UTC), datetime(2024, 5, 1, 10, tzinfo=_zone(8))),
    ("2024-05-01 10:00 (KST)", "", datetime(2024, 5, 1, 1, tzinfo=UTC), datetime(2024, 5, 1, 10, tzinfo=_zone(9))),
    ("2024-05-01 10:00:00 PHT", "en", datetime(2024, 5, 1, 2, tzinfo=UTC), datetime(2024, 5, 1, 10, tzinfo=_zone(8))),
    ("2024-05-01T10:00:00.5+09:00", "", datetime(2024, 5, 1, 1, 0, 0, 500000, tzinfo=UTC),
     datetime(2024, 5, 1, 10, tzinfo=_zone(9))),
    ("2024년 5월 1일 오후 3:20", "ko", None, datetime(2024, 5, 1, 15, 20, tzinfo=_zone(9))),
    ("2024年5月1日 10:00", "ja", None, datetime(2024, 5, 1, 10, tzinfo=_zone(9))),
    ("Posted 2024-05-01 10:00", "", None, datetime(2024, 5, 1, 10, tzinfo=UTC)),
    ("1990-01-01", "", datetime(1990, 1, 1, tzinfo=UTC), None),
    ("2099-01-01", "", datetime(2099, 1, 1, tzinfo=UTC), None),
    ("2024-W18-3", "", datetime(2024, 5, 1, tzinfo=UTC), None),
]


@pytest.mark.parametrize(("text", "language", "as_feed", "as_page"), DATES)
def test_feeds_and_pages_read_dates_and_zone_abbreviations_alike(text: str, language: str, as_feed, as_page) -> None:
    assert feed_date(text, language) == as_feed
    page = page_date(text, language)
    assert page == as_page
    assert page is None or page.utcoffset() == as_page.utcoffset()


def test_a_utf_16_label_without_a_bom_is_ignored_by_both() -> None:
    body = f"<p>{KO}</p>".encode()
    assert feed_text(body, "text/html; charset=utf-16") == (f"<p>{KO}</p>", "declared utf-16 but decoded as utf-8")
    assert page_text(body, "text/html; charset=utf-16") == (f"<p>{KO}</p>", "utf-8")
