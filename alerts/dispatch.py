"""Deciding: stored stories -> topic scores -> alerts queued for the chats that want them.

The dispatcher reads stories in storage order after a cursor kept in the database, scores
each one, records the matches and queues outbox rows for every subscribed chat (or the
console) whose threshold the story passes, and advances the cursor, all in one transaction
per batch. A crash between batches loses nothing and repeats nothing.

A chat's own threshold replaces the topic's in both directions (a story below the topic's
threshold reaches a chat that lowered it), but the topic's required groups still hold. A
chat whose votes call for a higher threshold (`Votes.raised_thresholds`, read again whenever
the votes change) gets only the stories that reach that one too.
Each story is also scored against every chat's personal watches (`Watches.matcher()`, whose
shards are recompiled when a watch is added or removed; the daemon has them compiled in a
worker thread before each step); a watch queues an alert for its own chat only, merged with
that chat's topic hits into one alert.

A story stored as held (`newswatch.crawler.store`: published before its source's `alert_max_age`, or
undated on its source's first fetch) has its matches recorded, so that /latest, stats and
export show it, but alerts no chat.

A story that would alert somebody is first compared with the recent alerting stories
(`newswatch.alerts.match.clustering`): when it reports the same event as one of them, it alerts only the
chats that have had nothing from that event, and shows up as "also reported by" instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from newswatch.alerts.deliver.outbox import Outbox
from newswatch.alerts.feedback import Votes
from newswatch.alerts.match.blended import BlendedMatcher
from newswatch.alerts.match.clustering import StoryClusterer
from newswatch.alerts.match.matcher import Matcher, TopicScore
from newswatch.alerts.match.watches import Watch, Watches
from newswatch.alerts.story_clusters import StoryClusters, join_cluster
from newswatch.alerts.subscriptions import CONSOLE_CHAT, Subscriptions
from newswatch.crawler.clock import Clock
from newswatch.crawler.store import StoryStore

log = logging.getLogger("newswatch.dispatch")

CURSOR_KEY = "dispatch_cursor"


@dataclass
class DispatchSummary:
    stories: int = 0
    matched: int = 0
    queued: int = 0
    more: bool = False  # a step ended with stories still waiting
    clustered: int = 0  # stories recognised as another outlet's report of an event already alerted
    held: int = 0  # stories that may not alert (too old, or undated on a source's first fetch)
    topics: dict[str, int] = field(default_factory=dict)  # stories that passed each topic


class Dispatcher:
    def __init__(self, store: StoryStore, subscriptions: Subscriptions, outbox: Outbox,
                 matcher: Matcher | BlendedMatcher, clock: Clock, *, console: bool, watches: Watches | None = None,
                 clusters: StoryClusters | None = None, clusterer: StoryClusterer | None = None,
                 votes: Votes | None = None) -> None:
        self.store = store
        self.clusters = clusters
        self.clusterer = clusterer or StoryClusterer()
        self.subscriptions = subscriptions
        self.outbox = outbox
        self.matcher = matcher
        self.clock = clock
        self.console = console
        self.watches = watches
        self.votes = votes
        self._raised: tuple[tuple, dict[tuple[int, str], float]] = ((), {})

    def raised_thresholds(self) -> dict[tuple[int, str], float]:
        """(chat, topic) -> the threshold the chat's votes call for; computed again only when a
        vote was given or changed since the last time."""
        if self.votes is None:
            return {}
        state = self.votes.state()
        if state != self._raised[0]:
            self._raised = (state, self.votes.raised_thresholds())
        return self._raised[1]

    def run(self, batch: int = 500, *, batches: int | None = None) -> DispatchSummary:
        """Process the stories stored since the last run: all of them, or at most `batches`
        transactions of `batch` stories (the daemon takes small steps so that the event loop,
        and the Telegram sends waiting on it, are never held up for long)."""
        summary = DispatchSummary()
        while batches is None or batches > 0:
            if batches is not None:
                batches -= 1
            cursor = int(self.store.get_meta(CURSOR_KEY, "0"))
            stored = self.store.stories_after(cursor, batch)
            summary.more = len(stored) == batch
            if not stored:
                return summary
            now = self.clock.now()
            watch_matcher = self.watches.matcher() if self.watches is not None else None
            raised = self.raised_thresholds()
            matches: list[tuple[str, str, float, list[str], datetime]] = []
            with self.store.transaction():
                if self.clusters is not None:
                    self.clusters.forget_keys(now - 2 * self.clusterer.window)
                for item in stored:
                    story = item.story
                    scores = self.matcher.score(story.title, story.text)
                    passed = [s for s in scores if s.passed]
                    watched = watch_matcher.score(story.title, story.text) if watch_matcher else []
                    summary.stories += 1
                    for s in passed:
                        matches.append((story.id, s.topic, s.score, s.terms, now))
                        summary.topics[s.topic] = summary.topics.get(s.topic, 0) + 1
                    if item.held:  # stored and matched (for /latest, stats, export), never alerted
                        summary.held += 1
                        summary.matched += bool(passed)
                        continue
                    if not passed and not watched and not any(_context_ok(s) and s.score > 0 for s in scores):
                        continue
                    recipients = self._recipients(scores, watched, raised)
                    # only a story that would alert somebody is clustered (and so indexed)
                    already = self._join_cluster(item.story, item.fetched) if recipients else set()
                    if already:
                        summary.clustered += 1
                    queued = self._enqueue(story.id, recipients, now, skip=already)
                    if passed or queued:
                        summary.matched += 1
                    summary.queued += queued
                self.outbox.record_matches(matches)
                self.store.set_meta(CURSOR_KEY, str(stored[-1].seq))
        return summary

    def _join_cluster(self, story, seen) -> set[int]:
        """Index the story; if it reports an event already alerted, the chats alerted for it."""
        if self.clusters is None:
            return set()
        cluster = join_cluster(self.clusters, self.clusterer, story.id, story.source, story.title, story.text, seen)
        return self.clusters.chats_alerted(cluster) if cluster else set()

    def _recipients(self, scores: list[TopicScore], watched: list[tuple[Watch, TopicScore]],
                    raised: dict[tuple[int, str], float]) -> dict[int, list[tuple[str, TopicScore]]]:
        """The chats (and the console) this story would alert, each with its (label, score) hits;
        `raised` holds the thresholds chats' votes call for."""
        by_topic = {s.topic: s for s in scores if _context_ok(s) and s.score > 0}
        hits: dict[int, list[tuple[str, TopicScore]]] = {}
        if self.console:
            for s in scores:
                if s.passed:
                    hits.setdefault(CONSOLE_CHAT, []).append((s.topic, s))
        for chat_id, wanted in self.subscriptions.subscribers(by_topic).items():
            for topic, own_threshold in wanted.items():
                s = by_topic[topic]
                ok = s.passed if own_threshold is None else s.score >= own_threshold
                if ok and s.score < raised.get((chat_id, topic), s.score):
                    ok = False
                if ok:
                    hits.setdefault(chat_id, []).append((s.topic, s))
        if watched:
            owners = self.subscriptions.active_ids(w.chat_id for w, _ in watched)
            for watch, s in watched:
                if watch.chat_id in owners:
                    hits.setdefault(watch.chat_id, []).append((watch.label, s))
        return hits

    def _enqueue(self, story_id: str, recipients: dict[int, list[tuple[str, TopicScore]]], now,
                 skip: set[int] = frozenset()) -> int:
        queued = 0
        for chat_id, chat_hits in recipients.items():
            if chat_id in skip:
                continue
            queued += self.outbox.enqueue(chat_id, story_id, [(label, s.score) for label, s in chat_hits],
                                          _terms([s for _, s in chat_hits]), now)
        return queued


def _context_ok(score: TopicScore) -> bool:
    """A chat's own threshold replaces the topic's, but the topic's required groups still hold."""
    return not score.missing


def _terms(scores: list[TopicScore]) -> list[str]:
    seen: dict[str, None] = {}
    for s in scores:
        for t in s.terms:
            seen.setdefault(t, None)
    return list(seen)[:12]
