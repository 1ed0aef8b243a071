"""Dates as feeds, pages and sitemaps write them: the one date parser (pure, no I/O).

Forms read: RFC 822 ("Wed, 01 May 2024 10:00:00 +0900"), ISO 8601 (also basic, "20240501T1000"),
numeric dates with dots or slashes ("2024.05.01 10:00"), and Korean, Japanese and Chinese
dates ("2024년 5월 1일 오후 3:20", "2024年5月1日 10:00").

Zones: a numeric offset wins; abbreviations are read from one table (`ZONE_ABBREVIATIONS`;
CST and IST by the text's language: zh +08:00, he +02:00); a time without any zone takes the
zone of its language where that is unambiguous (`LANGUAGE_ZONES`: ko, ja +09:00; zh +08:00).

Two readings, kept apart because their callers always read differently
(`tests/unit/test_charset_and_dates.py` pins where):

- `parse_date` reads the date of a page or sitemap entry: any of the forms, found anywhere in
  the text, in the text's own offset (seconds' fractions dropped); a trailing zone
  abbreviation read from the same tables as feeds, unknown ones as email.utils reads them;
  before 1995 or more than a day ahead is None.
- `feed_date` reads the date of a feed entry beside feedparser's reading of it: the whole
  text as RFC 822, ISO 8601 or a numeric date, with the abbreviations feedparser misreads
  and zone-less times read here, the rest as feedparser read it; in UTC, unbounded
  (`newswatch.crawler.story.settle_date` bounds it).
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from newswatch.crawler.story import FUTURE_TOLERANCE

UTC = timezone.utc


def _hours(hours: float) -> timezone:
    return timezone(timedelta(hours=hours))


# Abbreviations feedparser does not know (it reads them as UTC) or reads as another zone.
ZONE_ABBREVIATIONS: dict[str, timezone] = {
    "KST": _hours(9), "JST": _hours(9), "HKT": _hours(8), "SGT": _hours(8), "PHT": _hours(8),
    "AWST": _hours(8), "WIB": _hours(7), "ICT": _hours(7), "IST": _hours(5.5), "MSK": _hours(3),
    "EEST": _hours(3), "EET": _hours(2), "CEST": _hours(2), "CET": _hours(1), "BST": _hours(1),
    "WEST": _hours(1), "WET": _hours(0), "UTC": _hours(0), "ACST": _hours(9.5),
    "AEST": _hours(10), "AEDT": _hours(11), "NZST": _hours(12), "NZDT": _hours(13),
    "HST": _hours(-10), "AKST": _hours(-9), "AKDT": _hours(-8),
}
# Ambiguous abbreviations, read by the primary language of the text.
_LANGUAGE_ABBREVIATIONS = {("zh", "CST"): _hours(8), ("he", "IST"): _hours(2)}
# Zones assumed for a time written without any zone, by primary language.
LANGUAGE_ZONES = {"ko": _hours(9), "ja": _hours(9), "zh": _hours(8)}
_UTC_NAMES = frozenset({"Z", "GMT"})

_ISO = re.compile(
    r"(\d{4})[-./](\d{1,2})[-./](\d{1,2})(?:[T\s]+(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?"
    r"\s*(Z|UTC|GMT|KST|JST|[+-]\d{2}:?\d{2})?)?",
    re.I,
)
_COMPACT_ISO = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})?(Z|[+-]\d{2}:?\d{2})?)?$", re.I)
_CJK = re.compile(
    r"(\d{4})\s*[년年]\s*(\d{1,2})\s*[월月]\s*(\d{1,2})\s*[일日]"
    r"(?:[^\d]{0,12}?(오후|오전|午後|午前|下午|上午)?\s*(\d{1,2})\s*[:시時点]\s*(\d{1,2}))?"
)
_AFTERNOON = frozenset({"오후", "午後", "下午"})
_TRAILING_ABBREVIATION = re.compile(r"\s+\(?([A-Za-z]{2,5})\)?$")
_TRAILING_ZONE = re.compile(r"(?:[+-]\d{2}:?\d{2}|[A-Za-z]\)?)$")
_NUMERIC_FORMATS = ("%Y.%m.%d %H:%M:%S", "%Y.%m.%d %H:%M", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M")
_EARLIEST_YEAR = 1995


# --- pages and sitemaps ---------------------------------------------------------------------


def parse_date(text: str, language: str = "") -> datetime | None:
    """A publication date from the forms pages use (ISO 8601, RFC 822, numeric, Korean,
    Japanese and Chinese); aware, in the page's own offset. None when unreadable."""
    text = " ".join(text.split())[:200]
    if not text:
        return None
    moment = _abbreviated(text, _primary(language)) or _rfc822(text) or _iso_anywhere(text) or _cjk(text)
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LANGUAGE_ZONES.get(_primary(language), UTC))
    if moment.year < _EARLIEST_YEAR or moment > datetime.now(UTC) + FUTURE_TOLERANCE:
        return None
    return moment


