"""Alert text: how a matched story reads in Telegram and on the console.

This module owns the wording and layout of every alert, notice and broadcast report,
and does no I/O. A notice (an admin notice, a broadcast) is plain text: escaped, never
markup, cut to fit one message. It renders
Telegram HTML (``parse_mode="HTML"``) for single alerts and digests, a plain-text
fallback for when Telegram rejects the markup, and a plain block for the console.

Rules it keeps:
  * Everything that comes from a source (title, outlet names, terms, summary) is
    escaped, and cleaned of control and bidi-override characters first.
  * A story's URL becomes a link only if it is an absolute http(s) URL.
  * Topics appear as hashtags (``#north_korea 7.2``) so a chat can be searched by topic;
    names are made hashtag-safe ('-' and other separators become '_').
  * Lengths are counted as Telegram counts them: UTF-16 code units of the visible text
    (an emoji counts 2), never the markup. Every message fits its ``limit``: the
    summary gives way first, then the matched terms, the other outlets, the topics and
    the source line, and only then is the title cut.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from urllib.parse import urlsplit

from newswatch.crawler.story import EARLIEST_DATE

__all__ = [
    "TELEGRAM_CAPTION_LIMIT",
    "TELEGRAM_TEXT_LIMIT",
    "AlertView",
    "escape",
    "fit",
    "hashtag",
    "plural",
    "render_alert",
    "render_alert_plain",
    "render_console",
    "render_digest",
    "render_notice",
    "broadcast_report",
    "safe_url",
    "stamp",
    "utf16_len",
    "visible_length",
]

TELEGRAM_TEXT_LIMIT = 4096
TELEGRAM_CAPTION_LIMIT = 1024
ELLIPSIS = "…"
DATE_UNKNOWN = "date unknown"

SUMMARY_CHARS = 300
TITLE_CHARS = 400
DIGEST_TITLE_CHARS = 200
DIGEST_HEADER_CHARS = 100
TERMS_SHOWN = 8
OUTLETS_SHOWN = 3
MIN_SUMMARY_UNITS = 40
HASHTAG_CHARS = 64


@dataclass(frozen=True)
class AlertView:
    """What one alert message shows about a story."""

    title: str
    url: str
    source: str
    published: datetime
    topics: tuple[tuple[str, float], ...]
    terms: tuple[str, ...] = ()
    summary: str = ""
    also_reported_by: tuple[str, ...] = ()
    outbox_id: int | None = None  # the outbox row it is sent for: its vote buttons name it

    def __post_init__(self) -> None:
        if self.published.tzinfo is None or self.published.utcoffset() is None:
            raise ValueError("AlertView.published must be timezone-aware")
        object.__setattr__(self, "topics", tuple((str(t), float(s)) for t, s in self.topics))
        object.__setattr__(self, "terms", tuple(self.terms))
        object.__setattr__(self, "also_reported_by", tuple(self.also_reported_by))


# --------------------------------------------------------------------------- text primitives


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's limits."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 story`, `2 stories`, `0 alerts`, `1,204 failed fetches`: a count with its noun in
    the form the count takes (the last word of `noun` is made plural by the English rules for
    regular nouns, or `many` is the plural form)."""
    if count == 1:
        return f"{count:,} {noun}"
    if many is None:
        if noun[-1:] == "y" and noun[-2:-1] not in ("a", "e", "i", "o", "u"):
            many = noun[:-1] + "ies"
        elif noun.endswith(("s", "x", "z", "ch", "sh")):
            many = noun + "es"
        else:
            many = noun + "s"
    return f"{count:,} {many}"


def escape(text: str, *, quote: bool = False) -> str:
    """Escape ``&``, ``<`` and ``>`` for Telegram HTML (``html.escape(quote=False)``).

    With ``quote=True`` double quotes become ``&quot;`` too, which makes the result safe
    inside a double-quoted attribute such as ``href``.
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if quote:
        text = text.replace('"', "&quot;")
    return text


_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _clean(text: str) -> str:
    """One line of displayable text: no controls, no lone surrogates, single spaces."""
    kept = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch in _BIDI_CONTROLS or category == "Cs":
            continue
        if category == "Cc":
            kept.append(" ")
            continue
        kept.append(ch)
    return " ".join("".join(kept).split())


def safe_url(url: str) -> str | None:
    """``url`` if it is an absolute http(s) URL fit for a link, else None."""
    url = url.strip()
    if not url or any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cs") for ch in url):
        return None
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host or port == 0:
        return None
    return url


def hashtag(topic: str) -> str:
    """``#name`` for a topic, made of characters Telegram keeps inside a hashtag."""
    chars = []
    for ch in _clean(topic):
        category = unicodedata.category(ch)
        chars.append(ch if ch == "_" or category[0] == "L" or category == "Nd" else "_")
    name = re.sub(r"_+", "_", "".join(chars)).strip("_")
    if not any(unicodedata.category(ch)[0] == "L" for ch in name):
        name = f"topic_{name}" if name else "topic"
    return "#" + name[:HASHTAG_CHARS]


