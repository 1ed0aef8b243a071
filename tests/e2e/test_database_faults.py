"""The database file in trouble, against the real daemon (console mode, a local feed server).

A read-only database makes /healthz fail and say why; another process holding an exclusive
lock does not freeze the daemon (/healthz answers at once, and everything resumes when the
lock goes); a second daemon on the same database is refused; an empty, foreign or truncated
file is refused with one clear line (exit status 2), and never replaced.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from newswatch.storage import open_storage
from newswatch.crawler.story import Story, story_id
from tests.e2e.conftest import ROOT, wait_until, write_config
from tests.e2e.test_freshness import SUMMITS
from tests.e2e.test_service import free_port, healthz
from tests.fakes.feed_server import FeedItem

FAST = {"crawler": {"delay": 0, "autothrottle": False, "timeout": 5}}


def _config(tmp_path, feeds, **extra):
    return write_config(tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "interval": 1}], **FAST, **extra)


def _read_only(db) -> tuple[str, ...]:
    """A command prefix under which `db` is on a read-only mount (root), or nothing after
    making the file read-only (any other user)."""
    if os.geteuid() != 0:
        os.chmod(db, 0o444)
        return ()
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare to mount the database read-only")
    return ("unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(db))


def test_a_read_only_database_fails_healthz_naming_the_write_failure(tmp_path, feeds, daemon_factory) -> None:
    port = free_port()
    feeds.set_feed("/wire.xml", [])
    config = _config(tmp_path, feeds, http={"listen": f"127.0.0.1:{port}"})
    db = tmp_path / "newswatch.db"
    daemon = daemon_factory(config, token=None).start()
    wait_until(lambda: healthz(port)[0] == 200, what="a healthy daemon")
    assert daemon.stop() == 0

    daemon.wrapper = _read_only(db)
    daemon.start()
    status, body = wait_until(lambda: (h := healthz(port))[0] == 503 and h, 30, what="/healthz to fail")
    database = body["checks"]["database"]
    assert not database["ok"] and "readonly" in database["problem"], body
    assert database["last_write"] is not None  # the last heartbeat of the first run
    assert daemon.stop() == 0
    log = daemon.output()
    assert log.count("the database refuses writes") == 1, log[-3000:]


def _hold_exclusive_lock(db) -> subprocess.Popen:
    """A process holding an exclusive lock on `db` until a line comes on its stdin (60 s at most)."""
    code = ("import select, sqlite3, sys\n"
            "conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)\n"
            "conn.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "select.select([sys.stdin], [], [], 60)\n"
            "conn.execute('COMMIT')\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def _answers_while_locked(port: int, fetched, seconds: float = 30) -> list[tuple[float, int, dict]]:
    """/healthz every 0.5 s, timed, until the feed was fetched under the lock and the lock was
    reported for 2 s (or `seconds` passed)."""
    answers: list[tuple[float, int, dict]] = []
    deadline = time.monotonic() + seconds
    locked_from = None
    while time.monotonic() < deadline and (locked_from is None or len(answers) < locked_from + 4):
        started = time.monotonic()
        status, body = healthz(port)
        answers.append((round(time.monotonic() - started, 2), status, body))
        if locked_from is None and status == 503 and fetched():
            locked_from = len(answers)
        time.sleep(0.5)
    return answers


def test_an_exclusive_lock_held_elsewhere_does_not_freeze_the_daemon(tmp_path, feeds, daemon_factory) -> None:
    port = free_port()
    feeds.set_feed("/wire.xml", [])
    config = _config(tmp_path, feeds, http={"listen": f"127.0.0.1:{port}"})
    db = tmp_path / "newswatch.db"
    daemon = daemon_factory(config, token=None).start()
    wait_until(lambda: healthz(port)[0] == 200, what="a healthy daemon")

    holder = _hold_exclusive_lock(db)
    title, text = SUMMITS[3]
    polls = len(feeds.hits_for("/wire.xml"))
    feeds.set_feed("/wire.xml", [FeedItem(title, "https://wire.example.com/xi-pyongyang", text)])
    answers = _answers_while_locked(port, lambda: len(feeds.hits_for("/wire.xml")) > polls + 1)
    holder.communicate("release\n", timeout=10)
    assert holder.returncode == 0
    slowest = max(seconds for seconds, _, _ in answers)
    assert slowest < 2 and all(status in (200, 503) for _, status, _ in answers), answers
    locked = [body for _, status, body in answers if status == 503]
    assert locked and "locked" in locked[-1]["checks"]["database"]["problem"], answers[-1]

    out = tmp_path / "daemon-1.out"
    wait_until(lambda: title in out.read_text(), 30, what="the alert once the lock is released")
    wait_until(lambda: healthz(port)[0] == 200, 30, what="/healthz healthy again")
    assert daemon.stop() == 0
    assert out.read_text().count(title) == 1


def test_a_second_daemon_on_the_same_database_is_refused(tmp_path, feeds, daemon_factory) -> None:
    feeds.set_feed("/wire.xml", [])
    config = _config(tmp_path, feeds)
    first = daemon_factory(config, token=None).start()
    wait_until(lambda: len(feeds.hits_for("/wire.xml")) >= 1, what="the first daemon polling")
    second = subprocess.run([sys.executable, "-m", "newswatch.cli", "run", "-c", str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 2, second.stderr[-2000:]
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "already running" in lines[0] and f"pid {first.proc.pid}" in lines[0], lines
    assert first.proc.poll() is None
    assert first.stop() == 0


def _truncated(path) -> None:
    store = open_storage(path).stories
    now = datetime.now(UTC)
    stories = [Story(id=story_id("wire", f"https://wire.example.com/{i}", ""), source="wire",
                     url=f"https://wire.example.com/{i}", title=f"Story {i}", text="words " * 400, published=now)
               for i in range(300)]
    store.add_stories(stories, now)
    store.conn.close()
    os.truncate(path, os.path.getsize(path) // 2)


@pytest.mark.parametrize("kind, make, words", [
    ("empty", lambda path: path.write_bytes(b""), "empty (0 bytes)"),
    ("foreign", lambda path: path.write_text("timestamp,source,title\n" * 200), "not an SQLite database"),
    ("truncated", _truncated, "truncated"),
])
def test_a_database_file_that_cannot_be_used_is_one_clear_line_and_exit_2(tmp_path, feeds, kind, make,
                                                                          words) -> None:
    feeds.set_feed("/wire.xml", [])
    config = _config(tmp_path, feeds)
    db = tmp_path / "newswatch.db"
    make(db)
    before = db.read_bytes()
    try:
        result = subprocess.run([sys.executable, "-m", "newswatch.cli", "run", "-c", str(config)], cwd=ROOT,
                                capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"newswatch run kept running on a {kind} database file")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and str(db) in lines[0] and words in lines[0], lines
    assert db.read_bytes() == before, "the database file was changed"
