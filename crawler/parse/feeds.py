"""Feed parsing: the bytes of a fetched feed in, `Story` objects out.

This module owns the pure parsing stage between fetching and storing; it does no I/O.
`parse_feed` works in five steps:

1. cap the body at `max_bytes` (a truncated feed is closed after its last complete item);
2. decode it with `newswatch.crawler.parse.charset` (feed rules): a BOM wins; then the HTTP
   charset and the XML declaration, except that valid UTF-8 beats a single-byte label; a body
   that fits no label (a feed declared UTF-8 but written in EUC-KR, say) is detected;
3. neutralise what can hurt the XML parsers: DOCTYPE internal subsets and ENTITY declarations
   are removed (short plain-text entities are expanded within a budget, so an entity bomb
   cannot grow), XML-illegal characters and references to them are dropped, HTML entity
   references and bare ampersands are repaired, and the document is handed on as UTF-8;
4. parse RSS, Atom and RDF with feedparser, and JSON Feed (1.0, 1.1) with `json`;
5. build stories: plain-text titles and text, canonical URLs, UTC dates
   (`newswatch.crawler.parse.dates.feed_date`: zone abbreviations feedparser reads as UTC, and
   times without a zone, are read there by the feed's language).

`parse_feed` never raises: whatever was wrong with the document is described in
`ParsedFeed.problem` ("" when nothing was), and whatever could be recovered is returned.
"""

from __future__ import annotations

import html
import html.entities
import io
import json
import re
import xml.sax
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple
from urllib.parse import urljoin

import feedparser

from newswatch.crawler.parse.charset import FEED, decode, xml_labels
from newswatch.crawler.parse.dates import as_utc, feed_date
from newswatch.crawler.story import Story, settle_date, story_id
from newswatch.crawler.urls import canonical_url

MAX_BYTES = 10 * 1024 * 1024
ENTITY_VALUE_LIMIT = 256
ENTITY_EXPANSION_LIMIT = 64 * 1024

UTC = timezone.utc


@dataclass(frozen=True)
class ParsedFeed:
    """The outcome of parsing one fetched feed document.

    `stories` are in feed order; `title` is the feed's own title; `ttl_seconds` is the polling
    interval the feed asks for (<ttl>, else sy:updatePeriod/updateFrequency), if any;
    `problem` is "" when the document was sound, else a short description of each thing that
    was wrong with it ("; "-separated), "not a feed: ..." first when it is not a feed at all.
    """

    stories: list[Story]
    title: str
    ttl_seconds: int | None
    problem: str


def parse_feed(
    body: bytes,
    *,
    source: str,
    url: str,
    content_type: str = "",
    now: datetime | None = None,
    max_bytes: int = MAX_BYTES,
) -> ParsedFeed:
    """Parse a fetched feed into stories; never raises.

    `url` is where the feed was fetched from (the base of relative links), `content_type` the
    HTTP Content-Type (its charset is a decoding hint), `now` the time that stands in for a
    missing date and caps future ones (default: the current time). Bodies longer than
    `max_bytes` are truncated.
    """
    try:
        moment = datetime.now(UTC) if now is None else as_utc(now) or datetime.now(UTC)
        return _parse(bytes(body), source, url, content_type, moment, max_bytes)
    except Exception as exc:  # the last line of defence: one bad document never stops a cycle
        return ParsedFeed([], "", None, f"internal error: {type(exc).__name__}: {exc}"[:300])


class _Item(NamedTuple):
    """One entry as read from either syntax, before cleaning."""

    title: str
    link: str
    guid: str
    texts: tuple[str, ...]
    dates: tuple[tuple[str, Any], ...]
    language: str
    author: str


class _Feed(NamedTuple):
    title: str
    language: str
    ttl_seconds: int | None
    items: list[_Item]
    base_url: str
    notes: list[str]


