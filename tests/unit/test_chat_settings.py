"""What a chat types for mute, quiet hours, digests and time zones."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from newswatch.alerts.bot.chat_settings import (
    SettingError,
    describe_duration,
    find_timezone,
    parse_clock,
    parse_digest,
    parse_mute,
    parse_quiet,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "delta"), [("30m", timedelta(minutes=30)), ("2h", timedelta(hours=2)),
                                             ("1d", timedelta(days=1)), ("1h30m", timedelta(minutes=90)),
                                             ("90", timedelta(seconds=90))])
def test_mute_durations(text: str, delta: timedelta) -> None:
    assert parse_mute(text, NOW) == NOW + delta


@pytest.mark.parametrize(("text", "why"), [("forever", "not a duration"), ("31d", "longest mute"), ("0", "not a duration")])
def test_bad_mutes(text: str, why: str) -> None:
    with pytest.raises(SettingError, match=why):
        parse_mute(text, NOW)


@pytest.mark.parametrize(("text", "value"), [("23:00", time(23, 0)), ("7:30", time(7, 30)), ("0700", time(7, 0)),
                                             ("23h15", time(23, 15)), ("06.45", time(6, 45))])
def test_clock(text: str, value: time) -> None:
    assert parse_clock(text) == value


def test_quiet_hours() -> None:
    assert parse_quiet(["23:00-07:00"]) == ((time(23), time(7)), None)
    assert parse_quiet(["22:30–06:00", "asia/seoul"]) == ((time(22, 30), time(6)), "Asia/Seoul")
    assert parse_quiet(["off"]) == (None, None)
    for bad, why in [([], "write the hours"), (["25:00-07:00"], "the hour 25 is out of range"),
                     (["25:00-99:00"], "the hour 25 is out of range; hours go from 00 to 23"),
                     (["23:00-07:75"], "the minute 75 is out of range; minutes go from 00 to 59"),
                     (["ab:00-07:00"], "not a time of day; write it as HH:MM"), (["23:00"], "span"),
                     (["07:00-07:00"], "different"), (["23:00-07:00", "Nowhere/City"], "not a time zone"),
                     (["23:00-07:00", "Asia/Seoul", "x"], "write /quiet")]:
        with pytest.raises(SettingError, match=why):
            parse_quiet(bad)


def test_digest_modes() -> None:
    assert parse_digest(["off"]) == ("off", None)
    assert parse_digest(["Hourly"]) == ("hourly", None)
    assert parse_digest(["daily", "08:30"]) == ("daily", time(8, 30))
    assert parse_digest(["daily"]) == ("daily", time(8, 0))
    for bad, why in [([], "write /digest"), (["weekly"], "not a digest mode"), (["hourly", "9"], "takes nothing"),
                     (["daily", "8", "pm"], "write /digest daily"), (["daily", "25:00"], "the hour 25 is out of range")]:
        with pytest.raises(SettingError, match=why):
            parse_digest(bad)


def test_time_zones() -> None:
    assert find_timezone("Asia/Seoul") == "Asia/Seoul"
    assert find_timezone("asia/seoul") == "Asia/Seoul"
    assert find_timezone("Seoul") == "Asia/Seoul"
    assert find_timezone("new york") == "America/New_York"
    assert find_timezone("UTC") == "UTC"
    with pytest.raises(SettingError, match="Area/City"):
        find_timezone("Mars/Olympus")


def test_describe_duration() -> None:
    assert describe_duration(timedelta(hours=2)) == "2h"
    assert describe_duration(timedelta(days=1, hours=6, minutes=5)) == "1d 6h 5m"
    assert describe_duration(timedelta(seconds=10)) == "1m"
