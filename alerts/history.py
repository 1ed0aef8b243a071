"""Looking back over what the daemon stored: latest matches, story search, health and queue.

Read-only queries over the `stories`, `matches`, `fetch_state` and `outbox` tables for the
/latest, /search, /status and /sources commands, plus a full-text index for /search.

Search uses an SQLite FTS5 table with the trigram tokenizer when the SQLite library has it
(substring matching, so 개성공단 finds 개성공단에서 and "summit" finds "summits"); words of
fewer than three characters, and every word when FTS5 is missing, are matched with LIKE.
The index follows the stories table through a cursor kept in `meta`: the stories stored
since the last search are indexed when the next search comes, so fetching never waits on it.
"""

from __future__ import annotations

import logging
import shlex
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from crawler.store import FetchState, StoredStory, StoryStore, transaction

log = logging.getLogger("newswatch.history")

FTS_CURSOR_KEY = "search_index_cursor"
INDEX_BATCH = 2000
MAX_WORDS = 8


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
        """Stories containing every word (case-insensitive), newest stored first."""
        words = [w for w in words if w][:MAX_WORDS]
        if not words:
            return []
        long_words = [w for w in words if len(w) >= 3] if self.fts else []
        short_words = [w for w in words if w not in long_words]
        like = " AND ".join("(s.title LIKE ? ESCAPE '\\' OR s.text LIKE ? ESCAPE '\\')" for _ in short_words)
        like_args = [arg for w in short_words for arg in (_like(w), _like(w))]
        if long_words:
            self._catch_up()
            query = " AND ".join('"' + w.replace('"', '""') + '"' for w in long_words)
            sql = ("SELECT s.id FROM stories_fts f JOIN stories s ON s.seq = f.rowid WHERE stories_fts MATCH ?"
                   + (f" AND {like}" if like else "") + " ORDER BY s.seq DESC LIMIT ?")
            args = [query, *like_args, limit]
        else:
            sql = f"SELECT s.id FROM stories s WHERE {like} ORDER BY s.seq DESC LIMIT ?"
            args = [*like_args, limit]
        found = (self.store.get(r[0]) for r in self.conn.execute(sql, args).fetchall())
        return [s for s in found if s is not None]

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


def _like(word: str) -> str:
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
