"""Extraction accuracy on real news pages from ../shared/corpus/pages, crawled for real.

Every page with expected output is served from a local HTTP server (as text/html without a
charset, so decoding is tested too) and linked from one listing page; a `kind: site` source
crawls it through `SiteSpider` into a story store, and each stored story is compared with
the expected output:

- fundus: `<Publisher>.expected.json` (title, publishing_date, body summary + sections),
  matched to its HTML file by the title appearing in the page;
- readability: `expected-metadata.json` (title, publishedTime) and the text of `expected.html`;
- newspaper4k: `*.expected-metadata.json` (title, publish_date) and `*.expected.txt`;
- article-extraction-benchmark: `ground-truth.json` (articleBody only).

Title: exact match after whitespace is collapsed. Date: the same calendar day (in the
expected value's own offset; a naive expected value is read in the page's own offset).
Body: bag-of-tokens F1 (words; Chinese and Japanese characters one token each).
The table is printed; the floors are pinned just under what the extractor reaches.

Why some titles cannot match: the references disagree on what a title is. readability
and newspaper4k keep a site suffix on some pages ("..._科技_腾讯网", "... - Yahoo!ニュース")
and drop it on others; on several pages the reference took `<title>` where the page's
JSON-LD headline, og:title and <h1> say something else (cnn_001, time_001, theverge).
One fundus page (Hankook Ilbo, 2026-01-29) renders its article with JavaScript only.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import lxml.html
import pytest

from newswatch.crawler.clock import SystemClock
from newswatch.crawler.fetch.engine import Crawler
from newswatch.crawler.outcomes import OutcomeRecorder
from newswatch.crawler.sources import CrawlerConfig, SourceConfig
from newswatch.storage import open_storage
from newswatch.crawler.urls import canonical_url
from tests.fakes.feed_server import FeedServer

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PAGES = SHARED / "corpus" / "pages"

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not PAGES.is_dir(), reason="../shared/corpus/pages is absent"),
]

# Pinned just under what is reached (see the printed table); (title, date, body F1).
FLOORS = {
    "fundus": (0.90, 0.95, 0.89),
    "readability": (0.80, 0.95, 0.93),
    "newspaper4k": (0.74, 0.95, 0.96),
    "article-extraction-benchmark": (None, None, 0.97),
}


@dataclass(frozen=True)
class Case:
    collection: str
    path: Path
    title: str | None
    date: str | None
    body: str | None


def _fundus() -> list[Case]:
    out = []
    for page in sorted((PAGES / "fundus").glob("*.html")):
        publisher = page.name.rsplit("_", 3)[0]
        expected = json.loads((PAGES / "fundus" / f"{publisher}.expected.json").read_text("utf-8"))
        text = " ".join(html.unescape(page.read_text("utf-8", "replace")).split())
        version = next((v for v in expected.values() if " ".join(v["title"].split()) in text), None)
        if version is None:
            continue
        body = version.get("body") or {}
        parts = list(body.get("summary") or [])
        for section in body.get("sections") or []:
            parts += (section.get("headline") or []) + (section.get("paragraphs") or [])
        out.append(Case("fundus", page, version.get("title"), version.get("publishing_date"), "\n".join(parts)))
    return out


def _readability() -> list[Case]:
    out = []
    for page in sorted((PAGES / "readability").glob("*.source.html")):
        stem = page.name[: -len(".source.html")]
        meta = json.loads((PAGES / "readability" / f"{stem}.expected-metadata.json").read_text("utf-8"))
        expected = PAGES / "readability" / f"{stem}.expected.html"
        body = lxml.html.fromstring(expected.read_text("utf-8")).text_content() if expected.exists() else None
        out.append(Case("readability", page, meta.get("title"), meta.get("publishedTime"), body))
    return out


def _newspaper4k() -> list[Case]:
    out = []
    for page in sorted((PAGES / "newspaper4k").glob("*.html")):
        meta_path = page.with_name(f"{page.stem}.expected-metadata.json")
        text_path = page.with_name(f"{page.stem}.expected.txt")
        if not meta_path.exists() and not text_path.exists():
            continue
        meta = json.loads(meta_path.read_text("utf-8")) if meta_path.exists() else {}
        body = text_path.read_text("utf-8") if text_path.exists() else None
        out.append(Case("newspaper4k", page, meta.get("title"), meta.get("publish_date"), body))
    return out


def _benchmark() -> list[Case]:
    folder = PAGES / "article-extraction-benchmark"
    truth = json.loads((folder / "ground-truth.json").read_text("utf-8"))
    out = []
    for page in sorted(folder.glob("*.html")):
        prefix = page.stem.rsplit("-", 1)[1]
        key = next((k for k in truth if k.startswith(prefix)), None)
        if key:
            out.append(Case("article-extraction-benchmark", page, None, None, truth[key]["articleBody"]))
    return out


def corpus_cases() -> list[Case]:
    return _fundus() + _readability() + _newspaper4k() + _benchmark()


# --- metrics ---------------------------------------------------------------------------------

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")


def tokens(text: str) -> list[str]:
    out: list[str] = []
    for word in re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold()):
        out.extend(word) if _CJK.search(word) else out.append(word)
    return out


def token_f1(got: str, want: str) -> float:
    g, w = Counter(tokens(got)), Counter(tokens(want))
    common = sum((g & w).values())
    if not common:
        return 0.0
    precision, recall = common / sum(g.values()), common / sum(w.values())
    return 2 * precision * recall / (precision + recall)


def same_title(got: str, want: str) -> bool:
    return " ".join(unicodedata.normalize("NFC", got).split()) == " ".join(unicodedata.normalize("NFC", want).split())


def same_day(got: datetime | None, want: str) -> bool:
    text = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", want.strip().replace("Z", "+00:00"))
    expected = datetime.fromisoformat(text)
    if got is None:
        return False
    if expected.tzinfo is not None:
        return got.astimezone(expected.tzinfo).date() == expected.date()
    return got.date() == expected.date()


def test_metrics_behave() -> None:
    assert token_f1("Kim met Xi in Beijing", "Kim met Xi in Beijing") == 1.0
    assert token_f1("", "text") == 0.0
    assert 0.5 < token_f1("北朝鮮の金正恩", "金正恩") < 1.0
    assert same_title(" A  title\n", "A title")
    assert same_day(datetime.fromisoformat("2019-08-20T00:30:00+00:00"), "2019-08-20T09:31:01+09:00")
    assert not same_day(datetime.fromisoformat("2019-08-19T21:30:00+00:00"), "2019-08-20T09:31:01+02:00")


# --- the crawl ---------------------------------------------------------------------------------


def _crawl(cases: list[Case], tmp_path: Path) -> dict[str, object]:
    with FeedServer() as server:
        links = []
        for i, case in enumerate(cases):
            path = f"/pages/{i}/{case.path.name}"
            server.set(path, case.path.read_bytes(), content_type="text/html", conditional=False)
            links.append(f'<li><a href="{path}">{i}</a></li>')
        server.set("/", "<html><body><ul>" + "".join(links) + "</ul></body></html>", content_type="text/html")
        config = CrawlerConfig(delay=0, autothrottle=False, per_host=8, timeout=30)
        store = open_storage(tmp_path / "corpus.db").stories
        crawler = Crawler(config, OutcomeRecorder(store, SystemClock(), config))
        source = SourceConfig(name="corpus", kind="site", url=server.url("/"), follow=r"/pages/\d+/", max_articles=1000)

        async def crawl_once():
            try:
                return await crawler.crawl([source])
            finally:
                await crawler.close()

        summary = asyncio.run(crawl_once())
        crawler.pages.close()
        assert summary.failed == 0 and summary.pages_failed == 0, summary.failures
        by_url = {s.url: s for s in summary.new}
        return {case.path.name: by_url.get(canonical_url(server.url(f"/pages/{i}/{case.path.name}")))
                for i, case in enumerate(cases)}


def test_extraction_accuracy_per_collection(tmp_path: Path) -> None:
    cases = corpus_cases()
    assert len(cases) >= 100
    stories = _crawl(cases, tmp_path)
    rows: dict[str, dict[str, list]] = defaultdict(lambda: {"title": [], "date": [], "body": []})
    misses = []
    for case in cases:
        story = stories[case.path.name]
        assert story is not None, f"{case.path.name} was not stored"
        row = rows[case.collection]
        if case.title:
            row["title"].append(same_title(story.title, case.title))
        if case.date:
            row["date"].append(same_day(story.published, case.date))
        if case.body:
            row["body"].append(f1 := token_f1(story.text, case.body))
            if f1 < 0.5:
                misses.append(f"{case.collection}/{case.path.name}: body F1 {f1:.2f}")
    lines = [f"{'collection':30} {'title':>14} {'date':>14} {'body F1':>14}"]
    for collection, row in rows.items():
        cells = []
        for metric in ("title", "date", "body"):
            values = row[metric]
            cells.append(f"{sum(values) / len(values):.3f} (n={len(values)})" if values else "-")
        lines.append(f"{collection:30} {cells[0]:>14} {cells[1]:>14} {cells[2]:>14}")
    print("\n" + "\n".join(lines + misses))
    for collection, floors in FLOORS.items():
        row = rows[collection]
        for metric, floor in zip(("title", "date", "body"), floors, strict=True):
            if floor is not None:
                reached = sum(row[metric]) / len(row[metric])
                assert reached >= floor, f"{collection} {metric}: {reached:.3f} < {floor}"
