"""Bytes to text: the one decoder of fetched documents, feeds and pages alike (pure, no I/O).

`decode` reads a document in this order:

1. a BOM wins (UTF-8, UTF-16, UTF-32); feeds also tell UTF-16/32 without a BOM by the zero
   bytes around their first "<";
2. the declared charsets (the HTTP Content-Type's, then the document's own: the XML
   declaration of a feed, `<meta charset>` of a page; `xml_labels`, `html_labels`), each
   tried strictly, a label standing for its most inclusive superset (EUC-KR is read as CP949,
   GB2312 as GB18030); valid UTF-8 beats a single-byte label, and UTF-16/32 labels without a
   BOM are ignored (they are almost always wrong);
3. valid UTF-8;
4. detection among common legacy encodings with charset-normalizer, decoded leniently.

Strict decoding with `final` False does not count a character cut at the very end (a body
capped at its size limit) as an error. Where feeds and pages have always been read
differently, `FEED` and `PAGE` say how (`DecodingRules`).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import charset_normalizer
from w3lib.encoding import html_body_declared_encoding, http_content_type_encoding


@dataclass(frozen=True)
class DecodingRules:
    """How one kind of document is read where feeds and pages differ."""

    sniff_wide: bool  # UTF-16/32 without a BOM is told by its zero bytes
    strict_bom: bool  # a BOM document is decoded strictly first (a cut last character dropped)
    mostly_utf8: bool  # a body that is mostly valid UTF-8 is read as UTF-8 before any detection
    sample: int  # bytes handed to detection
    cut_sample_at_tag: bool  # the sample ends before a "<", never inside a multi-byte character
    legacy: tuple[str, ...]  # the encodings detection chooses among
    labels_in_detection: bool  # the declared labels are candidates too, the first one the fallback
    fallback: str  # when detection finds nothing


FEED = DecodingRules(
    sniff_wide=True, strict_bom=True, mostly_utf8=True, sample=256 * 1024, cut_sample_at_tag=True,
    legacy=("cp949", "gb18030", "big5", "cp932", "euc_jp", "cp1251", "cp1252"),
    labels_in_detection=False, fallback="iso8859-1",
)
PAGE = DecodingRules(
    sniff_wide=False, strict_bom=False, mostly_utf8=False, sample=64 * 1024, cut_sample_at_tag=False,
    legacy=("cp949", "gb18030", "big5", "cp932", "euc_jp", "cp1251", "cp1252"),
    labels_in_detection=True, fallback="cp1252",
)


@dataclass(frozen=True)
class Decoded:
    """A decoded document: its text, the encoding read, and where the bytes did not match
    their labels (one note each)."""

    text: str
    encoding: str
    notes: list[str] = field(default_factory=list)


_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]{1,40})["']""")
_CHARSET_PARAM = re.compile(r"""charset\s*=\s*["']?([^"';,\s]+)""", re.I)


def xml_labels(body: bytes, content_type: str) -> list[str]:
    """The charsets a feed declares, as written: the HTTP one, then the XML declaration's."""
    http_match = _CHARSET_PARAM.search(content_type or "")
    xml_match = _XML_ENCODING.match(body[:1024])
    own = xml_match.group(1).decode("ascii") if xml_match else ""
    return [label for label in (http_match and http_match.group(1), own) if label]


def html_labels(body: bytes, content_type: str) -> list[str]:
    """The known charsets a page declares (HTTP, then `<meta>`), as Python codec names."""
    declared = (http_content_type_encoding(content_type or ""), html_body_declared_encoding(body[:4096]))
    return [label for label in declared if label]


_BOMS = (
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
)
_SUPERSETS = {
    "ascii": ("cp1252", "iso8859-1"),
    "iso8859-1": ("cp1252", "iso8859-1"),
    "utf-8-sig": ("utf-8",),
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "euc_kr": ("cp949",),
    "shift_jis": ("cp932",),
}


