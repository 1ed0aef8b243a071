"""The /trend chart: matched stories per day, per topic, as a PNG.

`daily_counts()` reads the matches (`AlertsStore.matches_between`) and counts distinct stories per local day of the
chat's time zone, by the day each story was matched — as /status ("matched in the last
24 h"), `newswatch stats` and `newswatch export --since` count them. The day of the match is
the one time the daemon itself vouches for: a publication date may be missing, wrong by a
time zone or in the future, and an old item a feed shows for the first time is news to the
chats on the day it is matched, when its alert goes out. `render_png()`
draws the counts with matplotlib's Agg backend through the object-oriented API (a
`Figure` with its own canvas, no pyplot state), so it can run in a worker thread.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from newswatch.alerts.store import AlertsStore

MAX_DAYS = 90
DEFAULT_DAYS = 14
WIDTH_INCHES, HEIGHT_INCHES, DPI = 8.0, 4.0, 100


def days_of(end: date, days: int) -> list[date]:
    return [end - timedelta(days=days - 1 - i) for i in range(days)]


def daily_counts(store: AlertsStore, topics: list[str], days: int, now: datetime,
                 tz: ZoneInfo) -> dict[str, list[tuple[date, int]]]:
    """topic -> [(local day, stories matched that day)] for the last `days` days up to today,
    oldest first, zeros included."""
    today = now.astimezone(tz).date()
    window = days_of(today, days)
    start = datetime.combine(window[0], datetime.min.time(), tz)
    counts: dict[str, dict[date, set[str]]] = {t: {} for t in topics}
    for topic, story_id, matched_at in store.matches_between(topics, start, now):
        counts[topic].setdefault(matched_at.astimezone(tz).date(), set()).add(story_id)
    return {t: [(d, len(counts[t].get(d, ()))) for d in window] for t in topics}


def render_png(series: Mapping[str, list[tuple[date, int]]], *, title: str) -> bytes:
    """A bar chart for one topic, lines for several; days along the bottom."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, DateFormatter
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(WIDTH_INCHES, HEIGHT_INCHES), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    items = list(series.items())
    if len(items) == 1:
        name, points = items[0]
        ax.bar([d for d, _ in points], [c for _, c in points], width=0.8, color="#2b6cb0", label=name)
    else:
        for name, points in items:
            ax.plot([d for d, _ in points], [c for _, c in points], marker="o", markersize=3, linewidth=1.8,
                    label=name)
    ax.set_title(title, fontsize=12)
    ax.set_ylabel("matched stories per day")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_locator(AutoDateLocator(minticks=3, maxticks=10))
    ax.xaxis.set_major_formatter(DateFormatter("%m-%d"))
    ax.grid(axis="y", alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if items:
        ax.legend(loc="upper left", frameon=False, fontsize=9)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