def _parse(
    body: bytes, source: str, url: str, content_type: str, now: datetime, max_bytes: int
) -> ParsedFeed:
    """`parse_feed` without its safety net."""
    notes: list[str] = []
    truncated = len(body) > max_bytes
    if truncated:
        body = body[:max_bytes]
        notes.append(f"body truncated to {max_bytes} bytes")
    if not body.strip():
        return ParsedFeed([], "", None, "; ".join(["empty body", *notes]))
    for signature, kind in _BINARY_SIGNATURES:
        if body.startswith(signature):
            return ParsedFeed([], "", None, "; ".join([f"not a feed: {kind}", *notes]))
    decoded = decode(body, xml_labels(body, content_type), FEED, final=not truncated)
    text = decoded.text
    notes += decoded.notes
    if text.lstrip("\ufeff \t\r\n")[:1] in ("{", "["):
        feed = _read_json_feed(text, url)
    else:
        feed = _read_xml_feed(text, url, truncated=truncated)
    notes = sorted(notes + feed.notes, key=lambda note: not note.startswith("not a feed"))
    stories: list[Story] = []
    failed = 0
    for item in feed.items:
        try:
            story = _story(item, source, feed.base_url, feed.language, now)
        except Exception:
            failed += 1
            continue
        if story is not None:
            stories.append(story)
    if failed:
        notes.append(f"entries that could not be read: {failed}")
    return ParsedFeed(stories, _inline_text(feed.title), feed.ttl_seconds, "; ".join(notes))


# --- decoding -------------------------------------------------------------------------

_BINARY_SIGNATURES = (
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"%PDF-", "PDF document"),
    (b"\x89PNG", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF8", "GIF image"),
)
# --- neutralising the document ----------------------------------------------------------

_ILLEGAL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_PROLOG_ITEM = re.compile(
    r"""\s+
      | <\?.*?\?>
      | <!--.*?-->
      | <!(?:[^\[\]>"']++|"[^"]*+"|'[^']*+'
            |\[(?:<!--.*?-->|[^\]"'<]++|<|"[^"]*+"|'[^']*+')*+\])*+>""",
    re.S | re.X,
)
_XML_DECLARATION = re.compile(r"<\?xml\b[^>]*>")
_ELEMENT_START = re.compile(r"<([A-Za-z_][\w.:-]*)")
_ENTITY_NAME = re.compile(r"<!ENTITY\s+([A-Za-z_:][\w.:-]*)")
_ENTITY_VALUE = re.compile(r"""<!ENTITY\s+([A-Za-z_:][\w.:-]*)\s+(?:"([^"]*)"|'([^']*)')\s*>""")
_SAFE_ENTITY_VALUE = re.compile(r"(?:&#x0*[0-9a-fA-F]{1,6};|&#0*[0-9]{1,7};|[^&<%])*")
_CDATA_SECTION = re.compile(r"(<!\[CDATA\[.*?(?:\]\]>|\Z))", re.S)
_BARE_AMPERSAND = re.compile(r"&(?!#0*[0-9]{1,7};|#[xX]0*[0-9a-fA-F]{1,6};|[A-Za-z_:][\w.:-]*;)")
_NAMED_REFERENCE = re.compile(r"&(?!(?:amp|lt|gt|quot|apos);)([A-Za-z_:][\w.:-]*);")
# References to characters XML 1.0 forbids: C0 controls but tab, LF and CR; surrogates;
# U+FFFE and U+FFFF; anything past U+10FFFF.
_ILLEGAL_REFERENCE = re.compile(
    r"""&\#(?:0*(?:[0-8]|1[124-9]|2[0-9]|3[01]
                |5529[6-9]|55[3-9][0-9]{2}|56[0-9]{3}|57[0-2][0-9]{2}|573[0-3][0-9]|5734[0-3]
                |6553[45]
                |111411[2-9]|11141[2-9][0-9]|1114[2-9][0-9]{2}|111[5-9][0-9]{3}|11[2-9][0-9]{4}
                |1[2-9][0-9]{5}|[2-9][0-9]{6})
            |[xX]0*(?:[0-8bBcCeEfF]|1[0-9a-fA-F]|[dD][89a-fA-F][0-9a-fA-F]{2}|[fF]{3}[eEfF]
                |1[1-9a-fA-F][0-9a-fA-F]{4}|[2-9a-fA-F][0-9a-fA-F]{5}));""",
    re.X,
)
_PREDEFINED_ENTITIES = frozenset({"amp", "lt", "gt", "quot", "apos"})
_UTF8_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>'


class _Prolog(NamedTuple):
    end: int
    root: str
    declarations: list[tuple[int, int]]
    xml_declaration: tuple[int, int] | None
    unterminated: bool


