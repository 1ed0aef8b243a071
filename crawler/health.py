"""When a source may be fetched again: backoff after failures, Retry-After, TTL floors.

Pure functions of the fetch outcome and the time; the store keeps the resulting
`not_before` per source and the scheduler skips a source until then.
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER = 6 * 3600
MAX_TTL_FLOOR = 3600


def backoff_delay(failures: int, interval: int, cap: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after `failures` consecutive failures: the interval doubled per
    failure beyond the first, capped, with ±20% jitter so failing sources do not march in step."""
    if failures <= 1:
        return 0.0
    base = min(interval * (2 ** (failures - 1)), cap)
    jitter = (rng or random).uniform(0.8, 1.2)
    return base * jitter


def retry_after_seconds(value: str | bytes | None, now: datetime) -> float | None:
    """The delay a `Retry-After` header asks for (seconds or an HTTP date), capped."""
    if not value:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    value = value.strip()
    if value.isdigit():
        return float(min(int(value), MAX_RETRY_AFTER))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, min((when - now).total_seconds(), MAX_RETRY_AFTER))


_MAX_AGE = re.compile(r"(?:^|[,\s])(?:s-)?max-age\s*=\s*(\d+)", re.I)


def freshness_floor(cache_control: str | bytes | None, ttl_seconds: int | None) -> int:
    """How long the server says the feed stays fresh (Cache-Control max-age, RSS <ttl>),
    capped so a careless header cannot silence a source for days."""
    seconds = 0
    if cache_control:
        if isinstance(cache_control, bytes):
            cache_control = cache_control.decode("latin-1", "replace")
        if m := _MAX_AGE.search(cache_control):
            seconds = int(m.group(1))
    if ttl_seconds:
        seconds = max(seconds, ttl_seconds)
    return min(seconds, MAX_TTL_FLOOR)


def not_before(now: datetime, delay: float) -> datetime | None:
    return now + timedelta(seconds=delay) if delay > 0 else None
