"""`newswatch crawl` (one pass) as a person sees it: progress while sources are fetched, then a summary.

On a terminal: a progress bar that advances as each source is recorded, then summary tables
(counts, failures, new stories). Anywhere else (a pipe, a log file, cron): one plain line per
source as it is recorded, then the summary as plain `key: value` lines, easy to grep.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from newswatch.alerts.deliver.format import plural
from newswatch.crawler.outcomes import FetchOutcome, held_note
from newswatch.crawler.story import Story

if TYPE_CHECKING:
    from newswatch.daemon import CycleReport, Daemon

NEW_STORIES_SHOWN = 50


def describe_outcome(outcome: FetchOutcome, new: list[Story]) -> tuple[str, str]:
    """("fetched", "HTTP 200, 12 stories, 3 new") and the like, for one source's outcome."""
    if not outcome.ok:
        return "failed", outcome.error
    if outcome.status == 304:
        return "unchanged", "304 Not Modified"
    detail = f"HTTP {outcome.status}, {plural(len(outcome.stories), 'story')}, {len(new)} new"
    if outcome.note:
        detail += f" ({outcome.note})"
    return "fetched", detail


class CrawlProgress:
    """An `OutcomeRecorder` observer that shows each source as it is recorded."""

    def __init__(self, out: TextIO, total: int, *, terminal: bool | None = None) -> None:
        self.console = Console(file=out, force_terminal=terminal, highlight=False)
        self.terminal = self.console.is_terminal
        self.out = out
        self.total = total
        self.seen: set[str] = set()
        self.progress: Progress | None = None
        self.task = None
        self._streams: list[tuple[logging.StreamHandler, object]] = []

    def __enter__(self) -> CrawlProgress:
        if self.terminal and self.total:
            self.progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), console=self.console, transient=False,
            )
            self.task = self.progress.add_task("fetching", total=self.total)
            self.progress.start()
            self._route_logs()
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish()

    def fetched(self, outcome: FetchOutcome, new: list[Story]) -> None:
        name = outcome.source.name
        if outcome.article or name in self.seen:
            return
        self.seen.add(name)
        verb, detail = describe_outcome(outcome, new)
        if self.progress is not None:
            self.progress.update(self.task, advance=1, description=f"{verb} {name}")
            if len(self.seen) >= self.total:
                self._finish()
        elif not self.terminal:
            self.out.write(f"  {verb:<9} {name}: {detail}\n")
            self.out.flush()

    def _finish(self) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=self.total, description="done")
            self.progress.stop()
            self.progress = None
            self._restore_logs()

    def _route_logs(self) -> None:
        """While the bar is drawn, log lines go through rich so they print above it."""
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                self._streams.append((handler, handler.setStream(_LogStream(self.console))))

    def _restore_logs(self) -> None:
        for handler, stream in self._streams:
            handler.setStream(stream)
        self._streams.clear()


class _LogStream:
    def __init__(self, console: Console) -> None:
        self.console = console

    def write(self, text: str) -> int:
        if text.strip():
            self.console.print(text.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        pass


def render_report(report: CycleReport, console: Console) -> None:
    c = report.crawl
    if not console.is_terminal:
        print(f"sources: {c.sources}  ok: {c.ok}  unchanged (304): {c.not_modified}  failed: {c.failed}", file=console.file)
        print(f"stories: {c.stories_seen} seen, {c.stories_new} new{held_note(c)}; matched: {report.dispatch.matched};"
              f" alerts queued: {report.dispatch.queued}, sent: {report.delivery.sent}", file=console.file)
        for name, error in sorted(report.failures.items()):
            print(f"  failed  {name}: {error}", file=console.file)
        for story in c.new[:NEW_STORIES_SHOWN]:
            print(f"  new     [{story.source}] {story.title}", file=console.file)
        return
    table = Table(title=f"Crawl summary ({c.seconds:.1f}s)", title_justify="left")
    for column in ("sources", "ok", "unchanged (304)", "failed", "stories seen", "new", "matched", "queued", "sent"):
        table.add_column(column, justify="right")
    table.add_row(str(c.sources), str(c.ok), str(c.not_modified), f"[red]{c.failed}[/]" if c.failed else "0",
                  str(c.stories_seen), str(c.stories_new), str(report.dispatch.matched), str(report.dispatch.queued),
                  str(report.delivery.sent))
    console.print(table)
    if c.too_old or c.baseline:
        console.print(f"Stored without alerting: {held_note(c)[2:]}", markup=False, highlight=False)
    if report.failures:
        failures = Table(title="Failed sources", title_justify="left")
        failures.add_column("source")
        failures.add_column("problem", overflow="fold")
        for name, error in sorted(report.failures.items()):
            failures.add_row(name, error)
        console.print(failures)
    if c.new:
        new = Table(title=f"New stories ({len(c.new)})", title_justify="left")
        new.add_column("source")
        new.add_column("title", overflow="fold")
        for story in c.new[:NEW_STORIES_SHOWN]:
            new.add_row(story.source, story.title)
        if len(c.new) > NEW_STORIES_SHOWN:
            new.add_row("", f"... and {len(c.new) - NEW_STORIES_SHOWN} more")
        console.print(new)


def crawl_once(daemon: Daemon, out: TextIO, *, terminal: bool | None = None) -> int:
    """One pass over every due source with progress, then the summary; 0, or 1 when every
    source failed."""
    total = len(daemon._fetchable(daemon.sources))
    if not total:
        print(f"nothing to fetch: {plural(len(daemon.sources), 'source')}, none due (failing sources wait for their backoff)",
              file=out)
    with CrawlProgress(out, total, terminal=terminal) as progress:
        daemon.recorder.observers.append(progress.fetched)
        report = asyncio.run(daemon.run_once())
    render_report(report, progress.console)
    return 1 if report.crawl.sources and report.crawl.failed == report.crawl.sources else 0