def _scan_prolog(text: str) -> _Prolog:
    """Find what precedes the root element: XML declaration, comments, PIs, declarations."""
    pos = 1 if text.startswith("\ufeff") else 0
    declarations: list[tuple[int, int]] = []
    xml_declaration = None
    while pos < len(text):
        match = _PROLOG_ITEM.match(text, pos)
        if match is None:
            break
        token = match.group()
        if token.startswith("<?xml") and not declarations and _XML_DECLARATION.match(token):
            xml_declaration = xml_declaration or match.span()
        elif token.startswith("<!") and not token.startswith("<!--"):
            declarations.append(match.span())
        pos = match.end()
    unterminated = text.startswith("<!", pos) and not text.startswith("<!--", pos)
    root = _ELEMENT_START.search(text, pos)
    return _Prolog(
        end=root.start() if root else len(text),
        root=root.group(1) if root else "",
        declarations=declarations,
        xml_declaration=xml_declaration,
        unterminated=unterminated,
    )


def _neutralise(text: str, prolog: _Prolog) -> tuple[str, list[str]]:
    """Make the document safe and well-formed where that is unambiguous.

    The prolog gets a UTF-8 declaration and loses any internal DTD subset and entity
    declaration (line numbers are kept). In the body, outside CDATA sections: references to
    declared entities are expanded when short and plain, within a budget, and dropped
    otherwise; HTML entity references become character references; references to characters
    XML forbids are dropped, as are such characters themselves; a bare "&" becomes "&amp;".
    """
    notes: list[str] = []
    pieces = [_UTF8_DECLARATION]
    pos = 1 if text.startswith("\ufeff") else 0
    if prolog.xml_declaration:
        start, end = prolog.xml_declaration
        pieces.append("\n" * text.count("\n", pos, end))
        pos = end
    entities: dict[str, str | None] = {}
    subset_removed = False
    for start, end in prolog.declarations:
        declaration = text[start:end]
        is_doctype = declaration[2:9].upper() == "DOCTYPE"
        if is_doctype and "[" not in declaration:
            continue
        subset_removed = subset_removed or is_doctype
        pieces += [text[pos:start], "\n" * declaration.count("\n")]
        pos = end
        entities.update((name, None) for name in _ENTITY_NAME.findall(declaration))
        for name, double, single in _ENTITY_VALUE.findall(declaration):
            value = double or single
            if len(value) <= ENTITY_VALUE_LIMIT and _SAFE_ENTITY_VALUE.fullmatch(value):
                entities[name] = value.replace('"', "&quot;").replace("'", "&apos;")
    pieces.append(text[pos : prolog.end])
    for name in _PREDEFINED_ENTITIES:
        entities.pop(name, None)
    body, illegal = _ILLEGAL_CHARACTERS.subn("", text[prolog.end :])
    expand = _EntityExpansion(entities)
    body, removed = _repair_references(body, expand)
    pieces.append(body)
    illegal += removed
    if entities:
        dropped = f" (references dropped: {expand.dropped})" if expand.dropped else ""
        notes.append(f"entity declarations removed{dropped}")
    elif subset_removed:
        notes.append("DOCTYPE internal subset removed")
    if illegal:
        notes.append(f"{illegal} XML-illegal characters removed")
    return "".join(pieces), notes


def _repair_references(body: str, expand: _EntityExpansion) -> tuple[str, int]:
    """Repair references outside CDATA sections; also says how many illegal ones it dropped."""
    parts = _CDATA_SECTION.split(body) if "<![CDATA[" in body else [body]
    illegal = 0
    for index in range(0, len(parts), 2):
        part = _BARE_AMPERSAND.sub("&amp;", parts[index])
        if "&#" in part:
            part, removed = _ILLEGAL_REFERENCE.subn("", part.replace("&#X", "&#x"))
            illegal += removed
        parts[index] = _NAMED_REFERENCE.sub(expand, part)
    return "".join(parts), illegal


class _EntityExpansion:
    """The replacement for a named reference: declared entities within a budget, HTML ones."""

    def __init__(self, entities: dict[str, str | None]) -> None:
        self.entities = entities
        self.budget = ENTITY_EXPANSION_LIMIT
        self.dropped = 0

    def __call__(self, match: re.Match[str]) -> str:
        name = match.group(1)
        if name in self.entities:
            value = self.entities[name]
            if value is None or len(value) > self.budget:
                self.dropped += 1
                return ""
            self.budget -= len(value)
            return value
        if name in html.entities.name2codepoint:
            return f"&#{html.entities.name2codepoint[name]};"
        characters = html.entities.html5.get(f"{name};")
        if characters:
            return "".join(f"&#{ord(character)};" for character in characters)
        return f"&amp;{name};"


# --- reading the two syntaxes -------------------------------------------------------------

