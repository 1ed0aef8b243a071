"""Copies of one story across real feeds: aggregators' title-only items against the outlets'
own items, from the Reuters and Bloomberg pools and the Google News / Yahoo feeds in
../shared/corpus/feeds (skipped without it).

Ground truth is conservative and independent of the clusterer: two items of different feeds
are copies when their headlines are equal once the aggregator's " - Reuters" (or
" - ロイター", ...) is removed by hand. Every such pair in which one side is an aggregator's
title-only item must be found through the look-up keys and joined. Other joins are printed
(run with -s) for reading; in these snapshots they are the same stories under a slightly
different headline ("EXCLUSIVE: …", "US$206 million" for "$206 million"), and each must at
least share most of its headline's character pairs (a join of unrelated stories would not).
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newswatch.alerts.match.clustering import StoryClusterer
from newswatch.crawler.parse.feeds import parse_feed

FEEDS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "feeds"
if not FEEDS.is_dir():
    pytest.skip(f"{FEEDS} is absent", allow_module_level=True)

pytestmark = pytest.mark.corpus

GROUPS = {
    "English": ["google-news-reuters-pool-laapy-2026082010.xml", "reuters-official-msn-laapy-2026082010.xml",
                "reuters-bloomberg-fulltext-laapy-2026082010.xml", "cna-world-laapy-2026082010.xml",
                "cna-latest-laapy-2026082010.xml"],
    "Japanese": ["google-news-jp-wire-pool-laapy-2026082010.xml", "yahoo-news-jp-reuters-laapy-2026082010.xml",
                 "yahoo-news-jp-bloomberg-laapy-2026082010.xml", "reuters-pool-laapy-2026082010.xml",
                 "bloomberg-pool-laapy-2026082010.xml"],
}
AGGREGATORS = ("google-news-", "yahoo-news-")
_SUFFIX = re.compile(r"\s+-\s+(Reuters|ロイター|Bloomberg|ブルームバーグ)$")


def _headline(title: str) -> str:
    return " ".join(_SUFFIX.sub("", unicodedata.normalize("NFKC", title).strip()).split()).lower()


@pytest.mark.parametrize("group", GROUPS)
def test_aggregator_copies_join_the_outlets_story(group: str) -> None:
    clusterer = StoryClusterer()
    items = [(name, story) for name in GROUPS[group]
             for story in parse_feed((FEEDS / name).read_bytes(), source=name, url="https://example.com/",
                                     now=datetime(2026, 8, 21, tzinfo=UTC)).stories]
    sketches = [clusterer.sketch(story.title, story.text) for _, story in items]
    copies = found = 0
    others: list[str] = []
    for i, j in itertools.combinations(range(len(items)), 2):
        (feed_a, a), (feed_b, b) = items[i], items[j]
        if feed_a == feed_b:
            continue
        joined = bool(set(sketches[i].keys) & set(sketches[j].keys)) and clusterer.same_story(sketches[i], sketches[j])
        if _headline(a.title) == _headline(b.title):
            if feed_a.startswith(AGGREGATORS) or feed_b.startswith(AGGREGATORS):
                copies += 1
                found += joined
        elif joined:
            others.append((a.title, b.title))
    print(f"\n{group}: {found}/{copies} aggregator copies joined; {len(others)} other joins:\n"
          + "\n".join(f"  {a}  |  {b}" for a, b in others))
    assert copies >= 50
    assert found == copies
    for a, b in others:
        pairs_a, pairs_b = _pairs(a), _pairs(b)
        assert len(pairs_a & pairs_b) >= 0.5 * min(len(pairs_a), len(pairs_b)), (a, b)


def _pairs(title: str) -> set[str]:
    text = _headline(title)
    return {text[i:i + 2] for i in range(len(text) - 1)}
