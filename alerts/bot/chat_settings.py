"""Reading what a chat types for its settings: durations, quiet hours, digests, time zones.

Pure functions: each takes the words after a command and returns the value to store, or
raises `SettingError` whose message can be sent back as it is.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from newswatch.crawler.sources import parse_duration

MAX_MUTE = timedelta(days=30)
DEFAULT_DIGEST_AT = time(8, 0)

_CLOCK = re.compile(r"^(\d{1,2})[:.h]?(\d\d)$")


class SettingError(ValueError):
    """A setting that cannot be used; the message says what to type instead."""


def parse_mute(arg: str, now: datetime) -> datetime:
    """`30m`, `2h`, `1d`, `1h30m` from now (at most 30 days)."""
    try:
        seconds = parse_duration(arg.strip())
    except ValueError:
        raise SettingError(f"“{arg}” is not a duration; try 30m, 2h, 1d or 1h30m") from None
    delta = timedelta(seconds=seconds)
    if delta > MAX_MUTE:
        raise SettingError("the longest mute is 30 days; /stop ends alerts for good")
    return now + delta


def parse_clock(text: str) -> time:
    """`23:00`, `7:30`, `0700` or `23h00` as a local time of day."""
    match = _CLOCK.match(text.strip())
    if not match:
        raise SettingError(f"“{text}” is not a time of day; write it as HH:MM, e.g. 23:00")
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23:
        raise SettingError(f"“{text}”: the hour {hour} is out of range; hours go from 00 to 23")
    if minute > 59:
        raise SettingError(f"“{text}”: the minute {minute} is out of range; minutes go from 00 to 59")
    return time(hour, minute)


def parse_quiet(args: list[str]) -> tuple[tuple[time, time] | None, str | None]:
    """`23:00-07:00 [Area/City]` -> ((from, to), zone or None); `off` -> (None, None)."""
    if not args:
        raise SettingError("write the hours, e.g. /quiet 23:00-07:00 Asia/Seoul, or /quiet off")
    if args[0].lower() in ("off", "none", "no"):
        return None, None
    if len(args) > 2:
        raise SettingError("write /quiet FROM-TO [Area/City], e.g. /quiet 23:00-07:00 Asia/Seoul")
    span = args[0].replace("–", "-").replace("—", "-")
    if span.count("-") != 1:
        raise SettingError(f"“{args[0]}” is not a span of hours; write it as 23:00-07:00")
    start_text, end_text = span.split("-")
    start, end = parse_clock(start_text), parse_clock(end_text)
    if start == end:
        raise SettingError("quiet hours need different start and end times")
    zone = find_timezone(args[1]) if len(args) == 2 else None
    return (start, end), zone


def parse_digest(args: list[str]) -> tuple[str, time | None]:
    """`off`, `hourly`, or `daily [HH:MM]` (08:00 when no time is given)."""
    if not args:
        raise SettingError("write /digest off, /digest hourly or /digest daily 08:00")
    mode = args[0].lower()
    if mode in ("off", "hourly"):
        if len(args) > 1:
            raise SettingError(f"/digest {mode} takes nothing after it")
        return mode, None
    if mode == "daily":
        if len(args) > 2:
            raise SettingError("write /digest daily HH:MM, e.g. /digest daily 08:00")
        return mode, parse_clock(args[1]) if len(args) == 2 else DEFAULT_DIGEST_AT
    raise SettingError(f"“{args[0]}” is not a digest mode; use off, hourly or daily HH:MM")


@lru_cache(maxsize=1)
def _zones() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones()}


def find_timezone(text: str) -> str:
    """An IANA zone name from `Asia/Seoul`, `asia/seoul`, `Seoul` or `UTC`."""
    wanted = text.strip().replace(" ", "_")
    zones = _zones()
    if wanted.lower() in zones:
        name = zones[wanted.lower()]
    else:
        cities = [name for low, name in zones.items() if "/" in low and low.rsplit("/", 1)[1] == wanted.lower()
                  and not low.startswith(("etc/", "posix/", "right/"))]
        if len(cities) != 1:
            raise SettingError(f"“{text}” is not a time zone I know; use an Area/City name such as "
                               "Asia/Seoul, Europe/London or America/New_York")
        name = cities[0]
    ZoneInfo(name)
    return name


def describe_duration(delta: timedelta) -> str:
    """`2h`, `1d 6h`, `45m` (rounded to the minute)."""
    minutes = max(1, round(delta.total_seconds() / 60))
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{mins}m" if mins else ""]
    return " ".join(p for p in parts if p)


def local_stamp(moment: datetime, zone: str) -> str:
    """`2019-02-27 14:00 KST` in the chat's zone."""
    local = moment.astimezone(ZoneInfo(zone))
    return f"{local:%Y-%m-%d %H:%M} {local.tzname() or zone}"
