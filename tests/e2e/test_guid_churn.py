"""A feed that rewrites every GUID, re-dates its items and adds tracking parameters to its
links does not alert its old stories again."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from tests.e2e.conftest import ROOT, write_config
from tests.fakes.feed_server import FeedItem

EVENTS = [
    ("Kim Jong Un and Putin hold talks in Vladivostok", "North Korea's Kim Jong Un met Russian President Vladimir Putin for summit talks in Vladivostok."),
    ("UN Security Council adopts new North Korea sanctions", "The UN Security Council unanimously adopted new sanctions on North Korea over its missile launches."),
    ("Moon and Kim agree to hold third inter-Korean summit", "South Korean President Moon Jae-in and North Korean leader Kim Jong Un agreed to a third summit in Pyongyang."),
    ("US Treasury sanctions North Korean shipping firms", "The US Treasury imposed sanctions on shipping companies accused of helping North Korea evade UN sanctions."),
]


def _crawl(config) -> str:
    proc = subprocess.run([sys.executable, "-m", "newswatch.cli", "crawl", "--once", "-c", str(config)],
                          cwd=ROOT, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("sources:")[0]


def test_rewritten_guids_redated_items_and_tracking_links_do_not_realert(tmp_path, feeds) -> None:
    day = datetime.now(UTC) - timedelta(hours=20)
    first = [FeedItem(title, f"https://wire.example.com/story/{i}", text, guid=f"urn:wire:{i}", published=day)
             for i, (title, text) in enumerate(EVENTS)]
    feeds.set_feed("/wire.xml", first)
    config = write_config(tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 60}])
    alerts = _crawl(config)
    assert sum(title in alerts for title, _ in EVENTS) == len(EVENTS)

    churned = [FeedItem(title, f"https://WIRE.example.com/story/{i}?utm_source=rss&utm_campaign=feed#top", text,
                        guid=f"tag:wire.example.com,2026:{i}-v2", published=day + timedelta(days=1))
               for i, (title, text) in enumerate(EVENTS)]
    feeds.set_feed("/wire.xml", churned)
    again = _crawl(config)
    assert "4 stories, 0 new" in again
    assert not [title for title, _ in EVENTS if title in again], again
