"""Looking back over what the daemon stored: latest matches, story search, health and queue.

What the /latest, /search, /status and /sources commands show, read through the crawler's
`StoryStore` (stories, fetch state, the full-text index) and the `AlertsStore` (matches, outbox).

Search finds the stories holding every word, newest published first. Words are read as
topics read terms (`newswatch.alerts.match.topics.normalize`: case, dashes and spacing do not matter):
a word in Latin (or any non-CJK) letters matches whole words only, so "Kim" does not find
"Kimi" and "summit" does not find "summits" (`summit*` does: any ending); Korean, Chinese
and Japanese words match inside longer words too, so 개성공단 finds 개성공단에서. The
candidates come from an SQLite FTS5 table with the trigram tokenizer when the SQLite
library has it (substring matching), or from LIKE for words of fewer than three
characters and when FTS5 is missing; each candidate is then checked word by word. The
index follows the stories table (`StoryStore.search_candidates`): the stories stored since
the last search are indexed when the next search comes, so fetching never waits on it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from newswatch.alerts.match.topics import LATIN, normalize, script
from newswatch.crawler.store import FetchState, StoredStory, StoryStore

if TYPE_CHECKING:
    from newswatch.alerts.store import AlertsStore

MAX_WORDS = 8
MAX_CANDIDATES = 5000  # substring candidates checked for whole words, newest first, per search


@dataclass(frozen=True)
class MatchedStory:
    stored: StoredStory
    topics: tuple[tuple[str, float], ...]
    matched_at: datetime


@dataclass(frozen=True)
class SourceHealth:
    name: str
    url: str
    enabled: bool
    runtime: bool
    state: FetchState

    @property
    def healthy(self) -> bool:
        return self.state.failures == 0


def search_words(text: str) -> list[str]:
    """The words of a search: whitespace-separated, "quoted phrases" kept together."""
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.replace('"', " ").split()
    return [w for w in (" ".join(w.split()) for w in words) if w][:MAX_WORDS]


class History:
    def __init__(self, store: StoryStore, alerts: AlertsStore) -> None:
        self.store = store
        self.alerts = alerts
        self.fts = store.has_search_index()

    # -- /latest ---------------------------------------------------------------------------
    def latest(self, topics: list[str], limit: int = 5) -> list[MatchedStory]:
        """The most recently matched stories of `topics`, each once: latest match first, and
        among stories matched together, latest published first."""
        out = []
        for story_id, at, scores in self.alerts.latest_matched(topics, limit):
            stored = self.store.get(story_id)
            if stored is not None:
                out.append(MatchedStory(stored, scores, at))
        return out

    # -- /search ---------------------------------------------------------------------------
    def search(self, words: list[str], limit: int = 10) -> list[StoredStory]:
        """Stories containing every word (see the module's docstring), newest published first."""
        wanted = [w for w in (SearchWord.of(w) for w in words[:MAX_WORDS]) if w is not None]
        if not wanted:
            return []
        plain = [w.sql_text for w in wanted]
        indexed = [w for w in plain if len(w) >= 3] if self.fts else []
        scanned = [w for w in plain if w not in indexed]
        found: list[StoredStory] = []
        for story_id, title, text in self.store.search_candidates(indexed, scanned, MAX_CANDIDATES):
            folded = normalize(f"{title}\n{text}")
            if all(w.found_in(folded) for w in wanted) and (stored := self.store.get(story_id)) is not None:
                found.append(stored)
                if len(found) >= limit:
                    break
        return found

    # -- /status and /sources ------------------------------------------------------------------
    def health(self, sources: list[tuple[str, str, bool, bool]]) -> list[SourceHealth]:
        """(name, url, enabled, added at runtime) -> each with its fetch state."""
        return [SourceHealth(name, url, enabled, runtime, self.store.fetch_state(name))
                for name, url, enabled, runtime in sources]

    def queue(self) -> dict[str, int]:
        return self.alerts.outbox_counts()

    def story_count(self) -> int:
        return self.store.count()

    def matched_since(self, since: datetime) -> int:
        return self.alerts.matched_since(since)

    def held_since(self, since: datetime) -> dict[str, int]:
        return self.store.held_since(since)

    def last_fetch(self) -> datetime | None:
        return self.store.last_attempt()


@dataclass(frozen=True)
class SearchWord:
    """One word (or quoted phrase) of a search, normalised; `any_ending` for `word*`."""

    text: str
    any_ending: bool
    sql_text: str  # what the substring look-up in SQL searches for

    @classmethod
    def of(cls, word: str) -> SearchWord | None:
        any_ending = word.endswith("*")
        core = word.rstrip("*").strip()
        text = normalize(core)
        if not text:
            return None
        return cls(text, any_ending, core)

    def found_in(self, folded: str) -> bool:
        """Whether `folded` (normalised text) holds this word: not joined to a letter or digit
        of the same Latin-like script on either side (on the left only for `word*`)."""
        start = folded.find(self.text)
        while start != -1:
            end = start + len(self.text)
            before = folded[start - 1] if start else " "
            after = folded[end] if end < len(folded) else " "
            if not _joined(before, self.text[0]) and (self.any_ending or not _joined(self.text[-1], after)):
                return True
            start = folded.find(self.text, start + 1)
        return False


def _joined(left: str, right: str) -> bool:
    """Two neighbouring characters of one Latin-like word (CJK words match inside others)."""
    return script(left) == LATIN and script(right) == LATIN