def _joins_previous(ch: str) -> bool:
    """True for characters that belong to the cluster before them (marks, ZWJ, modifiers)."""
    code = ord(ch)
    return (unicodedata.category(ch) in ("Mn", "Mc", "Me") or code == 0x200D
            or 0xFE00 <= code <= 0xFE0F or 0x1F3FB <= code <= 0x1F3FF
            or 0xE0020 <= code <= 0xE007F)


def _is_regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _cut(text: str, units: int) -> str:
    """The longest prefix within ``units`` UTF-16 units that splits no emoji or mark."""
    used = 0
    end = 0
    for ch in text:
        size = 2 if ord(ch) > 0xFFFF else 1
        if used + size > units:
            break
        used += size
        end += 1
    if end >= len(text):
        return text
    while end > 0 and (_joins_previous(text[end]) or text[end - 1] == "\u200d"):
        end -= 1
    regional = 0
    while end - regional > 0 and _is_regional(text[end - regional - 1]):
        regional += 1
    if regional % 2 and end < len(text) and _is_regional(text[end]):
        end -= 1
    return text[:end]


def _shorten(text: str, units: int, *, word_boundary: bool = True) -> str:
    """``text`` within ``units`` UTF-16 units, cut at a word if one is near, ending in "…"."""
    if utf16_len(text) <= units:
        return text
    if units <= 0:
        return ""
    head = _cut(text, units - 1)
    if word_boundary:
        space = head.rfind(" ")
        if space >= len(head) * 0.6:
            head = head[:space]
    head = head.rstrip(" ,;:·-–—")
    return head + ELLIPSIS


