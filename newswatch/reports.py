"""What `newswatch stats` and `newswatch export` read from the database, and how they show it.

`collect_stats()` gathers the health of each source, the stories stored and matched per topic
per day, and the state of the outbox into plain data (also printed as JSON with `--json`);
`render_stats()` draws it as tables. `matched_stories()` reads the stories that passed a
topic since a moment, one record per story with all its topics, and `write_jsonl()` /
`write_csv()` write them out. Nothing here writes to the database, so both commands are safe
while the daemon runs (a database an earlier release wrote is upgraded in place first, once,
by `newswatch.storage.open_storage`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from newswatch.alerts.deliver.notifier import TELEGRAM_DOWN_KEY, TELEGRAM_PROBLEM_KEY
from newswatch.alerts.runtime_sources import RuntimeSources
from newswatch.crawler.sources import SourceConfig, parse_duration
from newswatch.crawler.store import HELD_BASELINE, HELD_TOO_OLD, FetchState, StoryStore
from newswatch.crawler.urls import redact_url
from newswatch.storage import Storage, is_postgres, open_storage, storage_exists

STALE_AFTER_INTERVALS = 3
STALE_AFTER_MIN = 3600


# -- stats -------------------------------------------------------------------------------------------
@dataclass
class SourceHealth:
    name: str
    kind: str
    interval: int
    enabled: bool
    health: str  # ok, stale, failing, not fetched yet, disabled
    last_success: datetime | None
    last_status: int | None
    failures: int
    stories: int
    problem: str
    next_try: datetime | None


@dataclass
class Stats:
    database: str
    now: datetime
    sources: list[SourceHealth]
    days: list[date]
    stories_per_day: dict[str, int]  # "YYYY-MM-DD" -> stories stored that day
    topics_per_day: dict[str, dict[str, int]]  # topic -> day -> stories that passed it
    outbox: dict[str, int]  # state -> items
    outbox_due: int
    outbox_held: int
    oldest_pending: datetime | None
    chats_active: int
    recent_failures: list[dict[str, Any]] = field(default_factory=list)
    held_per_day: dict[str, dict[str, int]] = field(default_factory=dict)  # reason -> day -> stored, not alerted
    telegram_unreachable_since: datetime | None = None  # the daemon could not reach the Bot API since then
    telegram_problem: str = ""

    def as_json(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, (datetime, date)):
                return value.isoformat()
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            return value

        return plain(asdict(self))


def source_health(source: SourceConfig, state: FetchState | None, now: datetime) -> str:
    if not source.enabled:
        return "disabled"
    if state is None or state.last_attempt is None:
        return "not fetched yet"
    if state.failures:
        return "failing"
    if state.last_success is None:
        return "not fetched yet"
    stale_after = max(STALE_AFTER_INTERVALS * source.interval, STALE_AFTER_MIN)
    if state.not_before and state.not_before > now:
        return "ok"  # the server asked us to wait (Cache-Control, <ttl>)
    if (now - state.last_success).total_seconds() > stale_after:
        return "stale"
    return "ok"


def collect_stats(storage: Storage, sources: Sequence[SourceConfig], now: datetime, *,
                  days: int = 7, database: str = "") -> Stats:
    today = now.astimezone(UTC).date()
    day_list = [today - timedelta(days=i) for i in range(days - 1, -1, -1)]
    since = datetime.combine(day_list[0], datetime.min.time(), UTC)
    store, alerts = storage.stories, storage.alerts
    stories_per_day = _per_day(day_list, store.stored_per_day(since), keep_all=False)
    held_per_day = {reason: _per_day(day_list, counts) for reason, counts in store.held_per_day(since).items()}
    topics_per_day = {topic: _per_day(day_list, counts, keep_all=False)
                      for topic, counts in alerts.matched_per_day(since).items()}
    due, held = alerts.pending_due(now)
    down = store.get_meta(TELEGRAM_DOWN_KEY)
    return Stats(
        held_per_day=held_per_day,
        telegram_unreachable_since=datetime.fromisoformat(down) if down else None,
        telegram_problem=store.get_meta(TELEGRAM_PROBLEM_KEY) if down else "",
        database=database, now=now, sources=sources_health(store, sources, now), days=day_list,
        stories_per_day=stories_per_day, topics_per_day=topics_per_day, outbox=alerts.outbox_counts(),
        outbox_due=due, outbox_held=held, oldest_pending=alerts.pending()[1], chats_active=alerts.active_count(),
        recent_failures=alerts.delivery_problems(5),
    )


def sources_health(store: StoryStore, sources: Sequence[SourceConfig], now: datetime) -> list[SourceHealth]:
    """Each source's health, from its fetch state."""
    states = store.all_fetch_states()
    health = []
    for source in sources:
        state = states.get(source.name)
        health.append(SourceHealth(
            name=source.name, kind=source.kind, interval=source.interval, enabled=source.enabled,
            health=source_health(source, state, now),
            last_success=state.last_success if state else None,
            last_status=state.last_status if state else None,
            failures=state.failures if state else 0,
            stories=state.stories_total if state else 0,
            problem=redact_url(state.last_error) if state else "",
            next_try=state.not_before if state and state.not_before and state.not_before > now else None,
        ))
    return health


