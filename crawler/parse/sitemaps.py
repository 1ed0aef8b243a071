"""Sitemaps: the bytes of a fetched sitemap in, the pages it lists out (pure, no I/O).

`parse_sitemap` reads a sitemap (`<urlset>`), a sitemap index (`<sitemapindex>`) or a
Google News sitemap (`<news:news>` with `news:title`, `news:publication_date` and
`news:language`), gzipped or not. Entries come newest first (by publication date, else
lastmod; undated ones last, in document order); URLs are canonical. The XML parser
resolves no entities and reaches no network; a gzip body is read up to `max_bytes`.
`parse_sitemap` never raises: what was wrong is in `Sitemap.problem`.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import lxml.etree

from newswatch.crawler.parse.dates import parse_date
from newswatch.crawler.urls import canonical_url

SITEMAP_MAX_BYTES = 20_000_000


@dataclass(frozen=True)
class SitemapEntry:
    url: str
    title: str = ""
    published: datetime | None = None
    modified: datetime | None = None
    language: str = ""


@dataclass(frozen=True)
class Sitemap:
    """A parsed sitemap: child sitemaps (an index) or pages, newest first where dated."""

    children: list[str]
    entries: list[SitemapEntry]
    problem: str = ""


_SITEMAP_PARSER = lxml.etree.XMLParser(
    recover=True, resolve_entities=False, no_network=True, huge_tree=False, remove_comments=True, remove_pis=True,
)


def parse_sitemap(body: bytes, *, max_bytes: int = SITEMAP_MAX_BYTES) -> Sitemap:
    """Parse a sitemap, sitemap index or Google News sitemap (gzipped or not); never raises."""
    try:
        if body[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=io.BytesIO(body)) as unzipped:
                body = unzipped.read(max_bytes + 1)
        if len(body) > max_bytes:
            return Sitemap([], [], f"sitemap larger than {max_bytes} bytes")
        root = lxml.etree.fromstring(body, parser=_SITEMAP_PARSER)
    except Exception as exc:
        return Sitemap([], [], f"not a sitemap: {type(exc).__name__}: {exc}"[:300])
    if root is None:
        return Sitemap([], [], "not a sitemap: empty document")
    kind = lxml.etree.QName(root).localname.lower()
    dated: list[tuple[datetime | None, int, Any]] = []
    for i, node in enumerate(root):
        if not isinstance(node.tag, str):
            continue
        fields = _fields(node)
        loc = fields.get("loc", "").strip()
        if not loc:
            continue
        published = parse_date(fields.get("publication_date", ""))
        modified = parse_date(fields.get("lastmod", ""))
        when = published or modified
        if kind == "sitemapindex":
            dated.append((when, i, loc))
        elif url := canonical_url(loc):
            title = " ".join(fields.get("title", "").split())
            language = fields.get("language", "").strip().lower()
            dated.append((when, i, SitemapEntry(url, title, published, modified, language)))
    dated.sort(key=lambda d: (d[0] is not None, d[0].timestamp() if d[0] else 0, -d[1]), reverse=True)
    if kind == "sitemapindex":
        return Sitemap([d[2] for d in dated], [])
    if kind != "urlset":
        return Sitemap([], [], f"not a sitemap: root element <{kind}>")
    return Sitemap([], [d[2] for d in dated])


def _fields(node: Any) -> dict[str, str]:
    """loc, lastmod and the news: fields (title, publication_date, language) of one entry."""
    fields: dict[str, str] = {}
    for child in node.iter():
        if child is node or not isinstance(child.tag, str):
            continue
        name = lxml.etree.QName(child).localname.lower()
        if name in ("loc", "lastmod", "title", "publication_date", "language") and name not in fields:
            if name == "loc" and child.getparent() is not node:
                continue
            fields[name] = child.text or ""
    return fields