def stamp(moment: datetime, tz: tzinfo, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """`2019-02-27 14:00 KST`: the moment in `tz`, or in UTC when `tz` cannot show it (a year-1
    date in a zone behind UTC is out of datetime's range), or "date unknown" for a moment before
    1970 (a database of an earlier release may hold one) or one no zone can show."""
    try:
        if moment < EARLIEST_DATE:
            return DATE_UNKNOWN
        try:
            local = moment.astimezone(tz)
        except (OverflowError, ValueError, OSError):
            local = moment.astimezone(UTC)
        name = local.tzname() or local.strftime("UTC%z")
        return f"{local.strftime(fmt)} {name}"
    except (OverflowError, ValueError, OSError):
        return DATE_UNKNOWN



# --------------------------------------------------------------------------- markup measuring and trimming

_TOKENS = re.compile(
    r"(?P<tag><[^<>]*>)"
    r"|(?P<entity>&(?:#[0-9]{1,7}|#x[0-9a-fA-F]{1,6}|lt|gt|amp|quot);?)"
    r"|(?P<text>[^<&]+|[<&])",
)


def _entity_units(entity: str) -> int:
    body = entity[1:].rstrip(";")
    if body.startswith("#x"):
        code = int(body[2:], 16)
    elif body.startswith("#"):
        code = int(body[1:])
    else:
        return 1
    return 2 if code > 0xFFFF else 1


def visible_length(html: str) -> int:
    """UTF-16 length of what Telegram shows for ``html`` (tags removed, entities decoded)."""
    total = 0
    for match in _TOKENS.finditer(html):
        if match.lastgroup == "entity":
            total += _entity_units(match.group())
        elif match.lastgroup == "text":
            total += utf16_len(match.group())
    return total


def fit(html: str, limit: int) -> str:
    """``html`` trimmed to ``limit`` visible UTF-16 units, still valid Telegram HTML.

    Never cuts inside a tag, an entity, an emoji or a combining sequence; closes the
    tags left open; a trimmed result ends with "…". Text within the limit is returned
    unchanged.
    """
    if visible_length(html) <= limit:
        return html
    if limit <= 0:
        return ""
    budget = limit - 1
    used = 0
    out: list[tuple[str, str]] = []
    stack: list[str] = []
    for match in _TOKENS.finditer(html):
        kind, token = match.lastgroup, match.group()
        if kind == "tag":
            if token.startswith("</"):
                if stack:
                    stack.pop()
                out.append(("end", token))
            else:
                name = token[1:-1].split(None, 1)[0].lower() if token[1:-1].strip() else ""
                stack.append(name)
                out.append(("start", token))
            continue
        size = _entity_units(token) if kind == "entity" else utf16_len(token)
        if used + size <= budget:
            out.append(("text", token))
            used += size
            continue
        if kind == "text":
            part = _cut(token, budget - used)
            if part:
                out.append(("text", part))
        break
    while out:
        kind, token = out[-1]
        if kind == "start":
            out.pop()
            stack.pop()
        elif kind == "text" and not token.rstrip():
            out.pop()
        elif kind == "text" and token != token.rstrip():
            out[-1] = ("text", token.rstrip())
        else:
            break
    closing = "".join(f"</{name}>" for name in reversed(stack))
    return "".join(token for _, token in out) + closing + ELLIPSIS


# --------------------------------------------------------------------------- alert layout


@dataclass
class _Line:
    kind: str
    text: str
    open: str = ""
    close: str = ""
    gap: bool = False


def _outlets(names: Sequence[str]) -> str:
    cleaned = [n for n in (_clean(name) for name in names) if n]
    if not cleaned:
        return ""
    shown = ", ".join(cleaned[:OUTLETS_SHOWN])
    rest = len(cleaned) - OUTLETS_SHOWN
    return f"also reported by {shown}" + (f" (+{rest})" if rest > 0 else "")


def _topics(view: AlertView) -> str:
    ranked = sorted(view.topics, key=lambda item: -item[1])
    return " · ".join(f"{hashtag(name)} {score:.1f}" for name, score in ranked)


def _terms(view: AlertView) -> str:
    terms = [t for t in (_clean(term) for term in view.terms) if t]
    if not terms:
        return ""
    shown = ", ".join(terms[:TERMS_SHOWN])
    rest = len(terms) - TERMS_SHOWN
    return f"matched: {shown}" + (f" (+{rest})" if rest > 0 else "")


def _alert_lines(view: AlertView, tz: tzinfo, *, html: bool) -> list[_Line]:
    title = _shorten(_clean(view.title), TITLE_CHARS) or "(untitled)"
    url = safe_url(view.url)
    lines = []
    if html:
        if url:
            lines.append(_Line("title", title, f'<b><a href="{escape(url, quote=True)}">', "</a></b>"))
        else:
            lines.append(_Line("title", title, "<b>", "</b>"))
    else:
        lines.append(_Line("title", title))
        if url:
            lines.append(_Line("url", url))
    source = _clean(view.source)
    when = stamp(view.published, tz)
    lines.append(_Line("source", f"{source} · {when}" if source else when))
    optional = [
        _Line("topics", _topics(view)),
        _Line("terms", _terms(view), "<i>" if html else "", "</i>" if html else ""),
        _Line("summary", _shorten(_clean(view.summary), SUMMARY_CHARS), gap=True),
        _Line("also", _outlets(view.also_reported_by), gap=True),
    ]
    lines += [line for line in optional if line.text]
    return lines


def _assemble(lines: list[_Line], *, html: bool) -> str:
    parts = []
    for index, line in enumerate(lines):
        if index:
            parts.append("\n\n" if line.gap else "\n")
        body = escape(line.text) if html else line.text
        parts.append(f"{line.open}{body}{line.close}")
    return "".join(parts)


def _lines_length(lines: list[_Line]) -> int:
    total = sum(utf16_len(line.text) for line in lines)
    return total + sum((2 if line.gap else 1) for line in lines[1:])


_GIVE_WAY = ("terms", "also", "topics", "source")


def _fit_lines(lines: list[_Line], limit: int) -> list[_Line]:
    """Drop or shorten lines, least important first, until they fit ``limit``."""
    lines = list(lines)
    if _lines_length(lines) <= limit:
        return lines
    summary = next((line for line in lines if line.kind == "summary"), None)
    if summary is not None:
        others = _lines_length([line for line in lines if line is not summary])
        budget = limit - others - 2
        if budget >= MIN_SUMMARY_UNITS:
            summary.text = _shorten(summary.text, budget)
            return lines
        lines.remove(summary)
    for kind in _GIVE_WAY:
        if _lines_length(lines) <= limit:
            return lines
        lines = [line for line in lines if line.kind != kind]
    title = lines[0]
    over = _lines_length(lines) - limit
    if over > 0:
        title.text = _shorten(title.text, utf16_len(title.text) - over)
    return lines


def render_alert(view: AlertView, *, tz: tzinfo = UTC, limit: int = TELEGRAM_TEXT_LIMIT) -> str:
    """One alert as Telegram HTML, at most ``limit`` visible UTF-16 units."""
    lines = _fit_lines(_alert_lines(view, tz, html=True), limit)
    return fit(_assemble(lines, html=True), limit)


def render_alert_plain(view: AlertView, *, tz: tzinfo = UTC, limit: int = TELEGRAM_TEXT_LIMIT) -> str:
    """The same alert without markup, for sending with no parse_mode."""
    lines = _fit_lines(_alert_lines(view, tz, html=False), limit)
    return _shorten(_assemble(lines, html=False), limit, word_boundary=False)


def render_console(view: AlertView, *, tz: tzinfo = UTC) -> str:
    """One alert as a plain block for a terminal (no control characters survive)."""
    head = f"[{stamp(view.published, tz)}]"
    source = _clean(view.source)
    lines = [f"{head} {source}".rstrip(), f"  {_clean(view.title) or '(untitled)'}"]
    url = safe_url(view.url)
    if url:
        lines.append(f"  {url}")
    tags = " · ".join(filter(None, [_topics(view), _terms(view)]))
    if tags:
        lines.append(f"  {tags}")
    summary = _shorten(_clean(view.summary), SUMMARY_CHARS)
    if summary:
        lines.append(f"  {summary}")
    outlets = _outlets(view.also_reported_by)
    if outlets:
        lines.append(f"  {outlets}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- digest


def _digest_item(number: int, view: AlertView, tz: tzinfo, limit: int) -> tuple[str, int]:
    """(html, visible length) of one numbered digest entry, fitted into ``limit``."""
    title = _shorten(_clean(view.title), DIGEST_TITLE_CHARS) or "(untitled)"
    url = safe_url(view.url)
    meta = " · ".join(filter(None, [
        _clean(view.source),
        stamp(view.published, tz, "%m-%d %H:%M"),
        " · ".join(f"{hashtag(name)} {score:.1f}"
                   for name, score in sorted(view.topics, key=lambda item: -item[1])[:2]),
    ]))
    prefix = f"{number}. "
    fixed = utf16_len(prefix) + 1 + utf16_len(meta)
    if fixed + utf16_len(title) > limit:
        title = _shorten(title, max(limit - fixed, 8))
    link = (f'<a href="{escape(url, quote=True)}">{escape(title)}</a>' if url else escape(title))
    html = f"{prefix}{link}\n{escape(meta)}"
    html = fit(html, limit)
    return html, visible_length(html)


def render_digest(views: Sequence[AlertView], *, title: str, tz: tzinfo = UTC,
                  limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """Several stories as one or more Telegram HTML messages, each within ``limit``.

    Each message starts with the bold ``title`` (numbered "(2/3)" when split); stories
    are numbered across messages and never split between two messages.
    """
    if not views:
        return []
    heading = _shorten(_clean(title), DIGEST_HEADER_CHARS) or "Digest"
    counter_room = utf16_len(f" ({len(views)}/{len(views)})")
    header_units = utf16_len(heading) + counter_room + 2
    room = max(limit - header_units, 1)

    pages: list[list[str]] = [[]]
    page_units = 0
    for number, view in enumerate(views, start=1):
        item, units = _digest_item(number, view, tz, room)
        needed = units + (2 if pages[-1] else 0)
        if pages[-1] and page_units + needed > room:
            pages.append([])
            page_units = 0
            needed = units
        pages[-1].append(item)
        page_units += needed

    messages = []
    for index, items in enumerate(pages, start=1):
        counter = f" ({index}/{len(pages)})" if len(pages) > 1 else ""
        text = f"<b>{escape(heading)}</b>{counter}\n\n" + "\n\n".join(items)
        messages.append(fit(text, limit))
    return messages


def render_notice(text: str, *, limit: int = TELEGRAM_TEXT_LIMIT) -> str:
    """A notice or broadcast as Telegram HTML: the text as written, escaped, within ``limit``."""
    return fit(escape(text), limit)


def broadcast_report(counts: dict[str, int], problems: Sequence[str], *, shown: int = 5) -> str:
    """What the admin who sent a broadcast is told once every copy has an outcome:
    ``counts`` maps outbox states (sent, dropped, failed) to copies, ``problems`` says why
    the copies not sent were not."""
    total = sum(counts.values())
    report = f"Broadcast delivered to {counts.get('sent', 0)} of {plural(total, 'chat')}."
    if problems:
        report += f" {len(problems)} failed: " + "; ".join(problems[:shown]) + (" …" if len(problems) > shown else "")
    return report
