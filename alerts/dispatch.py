"""Deciding: stored stories -> topic scores -> alerts queued for the chats that want them.

The dispatcher reads stories in storage order after a cursor kept in the database, scores
each one, records the matches and queues outbox rows for every subscribed chat (or the
console) whose threshold the story passes, and advances the cursor, all in one transaction
per batch. A crash between batches loses nothing and repeats nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from alerts.matcher import Matcher, TopicScore
from alerts.outbox import Outbox
from alerts.subscriptions import CONSOLE_CHAT, Subscriptions
from crawler.clock import Clock
from crawler.store import StoryStore, transaction

log = logging.getLogger("newswatch.dispatch")

CURSOR_KEY = "dispatch_cursor"


@dataclass
class DispatchSummary:
    stories: int = 0
    matched: int = 0
    queued: int = 0


class Dispatcher:
    def __init__(self, store: StoryStore, subscriptions: Subscriptions, outbox: Outbox, matcher: Matcher,
                 clock: Clock, *, console: bool) -> None:
        self.store = store
        self.subscriptions = subscriptions
        self.outbox = outbox
        self.matcher = matcher
        self.clock = clock
        self.console = console

    def run(self, batch: int = 500) -> DispatchSummary:
        """Process every story stored since the last run."""
        summary = DispatchSummary()
        while True:
            cursor = int(self.store.get_meta(CURSOR_KEY, "0"))
            stored = self.store.stories_after(cursor, batch)
            if not stored:
                return summary
            now = self.clock.now()
            with transaction(self.store.conn):
                for item in stored:
                    story = item.story
                    scores = self.matcher.score(story.title, story.text)
                    passed = [s for s in scores if s.passed]
                    summary.stories += 1
                    if not passed:
                        continue
                    summary.matched += 1
                    for s in passed:
                        self.outbox.record_match(story.id, s.topic, s.score, s.terms, now)
                    summary.queued += self._queue(story.id, scores, now)
                self.store.set_meta(CURSOR_KEY, str(stored[-1].seq))

    def _queue(self, story_id: str, scores: list[TopicScore], now) -> int:
        by_topic = {s.topic: s for s in scores}
        passed = [s for s in scores if s.passed]
        queued = 0
        if self.console:
            terms = _terms(passed)
            queued += self.outbox.enqueue(CONSOLE_CHAT, story_id, [(s.topic, s.score) for s in passed], terms, now)
        for chat_id, wanted in self.subscriptions.subscribers(by_topic).items():
            hits = []
            for topic, own_threshold in wanted.items():
                s = by_topic[topic]
                ok = s.passed if own_threshold is None else s.score >= own_threshold and _context_ok(s)
                if ok:
                    hits.append(s)
            if hits:
                queued += self.outbox.enqueue(chat_id, story_id, [(s.topic, s.score) for s in hits], _terms(hits), now)
        return queued


def _context_ok(score: TopicScore) -> bool:
    """A chat's own threshold replaces the topic's, but the topic's required context still holds."""
    return getattr(score, "context_ok", score.passed)


def _terms(scores: list[TopicScore]) -> list[str]:
    seen: dict[str, None] = {}
    for s in scores:
        for t in s.terms:
            seen.setdefault(t, None)
    return list(seen)[:12]