def decode(body: bytes, labels: Sequence[str], rules: DecodingRules, *, final: bool = True) -> Decoded:
    """Decode a document given the charsets it declares (`xml_labels`, `html_labels`)."""
    wide = _wide_encoding(body, sniff=rules.sniff_wide)
    if wide is not None:
        encoding, skip = wide
        text = _strict(body[skip:], encoding, final) if rules.strict_bom else None
        if text is None:
            notes = [f"invalid {encoding} bytes replaced"] if rules.strict_bom else []
            return Decoded(_lenient(body[skip:], encoding), encoding, notes)
        return Decoded(text, encoding)
    known = [label for label in labels if codec_names(label)]
    notes = [f"unknown charset {label!r} ignored" for label in labels if label not in known]
    utf8 = _strict(body, "utf-8", final)
    chosen = _labelled(body, known, utf8, final)
    if chosen is None and utf8 is not None:
        chosen = Decoded(utf8, "utf-8")
    if chosen is None:
        chosen = _detect(body, known, rules)
    elif known and not chosen.text.isascii() and all(chosen.encoding not in codec_names(label) for label in known):
        notes.append(f"declared {' and '.join(known)} but decoded as {chosen.encoding}")
    return Decoded(chosen.text, chosen.encoding, notes + chosen.notes)


def _labelled(body: bytes, labels: Sequence[str], utf8: str | None, final: bool) -> Decoded | None:
    """The document read by the first label that fits it (valid UTF-8 beating single-byte ones)."""
    for label in labels:
        names = codec_names(label)
        if names[0].startswith(("utf-16", "utf-32")):
            continue
        if utf8 is not None and (names[0] == "utf-8" or _is_single_byte(names[0])):
            return Decoded(utf8, "utf-8")
        for name in names:
            text = _strict(body, name, final)
            if text is not None:
                return Decoded(text, name)
    return None


def _detect(body: bytes, labels: Sequence[str], rules: DecodingRules) -> Decoded:
    """Decode a body that fits none of its labels: mostly-UTF-8, or a detected legacy charset."""
    if rules.mostly_utf8:
        lenient = _lenient(body, "utf-8")
        bad = lenient.count("\ufffd")
        good = len(lenient) - len(lenient.encode("ascii", "ignore")) - bad
        if good >= 8 * bad:
            return Decoded(lenient, "utf-8", [f"{bad} invalid UTF-8 sequences replaced"])
    sample = body[: rules.sample]
    if rules.cut_sample_at_tag and len(body) > rules.sample:
        # "<" is never part of a multi-byte character in these encodings: a clean cut.
        cut = body.rfind(b"<", 0, rules.sample)
        sample = body[: cut if cut > 0 else rules.sample]
    candidates = list(rules.legacy)
    fallback = rules.fallback
    if rules.labels_in_detection:
        candidates = [label for label in labels if label not in rules.legacy] + candidates
        fallback = labels[0] if labels else fallback
    match = charset_normalizer.from_bytes(sample, cp_isolation=candidates).best()
    encoding = match.encoding if match is not None else fallback
    return Decoded(_lenient(body, encoding), encoding, [f"invalid UTF-8; decoded as {encoding}"])


def _wide_encoding(body: bytes, *, sniff: bool) -> tuple[str, int] | None:
    """The encoding a BOM gives (and the BOM's length), or with `sniff` the UTF-16/32 (or
    UTF-8) the zero bytes around the first '<' give."""
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return encoding, len(bom)
    head = body[:4]
    if sniff and len(head) == 4:
        if head[:3] == b"\0\0\0" and head[3]:
            return "utf-32-be", 0
        if head[0] and head[1:] == b"\0\0\0":
            return "utf-32-le", 0
        if not head[0] and head[1] and not head[2]:
            return "utf-16-be", 0
        if head[0] and not head[1] and head[2] and not head[3]:
            return "utf-16-le", 0
    return None


@lru_cache(maxsize=64)
def codec_names(label: str) -> tuple[str, ...]:
    """The codecs to try for a charset label, most inclusive superset first; () if unknown."""
    try:
        name = codecs.lookup(label.strip().lower()).name
        b"".decode(name)
    except (LookupError, ValueError):
        return ()
    return _SUPERSETS.get(name, (name,))


@lru_cache(maxsize=64)
def _is_single_byte(name: str) -> bool:
    return len(bytes(range(256)).decode(name, "replace")) == 256


def _strict(data: bytes, encoding: str, final: bool) -> str | None:
    """Decode strictly; with `final` False a character cut at the end is not an error."""
    try:
        if final:
            return data.decode(encoding)
        return codecs.getincrementaldecoder(encoding)().decode(data, final=False)
    except (UnicodeDecodeError, LookupError):
        return None


def _lenient(data: bytes, encoding: str) -> str:
    return data.decode(encoding, "replace")