_SY_PERIODS = {
    "hourly": 3600,
    "daily": 86400,
    "weekly": 604800,
    "monthly": 2592000,
    "yearly": 31536000,
}
_FEEDPARSER_HEAD = re.compile(r"<\w")


def _read_xml_feed(text: str, url: str, *, truncated: bool) -> _Feed:
    prolog = _scan_prolog(text)
    if prolog.unterminated:
        return _not_a_feed("unterminated declaration before the root element", url)
    if not prolog.root:
        return _not_a_feed("no XML root element", url)
    if prolog.root.lower() in ("html", "head", "body"):
        return _not_a_feed("HTML page", url)
    text, notes = _neutralise(text, prolog)
    if truncated:
        text = _close_truncated(text, prolog.root)
    head = _FEEDPARSER_HEAD.search(text)
    if "<!ENTITY" in text[: head.start() if head else len(text)]:
        return _not_a_feed("ENTITY declaration text before the root element", url)
    # Stories carry plain text and links are resolved here, so feedparser's HTML sanitiser
    # and URI resolution (a third of its time) are not needed.
    result = feedparser.parse(
        io.BytesIO(text.encode("utf-8")),
        response_headers={"content-type": "application/xml; charset=utf-8"},
        resolve_relative_uris=False,
        sanitize_html=False,
    )
    entries = _field(result, "entries") or []
    if not _field(result, "version") and not entries and not _field(result, "feed"):
        return _not_a_feed(f"unrecognised root element <{prolog.root}>", url)
    if _field(result, "bozo"):
        notes.append(_bozo_note(_field(result, "bozo_exception"), len(entries)))
    feed = _field(result, "feed") or {}
    language = _str(_field(feed, "language")) or _detail_language(feed, "title_detail")
    items = [_xml_item(entry) for entry in entries]
    return _Feed(_str(_field(feed, "title")), language, _ttl_seconds(feed), items, url, notes)


def _close_truncated(text: str, root: str) -> str:
    """End a truncated document after its last complete item, closing channel and root."""
    closing = {"rss": f"</channel></{root}>", "feed": f"</{root}>", "rdf:rdf": f"</{root}>"}
    end = max(text.rfind("</item>"), text.rfind("</entry>"))
    if root.lower() not in closing or end < 0:
        return text
    return text[: text.index(">", end) + 1] + closing[root.lower()]


def _xml_item(entry: Any) -> _Item:
    # feedparser's lenient parser leaves "&amp;" in ids (and double-escaped links exist).
    link = _unescape(_str(_field(entry, "link")))
    contents = tuple(_str(_field(part, "value")) for part in _field(entry, "content") or [])
    return _Item(
        title=_str(_field(entry, "title")),
        link=link,
        guid=_unescape(_str(_field(entry, "id"))),
        texts=(*contents, _str(_field(entry, "summary"))),
        dates=tuple(
            (_str(_field(entry, key)), _field(entry, f"{key}_parsed"))
            for key in ("published", "updated", "created")
        ),
        language=_str(_field(entry, "language"))
        or _detail_language(entry, "title_detail")
        or _detail_language(entry, "summary_detail"),
        author=_str(_field(entry, "author")),
    )


def _read_json_feed(text: str, url: str) -> _Feed:
    try:
        document = json.loads(text.lstrip("\ufeff"), strict=False)
    except (ValueError, RecursionError) as exc:
        return _not_a_feed(f"invalid JSON ({exc})"[:200], url)
    version = document.get("version") if isinstance(document, dict) else None
    if not isinstance(version, str) or not version.startswith("https://jsonfeed.org/version/"):
        return _not_a_feed("JSON document without a JSON Feed version", url)
    raw_items = document.get("items")
    if not isinstance(raw_items, list):
        raw_items = []
    items = [_json_item(item) for item in raw_items if isinstance(item, dict)]
    base = url or _str(document.get("feed_url")) or _str(document.get("home_page_url"))
    return _Feed(_str(document.get("title")), _str(document.get("language")), None, items, base, [])


def _json_item(item: dict[str, Any]) -> _Item:
    link = _str(item.get("url")) or _str(item.get("external_url"))
    identifier = item.get("id")
    authors = item.get("authors")
    author = authors[0] if isinstance(authors, list) and authors else item.get("author")
    return _Item(
        title=_str(item.get("title")),
        link=link,
        guid=str(identifier) if isinstance(identifier, (str, int, float)) else "",
        texts=tuple(_str(item.get(key)) for key in ("content_html", "content_text", "summary")),
        dates=tuple((_str(item.get(key)), None) for key in ("date_published", "date_modified")),
        language=_str(item.get("language")),
        author=_str(author.get("name")) if isinstance(author, dict) else "",
    )


