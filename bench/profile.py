"""Top functions of a profile, as a markdown table.

- cProfile (`-o FILE` of `python -m cProfile`): the daemon's main process only, functions
  by own time (`tottime`) with their cumulative time.
- py-spy (`record --format raw`, collapsed stacks, `--subprocesses`): every process of the
  tree, idle threads left out; the share of samples per pipeline stage (`STAGES`), and per
  function (file and name, lines merged) the share of samples where it is running itself
  ("self") and where it is on the stack ("total"). py-spy names the product's files
  without their folder (`store.py`), which is what the stage patterns match.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from bench.harness import markdown

_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _short(path: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _function(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{match.group('name')} ({_short(match.group('file'))})"


STAGES = (
    ("Scrapy's per-response generator check (warn_on_generator_with_return_value)", ("warn_on_generator_with_return_value",)),
    ("feed parsing (newswatch.crawler.parse.feeds.parse_feed, feedparser)", ("parse_feed (", "feedparser/")),
    ("story store and fetch state (crawler/store.py)", ("(store.py:",)),
    ("matching and dispatch (alerts/dispatch.py, alerts/matcher.py)", ("(dispatch.py:", "(matcher.py:")),
    ("delivery (alerts/notifier.py, alerts/outbox.py)", ("(notifier.py:", "(outbox.py:")),
    ("metrics (prometheus_client, alerts/metrics.py)", ("prometheus_client/", "(metrics.py:")),
    ("HTTP download (Scrapy download handlers, aiohttp client)", ("scrapy/core/downloader/", "aiohttp/")),
    ("Scrapy engine, scheduler, middlewares, signals (the rest of Scrapy)", ("scrapy/", "twisted/", "pydispatch/")),
    ("Telegram client (python-telegram-bot, httpx)", ("telegram/", "httpx/", "httpcore/")),
    ("scheduler (APScheduler)", ("apscheduler/",)),
    ("module imports (parse workers starting on first use)", ("_find_and_load",)),
    ("parse pool traffic (multiprocessing, pickling)", ("multiprocessing/", "concurrent/futures/")),
)


def stage_breakdown(path: Path) -> list[tuple[str, int]]:
    """Samples per pipeline stage: each stack goes to the first stage (in STAGES order) that
    any of its frames belongs to; stacks in none go to "event loop and other"."""
    counts: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        for name, needles in STAGES:
            if any(needle in stack for needle in needles):
                counts[name] += int(count_text)
                break
        else:
            counts["event loop and other"] += int(count_text)
    return counts.most_common()


def summarize_pyspy(path: Path, top: int) -> str:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";") if not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    if not samples:
        return "(no samples)"
    rows = [[name, f"{own[name] / samples:.1%}", f"{total[name] / samples:.1%}"] for name, _ in own.most_common(top)]
    table = markdown(["function (self time order)", "self", "total"], rows)
    inclusive = [[name, f"{count / samples:.1%}"] for name, count in total.most_common(top * 2)
                 if not name.startswith(("<module>", "_run_module", "run (asyncio", "run_until_complete", "run_forever",
                                         "_run_once", "_run (asyncio", "main (", "main(", "_run_code", "_main (",
                                         "_serve_one", "BaseProcess", "Runner.run", "BaseEventLoop.run",
                                         "cmd_run"))][:top]
    stages = [[name, f"{count / samples:.1%}"] for name, count in stage_breakdown(path)]
    return (f"{samples:,} samples of running code\n\nBy stage:\n\n" + markdown(["stage", "share of samples"], stages)
            + "\n\nFunctions by own time:\n\n" + table + "\n\nOn the stack (inclusive):\n\n"
            + markdown(["function", "total"], inclusive))


def summarize_cprofile(path: Path, top: int) -> str:
    import pstats

    stats = pstats.Stats(str(path))
    entries = []
    for (file, line, name), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        entries.append((tottime, cumtime, ncalls, f"{name} ({_short(file)}:{line})"))
    total = sum(e[0] for e in entries) or 1.0
    rows = [[name, f"{ncalls:,}", f"{tottime:.2f}", f"{tottime / total:.1%}", f"{cumtime:.2f}"]
            for tottime, cumtime, ncalls, name in sorted(entries, reverse=True)[:top]]
    return (f"{total:.1f} s of profiled time in the main process\n\n"
            + markdown(["function", "calls", "own s", "own share", "cumulative s"], rows))


def summarize_profile(kind: str, path: Path, top: int = 25) -> str:
    if not path.exists():
        return f"(no profile written at {path})"
    if kind == "cprofile":
        return summarize_cprofile(path, top)
    return summarize_pyspy(path, top)
