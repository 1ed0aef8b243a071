"""Disk full while the daemon writes: a clear error, the daemon keeps going, nothing is
corrupted, and once space is back every story is stored and alerted.

The running daemon's file-size limit (RLIMIT_FSIZE, set from outside with prlimit) makes
every write past a few kilobytes fail the way a full disk does for SQLite.
"""

from __future__ import annotations

import random
import resource
import sqlite3
import string
import time

import pytest

from tests.e2e.conftest import wait_until, write_config
from tests.fakes.feed_server import FeedItem

pytestmark = pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs prlimit (Linux)")

def _filler(seed: int) -> str:
    """Some 20 KB of text unlike any other story's."""
    rng = random.Random(seed)
    words = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 9))) for _ in range(400)]
    return " ".join(rng.choice(words) for _ in range(3000))


PLACES = ["Panmunjom", "Hanoi", "Singapore", "Vladivostok", "Beijing", "Pyongyang", "Seoul", "Ulan Bator"]
TOPICS = ["denuclearisation steps", "a peace declaration", "family reunions", "a rail link", "sanctions relief",
          "a liaison office", "the return of remains", "a tourism zone"]
STORIES = [
    FeedItem(f"North Korean and US envoys meet in {place} on {topic}",
             f"https://wire.example.com/disk/{i}",
             f"Envoys of North Korea met their counterparts in {place} to prepare summit talks on {topic}. "
             + _filler(i))
    for i, (place, topic) in enumerate(zip(PLACES, TOPICS))
]


def test_disk_full_is_reported_and_recovered(tmp_path, feeds, daemon_factory) -> None:
    feeds.set_feed("/wire.xml", [])
    config = write_config(tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 1}])
    daemon = daemon_factory(config, token=None).start()
    wait_until(lambda: len(feeds.hits_for("/wire.xml")) >= 2, what="the first polls")
    pid = daemon.proc.pid
    unlimited = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (16 * 1024, unlimited[1]))
    feeds.set_feed("/wire.xml", STORIES)
    wait_until(lambda: "database refused" in daemon.output(), timeout=30, what="the disk-full error in the log")
    polls = len(feeds.hits_for("/wire.xml"))
    wait_until(lambda: len(feeds.hits_for("/wire.xml")) >= polls + 1, timeout=30, what="polling to go on")
    assert daemon.proc.poll() is None, "the daemon died"

    resource.prlimit(pid, resource.RLIMIT_FSIZE, unlimited)
    db = tmp_path / "newswatch.db"

    def stored() -> int:
        conn = sqlite3.connect(db)
        try:
            return conn.execute("SELECT COUNT(*) FROM stories").fetchone()[0]
        except sqlite3.Error:
            return 0
        finally:
            conn.close()

    wait_until(lambda: stored() == len(STORIES), timeout=60, what="every story stored once space is back")
    out = tmp_path / "daemon-1.out"
    wait_until(lambda: all(item.title in out.read_text() for item in STORIES), timeout=30, what="every alert")
    time.sleep(1)
    assert daemon.stop() == 0
    log = daemon.output()
    error = next(line for line in log.splitlines() if "database refused" in line)
    assert "full" in error.lower() or "disk" in error.lower() or "i/o" in error.lower(), error
    assert "Traceback" not in log
    text = out.read_text()
    assert all(text.count(item.title) == 1 for item in STORIES), "an alert was lost or repeated"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
