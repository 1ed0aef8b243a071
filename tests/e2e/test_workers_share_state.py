"""End to end on PostgreSQL (skipped, saying why, without a server): what one worker learns
about a source holds for every worker, because it is kept in the shared database.

- Conditional GET: a worker polls a feed and is stopped; another worker's first request for
  it carries the ETag the first one stored, and gets a 304.
- Backoff: a feed answers 429 with Retry-After; neither of two workers polling it every
  second asks again before the time it named.
"""

from __future__ import annotations

import time

from tests.e2e.conftest import assert_clean, wait_until, write_config
from tests.e2e.test_skeleton import G20

RETRY_AFTER = 8  # seconds the 429 asks for


def _workers(tmp_path, feeds, daemon_factory, postgres_url, path: str, count: int):
    config = write_config(tmp_path, [{"name": "wire", "url": feeds.url(path), "kind": "feed", "interval": 1}],
                          database=postgres_url)
    return [daemon_factory(config, token=None, command="worker", name=f"worker{n}") for n in range(1, count + 1)]


def test_a_worker_asks_with_the_validators_another_worker_stored(tmp_path, feeds, daemon_factory,
                                                                postgres_url) -> None:
    feeds.set_feed("/wire.xml", [G20])
    first, second = _workers(tmp_path, feeds, daemon_factory, postgres_url, "/wire.xml", 2)
    first.start()
    wait_until(lambda: [h for h in feeds.hits_for("/wire.xml") if h.status == 200], what="the first poll")
    wait_until(lambda: "1 ok" in first.output(), what="the first poll stored")
    assert first.stop() == 0
    polled = len(feeds.hits_for("/wire.xml"))
    second.start()
    wait_until(lambda: len(feeds.hits_for("/wire.xml")) > polled, what="the second worker's poll")
    assert second.stop() == 0
    hits = feeds.hits_for("/wire.xml")
    assert "If-None-Match" not in hits[0].headers  # the first request had nothing to ask with
    assert hits[polled].headers.get("If-None-Match") and hits[polled].status == 304, hits[polled]
    assert_clean(first, second)


def test_two_workers_keep_to_a_retry_after_together(tmp_path, feeds, daemon_factory, postgres_url) -> None:
    feeds.set_feed("/busy.xml", [G20], status=429, headers={"Retry-After": str(RETRY_AFTER)})
    workers = _workers(tmp_path, feeds, daemon_factory, postgres_url, "/busy.xml", 2)
    for worker in workers:
        worker.start()
    wait_until(lambda: feeds.hits_for("/busy.xml"), what="the first poll")
    refused = feeds.hits_for("/busy.xml")[0].at
    wait_until(lambda: len(feeds.hits_for("/busy.xml")) > 1, timeout=RETRY_AFTER + 10, what="the poll after the wait")
    asked_again = feeds.hits_for("/busy.xml")[1].at
    time.sleep(1)
    for worker in workers:
        assert worker.stop() == 0
    assert asked_again - refused >= RETRY_AFTER - 0.5, (asked_again - refused, [w.output()[-1500:] for w in workers])
    assert_clean(*workers)
