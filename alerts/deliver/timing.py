"""When a chat may receive alerts: mute, quiet hours and digest slots, as pure functions.

All wall-clock rules are read in the chat's own timezone and answered as aware UTC
datetimes, so daylight-saving changes and midnight-wrapping windows ("23:00-07:00") come
out right. The notifier asks `hold_until()` before each delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from newswatch.alerts.subscriptions import Chat


def zone(name: str) -> ZoneInfo:
    """The chat's timezone; an unknown name falls back to UTC."""
    try:
        return ZoneInfo(name)
    except Exception:
        return ZoneInfo("UTC")


def is_muted(chat: Chat, now: datetime) -> bool:
    return chat.muted_until is not None and now < chat.muted_until


def quiet_end(quiet: tuple[time, time] | None, now: datetime, tz: ZoneInfo) -> datetime | None:
    """The end of the quiet window `now` falls in, or None when it is not quiet now."""
    if quiet is None:
        return None
    start, end = quiet
    if start == end:
        return None
    local = now.astimezone(tz)
    today = local.date()
    for day in (today - timedelta(days=1), today):
        begin = datetime.combine(day, start, tz)
        finish = datetime.combine(day if end > start else day + timedelta(days=1), end, tz)
        if begin <= local < finish:
            return finish.astimezone(UTC)
    return None


def next_digest(mode: str, at: time | None, after: datetime, tz: ZoneInfo) -> datetime:
    """The first digest slot strictly after `after`: the next full hour, or the next
    `at` local time for a daily digest."""
    local = after.astimezone(tz)
    if mode == "hourly":
        slot = local.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return slot.astimezone(UTC)
    at = at or time(8, 0)
    slot = datetime.combine(local.date(), at, tz)
    if slot <= local:
        slot = datetime.combine(local.date() + timedelta(days=1), at, tz)
    return slot.astimezone(UTC)


@dataclass(frozen=True)
class Decision:
    """What to do with a chat's oldest pending alert now."""

    action: str                 # "send", "digest", "hold", "skip"
    until: datetime | None = None


def decide(chat: Chat, created: datetime, now: datetime) -> Decision:
    """Send now, hold until later, send as part of a digest, or skip (muted)."""
    if is_muted(chat, now):
        return Decision("skip")
    tz = zone(chat.timezone)
    if chat.digest in ("hourly", "daily"):
        slot = next_digest(chat.digest, chat.digest_at, created, tz)
        if slot > now:
            return Decision("hold", slot)
        end = quiet_end(chat.quiet, now, tz)
        return Decision("hold", end) if end else Decision("digest")
    end = quiet_end(chat.quiet, now, tz)
    if end:
        return Decision("hold", end)
    return Decision("send")
