"""Article pages: the bytes of a fetched news page in, the story's fields out.

This module owns the pure extraction stage for pages (it does no I/O):

1. `decode_html` reads the bytes with `newswatch.crawler.parse.charset` (page rules): a BOM,
   the HTTP charset and the page's own `<meta charset>`, valid UTF-8, else detection;
2. the page is cut after `MAX_TAGS` tags and parsed once with lxml (whose parser stops at a
   nesting depth of 256, so nested-tag bombs stay small); pages with more than
   `MAX_ELEMENTS` elements are not handed to the extractor (real pages have a few thousand);
3. the page's own metadata is read: JSON-LD (`NewsArticle` and kin: headline,
   datePublished, author, inLanguage, articleBody), OpenGraph / `article:` meta tags,
   `<title>`, the first `<h1>`, `<html lang>`;
4. site-specific `selectors` (CSS, or XPath when the expression starts with `/` or `(`)
   give title, date and body where set;
5. title: the JSON-LD headline, else og:title, else `<title>`, without a site-name suffix
   ("Headline | Site"); the `<h1>` when that is the same headline without a suffix.
   Date: JSON-LD / meta tags, else htmldate (without its slow extensive search).
   Body: trafilatura (precision mode, without its own metadata pass), else the JSON-LD
   articleBody of pages that render their text with script; a first line repeating the
   title is dropped.

Dates are read by `newswatch.crawler.parse.dates.parse_date`: in the page's own UTC offset; a
time without one takes the zone of the page's language where that is unambiguous.
`extract_article` never raises: what went wrong is in `Article.problem`.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import htmldate
import lxml.etree
import lxml.html
import trafilatura
from parsel import Selector

from newswatch.crawler.parse.charset import PAGE, decode, html_labels
from newswatch.crawler.parse.dates import parse_date
from newswatch.crawler.story import Story, settle_date, story_id
from newswatch.crawler.urls import canonical_url

MAX_PAGE_BYTES = 4_000_000
MAX_TAGS = 20_000
MAX_ELEMENTS = 10_000
MAX_TEXT_CHARS = 100_000
SHORT_TEXT = 200


@dataclass(frozen=True)
class Article:
    """What one article page says about itself."""

    title: str
    text: str
    published: datetime | None
    author: str = ""
    language: str = ""
    description: str = ""
    canonical: str = ""
    encoding: str = ""
    problem: str = ""


# --- decoding -----------------------------------------------------------------------------


def decode_html(body: bytes, content_type: str = "") -> tuple[str, str]:
    """The page as text and the encoding used to read it."""
    decoded = decode(body, html_labels(body, content_type), PAGE, final=False)
    return decoded.text, decoded.encoding


# --- extraction ---------------------------------------------------------------------------


def extract_article(
    body: bytes, url: str, *, content_type: str = "", selectors: Mapping[str, str | None] | None = None,
) -> Article:
    """Extract one article page; never raises."""
    try:
        return _extract(bytes(body), url, content_type, selectors or {})
    except Exception as exc:  # the last line of defence: one bad page never stops a crawl
        return Article("", "", None, problem=f"internal error: {type(exc).__name__}: {exc}"[:300])


def _extract(body: bytes, url: str, content_type: str, selectors: Mapping[str, str | None]) -> Article:
    notes: list[str] = []
    if len(body) > MAX_PAGE_BYTES:
        body = body[:MAX_PAGE_BYTES]
        notes.append(f"page cut at {MAX_PAGE_BYTES} bytes")
    text, encoding = decode_html(body, content_type)
    if text.count("<") > MAX_TAGS:
        text = text[: _nth(text, "<", MAX_TAGS)]
        notes.append(f"page cut after {MAX_TAGS} tags")
    tree = _parse(text)
    if tree is None:
        return Article("", "", None, encoding=encoding, problem="; ".join([*notes, "not an HTML page"]))
    elements = sum(1 for _ in tree.iter())
    meta = _page_metadata(tree)
    chosen = _selected(tree, selectors)
    title = chosen.get("title") or meta.headline or strip_site_name(meta.og_title, meta.site_names) or strip_site_name(
        meta.title, meta.site_names) or meta.h1
    if not chosen.get("title") and meta.h1 and title.startswith(meta.h1) and len(meta.h1) >= 0.6 * len(title):
        title = meta.h1
    hint = meta.language or _script_language(f"{title} {meta.description}")
    published = parse_date(chosen.get("date") or "", hint) or parse_date(meta.published, hint)
    if published is None and elements <= MAX_ELEMENTS:
        published = parse_date(htmldate.find_date(tree, **_DATE_PARAMS) or "", hint)
    body_text = chosen.get("body", "")
    if elements > MAX_ELEMENTS:
        notes.append(f"{elements} elements: too many to extract the body")
    elif not body_text:
        document = trafilatura.bare_extraction(
            tree, url=url or None, with_metadata=False, include_comments=False, include_tables=True,
            favor_precision=True,
        )
        body_text = _clean_text(getattr(document, "text", None) or "")
    if len(body_text) < SHORT_TEXT and len(meta.body) > len(body_text):
        body_text = meta.body
    first, _, rest = body_text.partition("\n")
    if rest and _key(first) == _key(title):
        body_text = rest
    language = meta.language or _script_language(f"{title} {body_text[:2000]}")
    author = meta.author
    if not body_text:
        notes.append("no article text found")
    return Article(
        title=title[:1000], text=body_text[:MAX_TEXT_CHARS], published=published, author=author[:300],
        language=language, description=meta.description,
        canonical=meta.canonical, encoding=encoding, problem="; ".join(notes),
    )


_DATE_PARAMS = {"original_date": True, "extensive_search": False, "outputformat": "%Y-%m-%dT%H:%M:%S%z"}
_HTML_PARSER = lxml.html.HTMLParser(collect_ids=False, default_doctype=False, remove_comments=True, remove_pis=True)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.I)


def _nth(text: str, char: str, n: int) -> int:
    """The index of the n-th occurrence of `char` (n >= 1) in `text`."""
    index = -1
    for _ in range(n):
        index = text.find(char, index + 1)
    return index


def _parse(text: str) -> lxml.html.HtmlElement | None:
    text = _XML_DECLARATION.sub("", text, count=1)
    if not text.strip():
        return None
    try:
        tree = lxml.html.document_fromstring(text, parser=_HTML_PARSER)
    except (lxml.etree.ParserError, ValueError):
        return None
    return tree if tree is not None and len(tree) else None


# --- the page's own metadata ------------------------------------------------------------------


@dataclass
class _Meta:
    headline: str = ""
    og_title: str = ""
    title: str = ""
    h1: str = ""
    site_names: tuple[str, ...] = ()
    published: str = ""
    author: str = ""
    language: str = ""
    description: str = ""
    canonical: str = ""
    body: str = ""


_ARTICLE_TYPES = frozenset({
    "article", "newsarticle", "reportagenews", "analysisnewsarticle", "backgroundnewsarticle",
    "opinionnewsarticle", "reviewnewsarticle", "blogposting", "liveblogposting", "report",
    "scholarlyarticle", "techarticle", "socialmediaposting", "webpage", "creativework",
})
_DATE_META = (
    "article:published_time", "og:published_time", "og:article:published_time", "datepublished",
    "article.published", "pubdate", "publishdate", "publish-date", "publish_date", "date",
    "dc.date.issued", "dcterms.created", "dc.date", "sailthru.date", "parsely-pub-date",
    "citation_publication_date", "article_date_original", "cxenseparse:recs:publishtime",
)


def _page_metadata(tree: lxml.html.HtmlElement) -> _Meta:
    meta = _Meta()
    tags: dict[str, str] = {}
    for node in tree.iterfind(".//meta"):
        key = (node.get("property") or node.get("name") or node.get("itemprop") or node.get("http-equiv") or "")
        value = node.get("content") or node.get("datetime") or ""
        key = key.strip().lower()
        if key and value.strip() and key not in tags:
            tags[key] = value.strip()
    meta.headline = _clean(tags.get("headline") or "")
    meta.og_title = _clean(tags.get("og:title") or tags.get("twitter:title") or "")
    h1 = tree.find(".//h1")
    meta.h1 = _clean(h1.text_content()) if h1 is not None else ""
    meta.title = _clean(tree.findtext(".//title") or "")
    sites = [tags.get("og:site_name", ""), tags.get("application-name", ""), tags.get("twitter:site", "").lstrip("@")]
    meta.description = _clean(tags.get("og:description") or tags.get("description") or "")
    meta.published = next((tags[k] for k in _DATE_META if k in tags), "")
    meta.author = _clean(tags.get("author") or tags.get("article:author") or "")
    if meta.author.startswith(("http://", "https://")):
        meta.author = ""
    found_headline = False
    language = tree.get("lang") or tree.get("xml:lang") or tags.get("content-language") or tags.get("og:locale") or ""
    for node in tree.iterfind(".//link[@rel]"):
        if node.get("rel", "").lower() == "canonical" and node.get("href"):
            meta.canonical = node.get("href", "").strip()
            break
    for item in _json_ld_items(tree):
        kind = item.get("@type")
        kinds = {str(k).lower() for k in (kind if isinstance(kind, list) else [kind])}
        if not kinds & _ARTICLE_TYPES:
            continue
        article_like = bool(kinds - {"webpage", "creativework"})
        headline = _clean(_first_text(item.get("headline")) or _first_text(item.get("name")))
        if headline and article_like and not found_headline:
            meta.headline, found_headline = headline, True
        elif headline and not meta.headline:
            meta.headline = headline
        sites.append(_first_text(item.get("publisher")))
        date = _first_text(item.get("datePublished")) or _first_text(item.get("dateCreated"))
        if date and (article_like or not meta.published):
            meta.published = date
        text = _first_text(item.get("articleBody"))
        if text and article_like and not meta.body:
            meta.body = _clean_text(_strip_tags(text))
        author = _person(item.get("author"))
        if author and not meta.author:
            meta.author = author
        if not language:
            language = _first_text(item.get("inLanguage"))
        if article_like and found_headline:
            break
    meta.language = _language_tag(language)
    meta.site_names = tuple(_clean(site) for site in sites if site and site.strip())
    return meta


_SEPARATOR = re.compile(r"\s+[|\-–—·»/:]\s+|\s*[|ㅣ｜_：]\s*")
_SUFFIX_SEPARATORS = frozenset("|-–—ㅣ｜_")


def strip_site_name(title: str, site_names: tuple[str, ...] = ()) -> str:
    """A page title without the site's name ("Headline | Site", "헤드라인ㅣ한국일보").

    A trailing part is dropped when it names the site, or when it is short (at most three
    words) and set off by a bar, dash or underscore after a headline of three words or more."""
    title = _clean(title)
    names = [_key(name) for name in site_names if len(_key(name)) >= 2]
    for _ in range(2):
        parts = list(_SEPARATOR.finditer(title))
        if not parts:
            break
        last = parts[-1]
        head, tail = title[: last.start()].strip(), title[last.end():].strip()
        if not head or not tail:
            break
        tail_key = _key(tail)
        names_site = len(tail_key) >= 2 and any(name in tail_key or tail_key in name for name in names)
        short = len(tail.split()) <= 3 and len(tail) <= 25 and last.group().strip() in _SUFFIX_SEPARATORS
        if names_site or (short and (len(head.split()) >= 3 or len(head) >= 12)):
            title = head
        else:
            break
    return title


def _key(text: str) -> str:
    return re.sub(r"\W", "", text).casefold()


_JSON_WRAPPERS = re.compile(r"^\s*(?:<!\[CDATA\[|<!--)|(?:\]\]>|-->)\s*$")


def _json_ld_items(tree: lxml.html.HtmlElement) -> Iterator[dict[str, Any]]:
    for script in tree.iterfind(".//script[@type]"):
        if "ld+json" not in script.get("type", "").lower():
            continue
        raw = _JSON_WRAPPERS.sub("", script.text or "").strip()
        if not raw or len(raw) > 1_000_000:
            continue
        try:
            data = json.loads(raw)
        except ValueError:
            try:
                data = json.loads(re.sub(r"[\x00-\x1f]", " ", raw))
            except ValueError:
                continue
        yield from _walk(data, 0)


def _walk(data: Any, depth: int) -> Iterator[dict[str, Any]]:
    if depth > 4:
        return
    if isinstance(data, list):
        for item in data[:50]:
            yield from _walk(item, depth + 1)
    elif isinstance(data, dict):
        if "@type" in data:
            yield data
        for key in ("@graph", "mainEntity", "mainEntityOfPage"):
            if isinstance(data.get(key), (list, dict)):
                yield from _walk(data[key], depth + 1)


def _first_text(value: Any) -> str:
    if isinstance(value, list):
        value = value[0] if value else ""
    if isinstance(value, dict):
        value = value.get("name") or value.get("@value") or ""
    return value.strip() if isinstance(value, str) else ""


def _person(value: Any) -> str:
    values = value if isinstance(value, list) else [value]
    names = [_clean(_first_text(v)) for v in values[:5]]
    return ", ".join(n for n in names if n and not n.startswith(("http://", "https://")))


def _language_tag(value: str) -> str:
    value = value.strip().replace("_", "-").lower()
    return value if re.fullmatch(r"[a-z]{2,3}(?:-[a-z0-9]{2,8})*", value) else ""


_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HAN = re.compile(r"[\u4e00-\u9fff]")


def _script_language(text: str) -> str:
    """A guess from the script alone, for pages that do not say: ko, ja, zh or ''."""
    letters = sum(1 for c in text if c.isalpha()) or 1
    if len(_HANGUL.findall(text)) > letters * 0.3:
        return "ko"
    if len(_KANA.findall(text)) > letters * 0.1:
        return "ja"
    if len(_HAN.findall(text)) > letters * 0.3:
        return "zh"
    return ""


# --- selectors --------------------------------------------------------------------------------


def is_xpath(expression: str) -> bool:
    """Whether a selector expression is XPath (starts with `/` or `(`) rather than CSS."""
    return expression.lstrip().startswith(("/", "("))


def select(selector: Selector, expression: str) -> Any:
    """Apply a CSS or XPath expression with parsel."""
    return selector.xpath(expression) if is_xpath(expression) else selector.css(expression)


def _selected(tree: lxml.html.HtmlElement, selectors: Mapping[str, str | None]) -> dict[str, str]:
    """Title, date and body where the source's selectors point (only those that are set)."""
    expressions = {k: selectors.get(k) for k in ("title", "date", "body") if selectors.get(k)}
    if not expressions:
        return {}
    root = Selector(root=tree, type="html")
    found: dict[str, str] = {}
    for field, expression in expressions.items():
        nodes = select(root, expression or "")
        if field == "body":
            value = _clean_text("\n".join(_node_text(node, blocks=True) for node in nodes[:50]))
        elif field == "date":
            value = next((v for v in (_date_value(node) for node in nodes[:3]) if v), "")
        else:
            value = _clean(_node_text(nodes[0])) if nodes else ""
        if value:
            found[field] = value
    return found


