"""Looking back over what the daemon stored: latest matches, story search, health and queue.

Read-only queries over the `stories`, `matches`, `fetch_state` and `outbox` tables for the
/latest, /search, /status and /sources commands, plus a full-text index for /search.

Search finds the stories holding every word, newest published first. Words are read as
topics read terms (`newswatch.alerts.match.topics.normalize`: case, dashes and spacing do not matter):
a word in Latin (or any non-CJK) letters matches whole words only, so "Kim" does not find
"Kimi" and "summit" does not find "summits" (`summit*` does: any ending); Korean, Chinese
and Japanese words match inside longer words too, so 개성공단 finds 개성공단에서. The
candidates come from an SQLite FTS5 table with the trigram tokenizer when the SQLite
library has it (substring matching), or from LIKE for words of fewer than three
characters and when FTS5 is missing; each candidate is then checked word by word. The
index follows the stories table through a cursor kept in `meta`: the stories stored since
the last search are indexed when the next search comes, so fetching never waits on it.
"""

from __future__ import annotations

import logging
import shlex
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from newswatch.alerts.match.topics import LATIN, normalize, script
from newswatch.crawler.store import FetchState, StoredStory, StoryStore, transaction

log = logging.getLogger("newswatch.history")

FTS_CURSOR_KEY = "search_index_cursor"
INDEX_BATCH = 2000
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
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.store = StoryStore(conn)
        self.fts = self._create_index()

    def _create_index(self) -> bool:
        try:
            self.conn.execute(
                "CREATE VIRTUAL TABLE IF NOT EXISTS stories_fts USING fts5("
                "title, text, content='stories', content_rowid='seq', tokenize='trigram')"
            )
            return True
        except sqlite3.OperationalError as exc:
            log.info("full-text search unavailable (%s); /search uses LIKE", exc)
            return False

    # -- /latest ---------------------------------------------------------------------------
    def latest(self, topics: list[str], limit: int = 5) -> list[MatchedStory]:
        """The most recently matched stories of `topics`, each once: latest match first, and
        among stories matched together, latest published first."""
        if not topics:
            return []
        marks = ",".join("?" * len(topics))
        rows = self.conn.execute(
            f"SELECT m.story_id, MAX(m.matched_at) AS at, MAX(s.published) AS published FROM matches m"
            f" JOIN stories s ON s.id = m.story_id WHERE m.topic IN ({marks})"
            f" GROUP BY m.story_id ORDER BY at DESC, published DESC LIMIT ?",
            [*topics, limit],
        ).fetchall()
        out = []
        for row in rows:
            stored = self.store.get(row["story_id"])
            if stored is None:
                continue
            scores = self.conn.execute(
                f"SELECT topic, score FROM matches WHERE story_id = ? AND topic IN ({marks}) ORDER BY score DESC",
                [row["story_id"], *topics],
            )
            out.append(MatchedStory(stored, tuple((r[0], float(r[1])) for r in scores),
                                    datetime.fromisoformat(row["at"])))
        return out

    # -- /search ---------------------------------------------------------------------------
    def search(self, words: list[str], limit: int = 10) -> list[StoredStory]:
        """Stories containing every word (see the module's docstring), newest published first."""
        wanted = [w for w in (SearchWord.of(w) for w in words[:MAX_WORDS]) if w is not None]
        if not wanted:
            return []
        found: list[StoredStory] = []
        for story_id, title, text in self.conn.execute(*self._candidates(wanted)):
            folded = normalize(f"{title}\n{text}")
            if all(w.found_in(folded) for w in wanted) and (stored := self.store.get(story_id)) is not None:
                found.append(stored)
                if len(found) >= limit:
                    break
        return found

    def _candidates(self, wanted: list[SearchWord]) -> tuple[str, list]:
        """SQL for the stories holding every word as a substring, newest published first."""
        plain = [w.sql_text for w in wanted]
        long_words = [w for w in plain if len(w) >= 3] if self.fts else []
        short_words = [w for w in plain if w not in long_words]
        like = " AND ".join("(s.title LIKE ? ESCAPE '\\' OR s.text LIKE ? ESCAPE '\\')" for _ in short_words)
        like_args = [arg for w in short_words for arg in (_like(w), _like(w))]
        order = " ORDER BY s.published DESC, s.seq DESC LIMIT ?"
        if long_words:
            self._catch_up()
            query = " AND ".join('"' + w.replace('"', '""') + '"' for w in long_words)
            sql = ("SELECT s.id, s.title, s.text FROM stories_fts f JOIN stories s ON s.seq = f.rowid"
                   " WHERE stories_fts MATCH ?" + (f" AND {like}" if like else "") + order)
            return sql, [query, *like_args, MAX_CANDIDATES]
        return f"SELECT s.id, s.title, s.text FROM stories s WHERE {like}" + order, [*like_args, MAX_CANDIDATES]

    def _catch_up(self) -> None:
        """Index the stories stored since the last search."""
        while True:
            cursor = int(self.store.get_meta(FTS_CURSOR_KEY, "0"))
            last = self.conn.execute(
                "SELECT MAX(seq) FROM (SELECT seq FROM stories WHERE seq > ? ORDER BY seq LIMIT ?)",
                (cursor, INDEX_BATCH),
            ).fetchone()[0]
            if last is None:
                return
            with transaction(self.conn):
                self.conn.execute(
                    "INSERT INTO stories_fts (rowid, title, text)"
                    " SELECT seq, title, text FROM stories WHERE seq > ? AND seq <= ?", (cursor, last),
                )
                self.store.set_meta(FTS_CURSOR_KEY, str(last))

    # -- /status and /sources ------------------------------------------------------------------
    def health(self, sources: list[tuple[str, str, bool, bool]]) -> list[SourceHealth]:
        """(name, url, enabled, added at runtime) -> each with its fetch state."""
        return [SourceHealth(name, url, enabled, runtime, self.store.fetch_state(name))
                for name, url, enabled, runtime in sources]

    def queue(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state")
        return {r[0]: r[1] for r in rows}

    def story_count(self) -> int:
        return self.store.count()

    def matched_since(self, since: datetime) -> int:
        return self.conn.execute(
            "SELECT COUNT(DISTINCT story_id) FROM matches WHERE matched_at >= ?",
            (since.astimezone(UTC).isoformat(),),
        ).fetchone()[0]

    def held_since(self, since: datetime) -> dict[str, int]:
        return self.store.held_since(since)

    def last_fetch(self) -> datetime | None:
        row = self.conn.execute("SELECT MAX(last_attempt) FROM fetch_state").fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None


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


def _like(word: str) -> str:
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