def _iso_anywhere(text: str) -> datetime | None:
    """The first ISO 8601 or numeric date in the text (basic ISO only as the whole text)."""
    match = _COMPACT_ISO.match(text) or _ISO.search(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, offset = match.groups()
    moment = _build(year, month, day, hour, minute, second)
    if moment is not None and offset:
        moment = moment.replace(tzinfo=_offset(offset))
    return moment


def _cjk(text: str) -> datetime | None:
    match = _CJK.search(text)
    if match is None:
        return None
    year, month, day, half, hour, minute = match.groups()
    clock = int(hour or 0)
    if half in _AFTERNOON and clock < 12:
        clock += 12
    return _build(year, month, day, str(clock) if hour else None, minute, None)


def _build(
    year: str, month: str, day: str, hour: str | None, minute: str | None, second: str | None,
) -> datetime | None:
    try:
        return datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError:
        return None


def _offset(text: str) -> timezone:
    """The zone of "+09:00", "-0500", "Z", "GMT" or an abbreviation `_ISO` accepts."""
    text = text.upper()
    if text in _UTC_NAMES:
        return UTC
    if text in ZONE_ABBREVIATIONS:
        return ZONE_ABBREVIATIONS[text]
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4])))


# --- feed entries -----------------------------------------------------------------------------


def feed_date(raw: str, parsed: Any, language: str) -> datetime | None:
    """A feed entry's date in UTC: zone abbreviations and zone-less times read here, the rest
    as feedparser read it (`parsed`, its struct_time in UTC), else as written."""
    raw = " ".join(raw.split())
    if raw:
        moment = _feed_local_date(raw, _primary(language))
        if moment is not None:
            return moment
    if isinstance(parsed, (time.struct_time, tuple)) and len(parsed) >= 6:
        try:
            return datetime(*parsed[:6], tzinfo=UTC)
        except (TypeError, ValueError, OverflowError):
            pass
    return as_utc(_whole_date(raw)) if raw else None


def _feed_local_date(raw: str, language: str) -> datetime | None:
    """A date whose zone is an abbreviation feedparser misreads, or missing; else None."""
    if _TRAILING_ABBREVIATION.search(raw):
        return as_utc(_abbreviated(raw, language))
    zone = None if _TRAILING_ZONE.search(raw) else LANGUAGE_ZONES.get(language)
    moment = _whole_date(raw) if zone is not None else None
    if moment is None:
        return None
    return as_utc(moment if moment.tzinfo else moment.replace(tzinfo=zone))


def _abbreviated(text: str, language: str) -> datetime | None:
    """A whole date that ends in a zone abbreviation the tables know ("… 10:00:00 KST",
    "… 10:00 (HKT)"), in that zone; None for any other text."""
    abbreviation = _TRAILING_ABBREVIATION.search(text)
    if abbreviation is None:
        return None
    name = abbreviation.group(1).upper()
    zone = _LANGUAGE_ABBREVIATIONS.get((language, name)) or ZONE_ABBREVIATIONS.get(name)
    moment = _whole_date(text[: abbreviation.start()]) if zone is not None else None
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def _whole_date(text: str) -> datetime | None:
    """The text as one RFC 822, ISO 8601 or numeric date; naive when it has no zone."""
    moment = _rfc822(text)
    if moment is not None:
        return moment
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    for pattern in _NUMERIC_FORMATS:
        try:
            return datetime.strptime(text, pattern)
        except ValueError:
            continue
    return None


# --- shared -----------------------------------------------------------------------------------


def _rfc822(text: str) -> datetime | None:
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None


def _primary(language: str) -> str:
    return language.partition("-")[0]


def as_utc(moment: datetime | None) -> datetime | None:
    """The moment in UTC (a naive one taken as UTC); None when it cannot be expressed."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
