"""Which alerting stories report the same event: sketches and cluster membership (kept by `newswatch.alerts.store`).

Only stories that alert (or could alert a chat) are indexed. Each indexed story's look-up
keys (`newswatch.alerts.match.clustering.Sketch.keys`) go into `cluster_keys`, so the candidates of a new story
are found by index look-ups of its keys, never by comparing it with every recent story; keys older
than twice the clusterer's window are purged. A story that joins an existing cluster alerts
only the chats that have not had an alert from that cluster, and the cluster's other outlets
are shown as "also reported by" on alerts not yet sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from newswatch.alerts.match.clustering import Sketch, StoryClusterer

if TYPE_CHECKING:
    from newswatch.alerts.store import AlertsStore

MAX_STORIES = 64  # stories looked at for a new one: those sharing most look-up keys with it
MAX_CANDIDATES = 16  # clusters compared with a new story: those whose stories share most keys with it


class StoryClusters:
    def __init__(self, store: AlertsStore) -> None:
        self.store = store
        self._forgotten_until: datetime | None = None

    def candidates(self, keys: Iterable[int], since: datetime) -> list[tuple[str, Sketch, datetime]]:
        """(cluster_id, sketch, seen) of the clusters with a story seen since `since` that shares
        a look-up key with `keys`: for each, its story sharing most keys, those sharing most
        first (at most `MAX_CANDIDATES`)."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return []
        shared = self.store.stories_sharing_keys(keys, MAX_STORIES)
        if not shared:
            return []
        best: dict[str, tuple[int, tuple[str, Sketch, datetime]]] = {}
        for story, cluster_id, sketch, seen in self.store.clustered_stories(shared, since):
            if cluster_id not in best or shared[story] > best[cluster_id][0]:
                best[cluster_id] = (shared[story], (cluster_id, sketch, seen))
        ranked = sorted(best.values(), key=lambda entry: -entry[0])
        return [candidate for _, candidate in ranked[:MAX_CANDIDATES]]

    def exact_copy(self, content_key: int, since: datetime) -> tuple[str, Sketch] | None:
        """(cluster_id, sketch without keys) of a story seen since `since` whose title and lead
        are word for word those of `content_key` (`StoryClusterer.content_key`), or None."""
        return self.store.exact_copy(content_key, since)

    def add(self, story_id: str, cluster_id: str, source: str, sketch: Sketch, seen: datetime) -> None:
        self.store.add_to_cluster(story_id, cluster_id, source, sketch, seen)

    def forget_keys(self, before: datetime) -> int:
        """Drop the look-up keys of stories seen before `before` (they are past any window)."""
        after = self._forgotten_until
        if after is not None and after >= before:
            return 0
        count = self.store.forget_cluster_keys(after, before)
        self._forgotten_until = before
        return count

    def chats_alerted(self, cluster_id: str) -> set[int]:
        """Chats that already have an alert (sent or waiting) for a story of this cluster."""
        return self.store.chats_alerted(cluster_id)

    def other_sources(self, story_id: str) -> list[str]:
        """The other outlets that reported the event of `story_id`, in the order they came."""
        return self.store.other_sources(story_id)


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