def _per_day(days: list[date], counts: dict[str, int], *, keep_all: bool = True) -> dict[str, int]:
    """"YYYY-MM-DD" -> count for each of `days`, zeros included; with `keep_all`, counts of
    other days are kept too."""
    per_day = {d.isoformat(): 0 for d in days}
    for day, count in counts.items():
        if keep_all or day in per_day:
            per_day[day] = count
    return per_day


_HEALTH_STYLE = {"ok": "green", "stale": "yellow", "failing": "red", "disabled": "dim", "not fetched yet": "dim"}


def ago(then: datetime | None, now: datetime) -> str:
    """"3m ago", "2h ago", "never"."""
    if then is None:
        return "never"
    seconds = int((now - then).total_seconds())
    if seconds < 0:
        return "in " + _span(-seconds)
    return _span(seconds) + " ago"


def _span(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 90 * 60:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def render_stats(stats: Stats, console: Console) -> None:
    now = stats.now
    table = Table(title=f"Sources ({stats.database})" if stats.database else "Sources", title_justify="left")
    for column in ("source", "health", "last success", "status", "failures", "stories", "problem"):
        table.add_column(column, justify="right" if column in ("failures", "stories", "status") else "left",
                         overflow="fold")
    for s in stats.sources:
        problem = s.problem
        if s.next_try is not None and s.health == "failing":
            problem = f"{problem} (next try {ago(s.next_try, now)})"
        table.add_row(s.name, f"[{_HEALTH_STYLE.get(s.health, '')}]{s.health}[/]", ago(s.last_success, now),
                      str(s.last_status or "-"), str(s.failures), str(s.stories), problem[:120])
    console.print(table)

    days = [d.isoformat() for d in stats.days]
    table = Table(title="Stories per day (UTC): stored, and matched per topic", title_justify="left")
    table.add_column("")
    for d in days:
        table.add_column(d[5:], justify="right")
    table.add_column("total", justify="right")
    table.add_row("stored", *(str(stats.stories_per_day.get(d, 0)) for d in days),
                  str(sum(stats.stories_per_day.values())), style="bold")
    for reason, label in ((HELD_TOO_OLD, "too old to alert"), (HELD_BASELINE, "undated, first fetch")):
        if reason in stats.held_per_day:
            per_day = stats.held_per_day[reason]
            table.add_row(f"  {label}", *(str(per_day.get(d, 0)) for d in days), str(sum(per_day.values())))
    for topic, per_day in sorted(stats.topics_per_day.items()):
        table.add_row(topic, *(str(per_day.get(d, 0)) for d in days), str(sum(per_day.values())))
    if not stats.topics_per_day:
        table.add_row("(no matches)", *("" for _ in days), "")
    console.print(table)

    table = Table(title="Outbox", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    pending = stats.outbox.get("pending", 0)
    table.add_row("pending", f"{pending} ({stats.outbox_due} due now, {stats.outbox_held} waiting)")
    table.add_row("oldest pending", ago(stats.oldest_pending, now) if stats.oldest_pending else "-")
    for state in ("sent", "failed", "dropped", "muted"):
        table.add_row(state, str(stats.outbox.get(state, 0)))
    table.add_row("active chats", str(stats.chats_active))
    console.print(table)
    if stats.telegram_unreachable_since is not None:
        console.print(f"Telegram: the Bot API cannot be reached since {stats.telegram_unreachable_since:%Y-%m-%d %H:%M} UTC"
                      f" ({ago(stats.telegram_unreachable_since, now)}): {stats.telegram_problem}; alerts wait in the outbox",
                      markup=False, highlight=False)
    if stats.recent_failures:
        console.print("Recent delivery problems:")
        for f in stats.recent_failures:
            console.print(f"  chat {f['chat']}: {f['state']}: {f['error']}", markup=False, highlight=False)


# -- export ------------------------------------------------------------------------------------------
EXPORT_FIELDS = ["matched_at", "published", "source", "title", "url", "topics", "terms", "id"]


def parse_since(value: str, now: datetime) -> datetime:
    """The start of an export window: a duration back from now ("7d", "12h", "90m") or a
    date or time ("2026-03-01", "2026-03-01T09:00+09:00"; UTC when no zone is given)."""
    text = value.strip()
    try:
        return now - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since: expected a duration such as 7d or 12h, or a date such as 2026-03-01; got {value!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def matched_stories(storage: Storage, since: datetime, *, topics: Iterable[str] = (),
                    with_text: bool = False) -> list[dict[str, Any]]:
    """Stories that passed at least one topic since `since`, oldest first, each with all its
    topics (name and score) and the terms that matched."""
    out: dict[str, dict[str, Any]] = {}
    for row in storage.alerts.matched_stories(since, list(topics)):
        record = out.get(row["id"])
        if record is None:
            record = out[row["id"]] = {
                "id": row["id"], "matched_at": row["matched_at"], "published": row["published"],
                "fetched": row["fetched"], "source": row["source"], "title": row["title"], "url": row["url"],
                "topics": [], "terms": [],
            }
            if with_text:
                record["text"] = row["text"]
        record["matched_at"] = min(record["matched_at"], row["matched_at"])
        record["topics"].append({"topic": row["topic"], "score": round(row["score"], 2)})
        for term in row["terms"]:
            if term not in record["terms"]:
                record["terms"].append(term)
    return list(out.values())


def write_jsonl(records: Iterable[dict[str, Any]], out: IO[str]) -> int:
    count = 0
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count


def write_csv(records: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """CSV with a header; `topics` as "summit:8.0;sanctions:7.5", `terms` joined by ";"."""
    records = list(records)
    fields = EXPORT_FIELDS + (["text"] if any("text" in r for r in records) else [])
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        row = dict(record)
        row["topics"] = ";".join(f"{t['topic']}:{t['score']}" for t in record["topics"])
        row["terms"] = ";".join(record["terms"])
        writer.writerow(row)
    return len(records)


# -- the commands --------------------------------------------------------------------------------------
def _open_existing(path: Path | str) -> Storage | None:
    """The database opened read-only (upgraded first when an earlier release wrote it), or None
    when it does not exist yet (it is never created here)."""
    if not storage_exists(path):
        return None
    return open_storage(path, read_only=True)


def _all_sources(storage: Storage, config: Any) -> list[SourceConfig]:
    """The config's sources with runtime overrides, then sources added from Telegram."""
    return [known.config for known in RuntimeSources(storage.alerts, config.sources).all()]


def show_stats(config: Any, out: IO[str], *, days: int = 7, as_json: bool = False, now: datetime | None = None) -> int:
    """`newswatch stats`: 0, or 1 when there is no database yet."""
    path = config.database
    storage = _open_existing(path)
    if storage is None:
        print(f"newswatch stats: no database at {path} yet; `newswatch run` or `newswatch crawl` creates it",
              file=out)
        return 1
    try:
        stats = collect_stats(storage, _all_sources(storage, config), now or datetime.now(UTC), days=days,
                              database=redact_url(str(path)) if is_postgres(path) else str(path))
    finally:
        storage.close()
    if as_json:
        out.write(json.dumps(stats.as_json(), ensure_ascii=False, indent=2) + "\n")
    else:
        render_stats(stats, Console(file=out, highlight=False))
    return 0


def export(config: Any, out: IO[str], *, since: str, fmt: str, topics: Sequence[str] = (), with_text: bool = False,
           now: datetime | None = None) -> int:
    """`newswatch export`: write the stories matched since `since`; return how many."""
    start = parse_since(since, now or datetime.now(UTC))
    unknown = [t for t in topics if t not in config.topics]
    if unknown:
        raise ValueError(f"--topic: no topic named {', '.join(unknown)} (topics: {', '.join(config.topics)})")
    storage = _open_existing(config.database)
    records = []
    if storage is not None:
        try:
            records = matched_stories(storage, start, topics=topics, with_text=with_text)
        finally:
            storage.close()
    return (write_csv if fmt == "csv" else write_jsonl)(records, out)
