"""feedparser's own 2,107 test files as hostile input, through the real ingest path.

Every file is served over local HTTP as one source; one `newswatch crawl --once` pass
fetches, parses and stores them all. No exception may escape, the pass must finish, and
every entry with a title or a link must be in the database (stored, or recognised as the
same story as one already stored: same canonical URL or same source and GUID).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newswatch.crawler.parse.feeds import parse_feed
from tests.e2e.conftest import ROOT, write_config
from tests.fakes.feed_server import FeedServer

SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus" / "feedparser-tests"

if not CORPUS.is_dir():
    pytest.skip("../shared is absent", allow_module_level=True)


def test_feedparser_suite_through_ingest(tmp_path: Path) -> None:
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file())
    assert len(files) == 2107
    now = datetime.now(UTC)
    with FeedServer() as server:
        sources = []
        expected = {}
        for i, path in enumerate(files):
            name = f"fp-{i:04d}"
            route = f"/{i}"
            body = path.read_bytes()
            server.set(route, body, content_type="application/xml")
            sources.append({"name": name, "url": server.url(route), "kind": "feed", "interval": 3600})
            expected[name] = parse_feed(body, source=name, url=server.url(route), now=now).stories
        config = write_config(tmp_path, sources, crawler={"per_host": 64, "concurrency": 64, "timeout": 30,
                                                          "delay": 0, "autothrottle": False})
        proc = subprocess.run([sys.executable, "-m", "newswatch.cli", "crawl", "--once", "-c", str(config)],
                              cwd=ROOT, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                              capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    conn = sqlite3.connect(tmp_path / "newswatch.db")
    ids = {r[0] for r in conn.execute("SELECT id FROM stories")}
    urls = {r[0] for r in conn.execute("SELECT url FROM stories WHERE url != ''")}
    guids = {(r[0], r[1]) for r in conn.execute("SELECT source, guid FROM stories WHERE guid != ''")}
    fetched = conn.execute("SELECT COUNT(*) FROM fetch_state").fetchone()[0]
    total = sum(len(v) for v in expected.values())
    missing = [
        (name, s.title, s.url) for name, stories in expected.items() for s in stories
        if s.id not in ids and (not s.url or s.url not in urls) and (name, s.guid) not in guids
    ]
    print(f"\nfeedparser suite: {len(files)} files fetched ({fetched} with fetch state), {total} entries with a "
          f"title or link, {len(ids)} distinct stories stored, {len(missing)} missing")
    assert fetched == len(files)
    assert total > 250
    assert not missing, missing[:10]
