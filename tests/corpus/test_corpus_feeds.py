"""parse_feed on real feeds and on feedparser's own test suite, from ../shared/corpus.

(a) Every feed under feeds/ parses without a problem into one story per entry (3,472 in all,
    as feedparser counts them too), with clean titles in the right script and dates of the
    snapshot's era.
(b) Every file under feedparser-tests/ parses without an exception, and every entry
    feedparser itself finds with a title or a link becomes a story.
"""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import feedparser
import pytest

from newswatch.crawler.parse.feeds import parse_feed

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CORPUS = SHARED / "corpus"
if not CORPUS.is_dir():
    pytest.skip(f"{CORPUS} is absent", allow_module_level=True)

pytestmark = pytest.mark.corpus

UTC = timezone.utc
FEEDS = sorted((CORPUS / "feeds").glob("*.xml"))
FEEDPARSER_TESTS = CORPUS / "feedparser-tests"

HANGUL = re.compile("[\uac00-\ud7a3]")
CJK = re.compile("[\u4e00-\u9fff]")
# UTF-8 read as Latin-1/cp1252 ("Ã©", "â€™", "ì¡°"), or bytes that could not be decoded.
MOJIBAKE = re.compile("[ÃÂ][\u0080-\u00bf]|â€|[ìíëê][\u0080-\u00bf]|\ufffd")
SNAPSHOT = re.compile(r"-(20\d{6})(\d{2})?")
# Snapshot dates of the files whose names do not carry one (from their own lastBuildDate).
SNAPSHOT_DATES = {"guardian-us-rssparser-fixture.xml": datetime(2018, 1, 31, 20, 15, tzinfo=UTC)}
# Feeds carry some old stories: chosun-politics of 2022-07-30 lists one of 2020-06-03.
OLDEST = timedelta(days=3 * 366)
ENTRY = re.compile(rb"<(?:item|entry)[\s>]")


def snapshot_of(path: Path) -> datetime:
    """When the feed was fetched: the date (and hour) in its name, else from SNAPSHOT_DATES."""
    if path.name in SNAPSHOT_DATES:
        return SNAPSHOT_DATES[path.name]
    match = SNAPSHOT.search(path.stem)
    assert match, f"no snapshot date in {path.name}"
    day = datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC)
    return day + timedelta(hours=int(match.group(2) or 23))


def entries_with_title_or_link(entries: list) -> int:
    """Entries that carry some title text (not just markup) or a link."""
    return sum(
        1
        for entry in entries
        if re.sub(r"<[^>]*>", "", entry.get("title", "")).strip() or entry.get("link")
    )


@pytest.mark.parametrize("path", FEEDS, ids=[path.name for path in FEEDS])
def test_real_feeds(path: Path) -> None:
    body = path.read_bytes()
    snapshot = snapshot_of(path)
    now = snapshot + timedelta(days=2)
    feed = parse_feed(body, source=path.stem, url=f"https://feeds.example.com/{path.name}", now=now)

    assert feed.problem == ""
    assert len(feed.stories) == len(ENTRY.findall(body)) > 0
    assert feed.title and not MOJIBAKE.search(feed.title)
    for story in feed.stories:
        assert story.title, story
        assert not MOJIBAKE.search(story.title), story.title
        assert story.url.startswith(("https://", "http://")), story
        assert story.published.tzinfo is not None
        assert snapshot - OLDEST < story.published <= snapshot + timedelta(days=1), story
    if "knewsrss" in path.name:
        assert HANGUL.search(feed.title)
        with_hangul = sum(1 for story in feed.stories if HANGUL.search(story.title))
        assert with_hangul >= 0.9 * len(feed.stories)


def test_latin1_feed() -> None:
    [path] = [path for path in FEEDS if "latin1" in path.name]
    feed = parse_feed(path.read_bytes(), source="jn", url="http://feeds.jn.pt/JN-ULTIMAS")
    assert feed.title == "Jornal de Notícias - Últimas Notícias"
    titles = [story.title for story in feed.stories]
    assert "Mãe de utente é a nova presidente da Raríssimas" in titles
    assert all(story.language == "pt-pt" for story in feed.stories)


def test_gb2312_feed() -> None:
    [path] = [path for path in FEEDS if "gb2312" in path.name]
    feed = parse_feed(path.read_bytes(), source="qq", url="http://news.qq.com/")
    assert feed.title == "新闻国内"
    assert all(CJK.search(story.title) for story in feed.stories)
    first = feed.stories[0]
    assert first.title == "习近平为何如此强调崇尚英雄？"
    # "2018-09-18 14:38:10" carries no zone; the feed is zh-cn, so it is Beijing time.
    assert first.published == datetime(2018, 9, 18, 6, 38, 10, tzinfo=UTC)


def test_korean_feed_text_and_dates() -> None:
    [path] = [path for path in FEEDS if path.name == "chosun-politics-knewsrss-20220723.xml"]
    feed = parse_feed(path.read_bytes(), source="chosun", url="https://www.chosun.com/")
    first = feed.stories[0]
    assert first.title == "봉하마을 찾은 이재명 “이기는 민주당 꼭 만들겠다”"
    assert first.published == datetime(2022, 7, 23, 2, 27, 44, tzinfo=UTC)


HEADER = re.compile(rb"^\s*Header:\s*([\w-]+):\s*(.*?)\s*$", re.M)


def test_feedparser_suite() -> None:
    files = sorted(path for path in FEEDPARSER_TESTS.rglob("*") if path.is_file())
    assert len(files) == 2107
    counts = {"files": 0, "entries": 0, "with title or link": 0, "stories": 0, "with problem": 0}
    missing: list[tuple[str, int, int]] = []
    for path in files:
        body = path.read_bytes()
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in HEADER.findall(body[:3000])}
        feed = parse_feed(
            body,
            source="suite",
            url="http://example.com/feed",
            content_type=headers.get("content-type", ""),
        )
        if path.suffix == ".json":
            # feedparser 6.0 does not read JSON Feed; count the items it lists.
            items = json.loads(body)["items"]
            entries = len(items)
            expected = sum(1 for item in items if item.get("title") or item.get("url"))
        else:
            parsed = feedparser.parse(io.BytesIO(body), response_headers=headers)
            entries = len(parsed.entries)
            expected = entries_with_title_or_link(parsed.entries)
        counts["files"] += 1
        counts["entries"] += entries
        counts["with title or link"] += expected
        counts["stories"] += len(feed.stories)
        counts["with problem"] += bool(feed.problem)
        if len(feed.stories) != expected:
            missing.append((str(path.relative_to(FEEDPARSER_TESTS)), expected, len(feed.stories)))
    print(f"\nfeedparser suite: {counts}")
    assert missing == []
    assert counts["stories"] == counts["with title or link"]