def _date_value(node: Selector) -> str:
    root = node.root
    if isinstance(root, str):
        return root.strip()
    return (root.get("datetime") or root.get("content") or _node_text(node)).strip()


_SKIPPED = frozenset({"script", "style", "noscript", "template"})
_BLOCKS = frozenset({
    "p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "tr", "section", "article", "figcaption",
})


def _node_text(node: Selector, blocks: bool = False) -> str:
    """The text of a selected node (a new line before each block element when `blocks`)."""
    root = node.root
    if isinstance(root, str):
        return root
    parts: list[str] = []
    for element in root.iter():
        tag = element.tag.lower() if isinstance(element.tag, str) else ""
        if blocks and tag in _BLOCKS:
            parts.append("\n")
        if tag and tag not in _SKIPPED and element.text:
            parts.append(element.text)
        if element is not root and element.tail:
            parts.append(element.tail)
    return "".join(parts)


_TAG = re.compile(r"<[^<>]{0,2000}>")


def _strip_tags(text: str) -> str:
    return html.unescape(_TAG.sub("\n", text)) if "<" in text or "&" in text else text


def _clean(text: str) -> str:
    return " ".join(text.split())


def _clean_text(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


# --- stories -----------------------------------------------------------------------------------


def article_story(
    article: Article, *, source: str, url: str, now: datetime, title: str = "", published: datetime | None = None,
    modified: datetime | None = None, guid: str = "",
) -> Story | None:
    """The story for an extracted page fetched at `url`; `title` and `published` (from a
    sitemap or feed) win over the page's own, and `modified` (a sitemap's lastmod) is used
    when the page has no date. None when there is neither title nor text."""
    link = canonical_url(url)
    heading = _clean(title) or article.title
    if not heading and not article.text:
        return None
    when = next((d for d in (settle_date(m, now) for m in (published, article.published, modified)) if d), None)
    return Story(
        id=story_id(source, link, guid or link), source=source, url=link, title=heading or article.text[:120],
        text=article.text or article.description, published=when or now, guid=guid or link,
        language=article.language, author=article.author, dated=when is not None,
    )