def _not_a_feed(reason: str, url: str) -> _Feed:
    return _Feed("", "", None, [], url, [f"not a feed: {reason}"])


def _bozo_note(exc: Any, recovered: int) -> str:
    """Describe the error that sent feedparser to its lenient parser."""
    if isinstance(exc, xml.sax.SAXParseException):
        error = f"XML error at line {exc.getLineNumber()}: {exc.getMessage()}"
    else:
        error = f"{type(exc).__name__}: {exc}"[:200]
    return f"{error} (entries recovered: {recovered})"


def _ttl_seconds(feed: Any) -> int | None:
    """Seconds between polls the feed asks for: <ttl> minutes, else sy:updatePeriod/Frequency."""
    minutes = _positive_int(_field(feed, "ttl"))
    if minutes:
        return minutes * 60
    period = _SY_PERIODS.get(_str(_field(feed, "sy_updateperiod")).strip().lower())
    if period:
        return max(1, period // (_positive_int(_field(feed, "sy_updatefrequency")) or 1))
    return None


def _positive_int(value: Any) -> int | None:
    try:
        number = int(_str(value).strip())
    except ValueError:
        return None
    return number if number > 0 else None


def _detail_language(node: Any, key: str) -> str:
    detail = _field(node, key)
    return _str(_field(detail, "language"))


def _unescape(value: str) -> str:
    return html.unescape(value) if "&" in value else value


def _field(node: Any, key: str) -> Any:
    """A feedparser field as stored: no key aliases, no deprecated fallbacks, no warnings."""
    return dict.get(node, key) if isinstance(node, dict) else None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


# --- building stories -------------------------------------------------------------------


def _story(
    item: _Item, source: str, base_url: str, feed_language: str, now: datetime
) -> Story | None:
    """The story for one entry, or None when it has neither a title nor a link.

    Its id comes from the canonical URL, else from the GUID, else from the title.
    """
    title = _inline_text(item.title)
    link = item.link.strip()
    if not title and not link:
        return None
    absolute = _absolute(link, base_url) if link else ""
    url = canonical_url(absolute) if absolute else ""
    guid = item.guid.strip() or absolute
    language = (item.language or feed_language).strip().lower()
    texts = [_plain_text(text) for text in item.texts if text]
    published = _published(item.dates, language, now)
    return Story(
        id=story_id(source, url, guid or title),
        source=source,
        url=url,
        title=title,
        text=max(texts, key=len, default=""),
        published=published or now,
        guid=guid,
        language=language,
        author=_inline_text(item.author),
        dated=published is not None,
    )


def _absolute(link: str, base_url: str) -> str:
    if not base_url or link.startswith(("https://", "http://")):
        return link
    try:
        return urljoin(base_url, link)
    except ValueError:
        return link


_HIDDEN = re.compile(r"<!--.*?-->|<(script|style|noscript|template)\b.*?</\1\s*>", re.S | re.I)
_BLOCK_TAG = re.compile(
    r"</?(?:address|article|blockquote|br|dd|div|dl|dt|figcaption|figure|footer|h[1-6]|header"
    r"|hr|li|ol|p|pre|section|table|td|th|tr|ul)\b[^<>]*>",
    re.I,
)
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<!\[CDATA\[|\]\]>")


def _plain_text(markup: str) -> str:
    """Markup to plain text: tags dropped, entities unescaped, one line per block."""
    if "<" in markup:
        markup = _TAG.sub("", _BLOCK_TAG.sub("\n", _HIDDEN.sub("", markup)))
    text = _ILLEGAL_CHARACTERS.sub("", html.unescape(markup))
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _inline_text(markup: str) -> str:
    """Markup to one line of plain text, whitespace collapsed."""
    return " ".join(_plain_text(markup).split())


# --- dates ------------------------------------------------------------------------------


def _published(dates: tuple[tuple[str, Any], ...], language: str, now: datetime) -> datetime | None:
    """The first readable date of the entry in UTC (`settle_date`d), else None."""
    for raw, parsed in dates:
        moment = settle_date(feed_date(raw, parsed, language), now)
        if moment is not None:
            return moment
    return None
