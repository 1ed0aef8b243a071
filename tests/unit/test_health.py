"""Backoff, Retry-After and freshness floors."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from newswatch.crawler.health import backoff_delay, freshness_floor, retry_after_seconds

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_backoff_grows_with_jitter_and_cap() -> None:
    rng = random.Random(7)
    assert backoff_delay(1, 300, 3600, rng) == 0
    second = backoff_delay(2, 300, 3600, rng)
    assert 480 <= second <= 720
    assert 2880 <= backoff_delay(10, 300, 3600, rng) <= 4320
    delays = {round(backoff_delay(3, 300, 10**6, random.Random(i))) for i in range(20)}
    assert len(delays) > 10  # jitter spreads failing sources apart


@pytest.mark.parametrize(("header", "seconds"), [
    ("120", 120.0), (b"30", 30.0), ("Wed, 01 Jan 2026 12:05:00 GMT", 300.0), ("999999", 21600.0),
    ("soon", None), (None, None), ("Wed, 01 Jan 2026 11:00:00 GMT", 0.0),
])
def test_retry_after(header, seconds) -> None:
    assert retry_after_seconds(header, NOW) == seconds


def test_freshness_floor() -> None:
    assert freshness_floor("public, max-age=600", None) == 600
    assert freshness_floor(b"max-age=60", 15 * 60) == 900
    assert freshness_floor("no-cache", None) == 0
    assert freshness_floor("max-age=99999", None) == 3600
