"""Which alerting stories report the same event: sketches and cluster membership in SQLite.

Only stories that alert (or could alert a chat) are indexed. Each indexed story's look-up
keys (`newswatch.alerts.match.clustering.Sketch.keys`) go into `cluster_keys`, so the candidates of a new story
are found by index look-ups of its keys, never by comparing it with every recent story; keys older
than twice the clusterer's window are purged. A story that joins an existing cluster alerts
only the chats that have not had an alert from that cluster, and the cluster's other outlets
are shown as "also reported by" on alerts not yet sent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime

from newswatch.alerts.match.clustering import Sketch, StoryClusterer
from newswatch.crawler.store import add_missing_columns, db_time

MAX_STORIES = 64  # stories looked at for a new one: those sharing most look-up keys with it
MAX_CANDIDATES = 16  # clusters compared with a new story: those whose stories share most keys with it

_SCHEMA = """
CREATE TABLE IF NOT EXISTS story_clusters (
    story_id   TEXT PRIMARY KEY,
    cluster_id TEXT NOT NULL,
    source     TEXT NOT NULL,
    signature  BLOB NOT NULL,
    seen       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS story_clusters_seen ON story_clusters(seen);
CREATE INDEX IF NOT EXISTS story_clusters_cluster ON story_clusters(cluster_id);
CREATE TABLE IF NOT EXISTS cluster_keys (
    key        INTEGER NOT NULL,
    story      INTEGER NOT NULL,  -- story_clusters.rowid
    PRIMARY KEY (key, story)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cluster_keys_story ON cluster_keys(story);
"""


class StoryClusters:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._forgotten_until: str | None = None
        conn.executescript(_SCHEMA)
        add_missing_columns(conn, "story_clusters", {"title": "BLOB NOT NULL DEFAULT x'00000000'"})

    def candidates(self, keys: Iterable[int], since: datetime) -> list[tuple[str, Sketch, datetime]]:
        """(cluster_id, sketch, seen) of the clusters with a story seen since `since` that shares
        a look-up key with `keys`: for each, its story sharing most keys, those sharing most
        first (at most `MAX_CANDIDATES`)."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return []
        marks = ",".join("?" * len(keys))
        # the stories sharing most keys (an index-only scan of the keys), then their rows
        shared = dict(self.conn.execute(
            f"SELECT story, COUNT(*) AS n FROM cluster_keys WHERE key IN ({marks}) GROUP BY story"
            " ORDER BY n DESC LIMIT ?", (*keys, MAX_STORIES)).fetchall())
        if not shared:
            return []
        rows = self.conn.execute(
            f"SELECT rowid, cluster_id, signature, title, seen FROM story_clusters WHERE rowid IN"
            f" ({','.join('?' * len(shared))}) AND seen >= ?", (*shared, db_time(since)))
        best: dict[str, tuple[int, tuple[str, Sketch, datetime]]] = {}
        for rowid, cluster_id, signature, title, seen in rows:
            if cluster_id not in best or shared[rowid] > best[cluster_id][0]:
                best[cluster_id] = (shared[rowid], (cluster_id, Sketch(bytes(signature), bytes(title), ()),
                                                    datetime.fromisoformat(seen)))
        ranked = sorted(best.values(), key=lambda entry: -entry[0])
        return [candidate for _, candidate in ranked[:MAX_CANDIDATES]]

    def exact_copy(self, content_key: int, since: datetime) -> tuple[str, Sketch] | None:
        """(cluster_id, sketch without keys) of a story seen since `since` whose title and lead
        are word for word those of `content_key` (`StoryClusterer.content_key`), or None."""
        row = self.conn.execute(
            "SELECT c.cluster_id, c.signature, c.title FROM cluster_keys k JOIN story_clusters c ON c.rowid = k.story"
            " WHERE k.key = ? AND c.seen >= ? LIMIT 1", (content_key, db_time(since)),
        ).fetchone()
        return None if row is None else (row[0], Sketch(bytes(row[1]), bytes(row[2]), ()))

    def add(self, story_id: str, cluster_id: str, source: str, sketch: Sketch, seen: datetime) -> None:
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO story_clusters (story_id, cluster_id, source, signature, title, seen)"
            " VALUES (?,?,?,?,?,?)",
            (story_id, cluster_id, source, sketch.signature, sketch.title, db_time(seen)),
        )
        if cur.rowcount:
            self.conn.executemany("INSERT OR IGNORE INTO cluster_keys (key, story) VALUES (?, ?)",
                                  [(key, cur.lastrowid) for key in sketch.keys])

    def forget_keys(self, before: datetime) -> int:
        """Drop the look-up keys of stories seen before `before` (they are past any window)."""
        after = self._forgotten_until or ""
        if after >= db_time(before):
            return 0
        count = self.conn.execute(
            "DELETE FROM cluster_keys WHERE story IN"
            " (SELECT rowid FROM story_clusters WHERE seen >= ? AND seen < ?)", (after, db_time(before)),
        ).rowcount
        self._forgotten_until = db_time(before)
        return count

    def chats_alerted(self, cluster_id: str) -> set[int]:
        """Chats that already have an alert (sent or waiting) for a story of this cluster."""
        rows = self.conn.execute(
            "SELECT DISTINCT chat_id FROM outbox WHERE story_id IN"
            " (SELECT story_id FROM story_clusters WHERE cluster_id = ?)", (cluster_id,),
        )
        return {r[0] for r in rows}

    def other_sources(self, story_id: str) -> list[str]:
        """The other outlets that reported the event of `story_id`, in the order they came."""
        rows = self.conn.execute(
            "SELECT c.source FROM story_clusters c JOIN story_clusters me ON me.cluster_id = c.cluster_id"
            " WHERE me.story_id = ? AND c.story_id != me.story_id AND c.source != me.source ORDER BY c.seen",
            (story_id,),
        )
        return list(dict.fromkeys(r[0] for r in rows))


def join_cluster(clusters: StoryClusters, clusterer: StoryClusterer, story_id: str, source: str, title: str,
                 text: str, seen: datetime) -> str | None:
    """Index a story that alerts and return the earlier cluster it joins (None: a new event).
    A word-for-word copy is found by its content key alone; anything else by its sketch's keys
    and the clusterer's rules, among the stories seen within the window."""
    since = seen - clusterer.window
    copy = clusters.exact_copy(clusterer.content_key(title, text), since)
    if copy is not None:  # its original's cluster, and no keys of its own
        cluster, sketch = copy
    else:
        sketch = clusterer.sketch(title, text)
        cluster = clusterer.match_cluster(sketch, seen, clusters.candidates(sketch.keys, since))
    clusters.add(story_id, cluster or story_id, source, sketch, seen)
    return cluster
