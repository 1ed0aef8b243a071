"""Votes on alerts: the 👍/👎 buttons under each alert, what they imply, and labels made of them.

Every single alert sent to Telegram carries two buttons whose callback data names its outbox
row (`vote:+:<id>`, `vote:-:<id>`). A tap stores one vote per (chat, story, user) in `votes`,
with the topics the alert carried and the time; a later tap by the same user replaces it. In
a group everyone may vote, once each. `Votes.summary()` gives, per topic, the 👍 and 👎 a chat
gave and the precision they imply, 👍/(👍+👎); `/feedback` shows it.

Votes also move a chat's thresholds (`Votes.raised_thresholds`, `raised_threshold`). Votes
exist only for alerts that were sent, whose scores were at or above the chat's threshold: they
can show that the threshold is too low (the alerts the chat disliked scored low), never that it
is too high. So once a chat has decided `MIN_VOTES` stories of a topic (👍 or 👎 by majority) and
their precision is below `TARGET_PRECISION`, its threshold for the topic becomes the lowest
score, among the voted alerts, from which up the precision reaches the target, provided at
least `MIN_ABOVE` voted alerts remain above it; the dispatcher applies it when it is above the
chat's own threshold (or the topic's). 20 votes: with fewer, one vote moves the precision by
more than five points, and a cut resting on a handful of stories would follow noise. It is
read from the votes and the scores the outbox stored with each alert, when the dispatcher
runs, so a chat that changes its mind changes it back.

`Votes.labels()` turns the votes into labelled stories in the format `newswatch eval` reads
(see `newswatch.alerts.match.evaluation`): a 👍 says the alert's topics were right (label 1), a 👎 that they
were wrong (label 0). When several people voted on a story, the majority decides each topic;
a tie leaves the topic unlabelled, and a story left with no label is not written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from newswatch.alerts.store import AlertsStore

UP, DOWN = 1, -1
VOTE_PREFIX = "vote:"
SIGNS = {"+": UP, "-": DOWN}
RECENT_DOWN = 5
MIN_VOTES = 20  # decided stories of a topic before the votes move a chat's threshold
MIN_ABOVE = 10  # voted alerts that must remain at or above a raised threshold
TARGET_PRECISION = 0.8

def raised_threshold(scored: Iterable[tuple[float, bool]]) -> float | None:
    """The threshold a chat's votes on one topic call for: (alert score, 👍?) per decided
    story -> the lowest score from which the precision reaches `TARGET_PRECISION` with at least
    `MIN_ABOVE` stories above, or None (too few votes, precision high enough, or no such score)."""
    scored = sorted(scored)
    if len(scored) < MIN_VOTES:
        return None
    good = sum(up for _, up in scored)
    total = len(scored)
    if good / total >= TARGET_PRECISION:
        return None
    for i, (score, up) in enumerate(scored):  # `good` counts the 👍 of the stories from i on
        if not i or scored[i - 1][0] != score:
            if total - i < MIN_ABOVE:
                return None
            if good / (total - i) >= TARGET_PRECISION:
                return score
        good -= up
    return None


@dataclass(frozen=True)
class TopicFeedback:
    """A chat's votes on the alerts of one topic."""
    topic: str
    up: int
    down: int

    @property
    def precision(self) -> float | None:
        total = self.up + self.down
        return self.up / total if total else None


def vote_data(sign: int, outbox_id: int) -> str:
    """The callback data of a vote button (at most 64 bytes: an outbox id is a number)."""
    return f"{VOTE_PREFIX}{'+' if sign == UP else '-'}:{outbox_id}"


def parse_vote_data(data: str) -> tuple[int, int] | None:
    """(vote, outbox id) from a button's callback data; None when it is not a vote button."""
    parts = data.split(":")
    if len(parts) != 3 or f"{parts[0]}:" != VOTE_PREFIX or parts[1] not in SIGNS or not parts[2].isdigit():
        return None
    return SIGNS[parts[1]], int(parts[2])


