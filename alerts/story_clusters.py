"""Which alerting stories report the same event: signatures and cluster membership in SQLite.

Only stories that alert (or could alert a chat) are indexed, so the candidates a new story
is compared with stay few: those seen within the clusterer's window. A story that joins an
existing cluster alerts only the chats that have not had an alert from that cluster, and
the cluster's other outlets are shown as "also reported by" on alerts not yet sent.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from crawler.store import db_time

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
"""


class StoryClusters:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        conn.executescript(_SCHEMA)

    def recent(self, since: datetime) -> list[tuple[str, bytes, datetime]]:
        """(cluster_id, signature, seen) of the stories indexed since `since`."""
        rows = self.conn.execute(
            "SELECT cluster_id, signature, seen FROM story_clusters WHERE seen >= ?", (db_time(since),)
        )
        return [(r[0], bytes(r[1]), datetime.fromisoformat(r[2])) for r in rows]

    def add(self, story_id: str, cluster_id: str, source: str, signature: bytes, seen: datetime) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO story_clusters (story_id, cluster_id, source, signature, seen) VALUES (?,?,?,?,?)",
            (story_id, cluster_id, source, signature, db_time(seen)),
        )

    def chats_alerted(self, cluster_id: str) -> set[int]:
        """Chats that already have an alert (sent or waiting) for a story of this cluster."""
        rows = self.conn.execute(
            "SELECT DISTINCT o.chat_id FROM outbox o JOIN story_clusters c ON c.story_id = o.story_id"
            " WHERE c.cluster_id = ?", (cluster_id,),
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