class Votes:
    """The votes (one per chat, story and user) and what they imply, on an `AlertsStore`."""

    def __init__(self, store: AlertsStore) -> None:
        self.store = store

    def record(self, chat_id: int, story_id: str, user_id: int, vote: int, topics: Iterable[str],
               at: datetime) -> int | None:
        """Store the user's vote on the story in this chat, replacing an earlier one; return the
        earlier vote (None when there was none)."""
        if vote not in (UP, DOWN):
            raise ValueError(f"a vote is {UP} or {DOWN}, not {vote!r}")
        return self.store.record_vote(chat_id, story_id, user_id, vote, topics, at)

    def counts(self, chat_id: int, story_id: str) -> tuple[int, int]:
        """(👍, 👎) on one story in one chat."""
        return self.store.vote_counts(chat_id, story_id)

    def summary(self, chat_id: int) -> list[TopicFeedback]:
        """Per topic the chat's alerts carried: its 👍 and 👎 (one per user and story)."""
        tally: dict[str, list[int]] = {}
        for topics, vote in self.store.votes_of_chat(chat_id):
            for topic in topics:
                counts = tally.setdefault(topic, [0, 0])
                counts[0 if vote == UP else 1] += 1
        return [TopicFeedback(t, up, down) for t, (up, down) in sorted(tally.items())]

    def state(self) -> tuple[int, str | None]:
        """(votes, when the latest was given): it changes whenever a vote is given or changed."""
        return self.store.votes_state()

    def changed_since(self, at: datetime | None) -> int:
        """How many votes were given or changed after `at` (all of them when None)."""
        return self.store.votes_changed_since(at)

    def scored(self, chat_id: int | None = None) -> dict[tuple[int, str], list[tuple[float, bool]]]:
        """(chat, topic) -> (the alert's stored score, 👍?) per story the chat decided by
        majority (ties left out); the scores are those the outbox kept with each alert."""
        out: dict[tuple[int, str], list[tuple[float, bool]]] = {}
        for chat, total, topics in self.store.voted_alerts(chat_id):
            if not total:
                continue
            for topic, score in topics:
                out.setdefault((chat, topic), []).append((float(score), total > 0))
        return out

    def raised_thresholds(self, chat_id: int | None = None) -> dict[tuple[int, str], float]:
        """(chat, topic) -> the threshold the chat's votes call for (see `raised_threshold`)."""
        raised = {}
        for key, scored in self.scored(chat_id).items():
            cut = raised_threshold(scored)
            if cut is not None:
                raised[key] = cut
        return raised

    def recent_down(self, chat_id: int, limit: int = RECENT_DOWN) -> list[str]:
        """Titles of the stories most recently marked 👎 in the chat (newest first)."""
        return self.store.recent_down(chat_id, limit)

    def migrate_chat(self, old_id: int, new_id: int) -> None:
        """A group became a supergroup: its votes move with it."""
        self.store.move_votes(old_id, new_id)

    def labels(self, chat_id: int | None = None, topics: Iterable[str] | None = None) -> Iterator[dict]:
        """One labelled story per voted story still stored (of one chat, or of all), oldest vote
        first, as `newswatch eval` reads them; `topics`, when given, limits the labels to those."""
        wanted = set(topics) if topics is not None else None
        # one vote per person and story: the latest, when the same person voted in several chats
        latest = {(row["story_id"], row["user_id"]): row for row in self.store.voted_stories(chat_id)}
        stories: dict[str, dict] = {}
        tallies: dict[str, dict[str, int]] = {}
        for row in latest.values():
            story_id = row["story_id"]
            stories.setdefault(story_id, _label_row(row))
            tally = tallies.setdefault(story_id, {})
            for topic in row["topics"]:
                if wanted is None or topic in wanted:
                    tally[topic] = tally.get(topic, 0) + row["vote"]
        for story_id, story in stories.items():
            decided = {t: 1 if total > 0 else 0 for t, total in tallies[story_id].items() if total}
            if decided:
                yield {**story, **decided}


def _label_row(row: dict[str, Any]) -> dict:
    return {"id": row["story_id"], "origin": row["source"], "key": row["url"], "lang": row["language"],
            "title": row["title"], "text": row["text"], "published": row["published"], "unsure": False}


def export_labels(votes: Votes, out: TextIO, *, chat_id: int | None = None,
                  topics: Iterable[str] | None = None) -> int:
    """Write `votes.labels(...)` as JSON Lines to `out`; return how many stories were written."""
    count = 0
    for row in votes.labels(chat_id, topics):
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    return count
