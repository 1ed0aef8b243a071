"""End to end on PostgreSQL (skipped, saying why, without a server): workers that lose nothing.

- A worker killed with `kill -9` in the middle of a fetch: its host lease dies with its
  database session, and the other worker polls the source at its next due time, within
  `TAKE_OVER` seconds; every alert arrives once.
- Two workers and one host with several sources: the host's requests are never more than
  `crawler.per_host` at once, and every source is polled.
- The database goes away for a while (a proxy between the daemon and the server is cut): the
  daemon says so once, keeps running, and the story fetched meanwhile is alerted once after.
"""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.e2e.conftest import assert_clean, wait_until, write_config
from tests.e2e.test_clusters import HANOI
from tests.e2e.test_skeleton import CHAT, G20, SEED
from tests.fakes.tcp_proxy import TcpProxy

INTERVAL = 2  # seconds between a source's polls
SLOW = 2.0  # seconds the slow feed takes to answer, so that a kill lands mid-fetch
# the other worker's next due time of the source (an interval), its fetch, and starting up
TAKE_OVER = INTERVAL + SLOW + 4.0
OUTAGE = 30.0  # seconds the database is away (the three role processes)


def _texts(bot_api, needle: str) -> list[dict]:
    return [m for m in bot_api.messages_for(CHAT) if needle in (m.get("text") or "")]


def _subscribe(bot_api) -> None:
    bot_api.user_message(CHAT, "/start")
    wait_until(lambda: _texts(bot_api, "Subscribed"), what="the /start reply")


def _baseline(feeds) -> None:
    """Wait until the feed as first published was read (the source's baseline, never alerted):
    a story published before that would be part of it."""
    wait_until(lambda: len(feeds.hits_for("/wire.xml")) >= 2, what="two polls of the feed")


def _start(process):
    """Start `process`, then give it the time to bring the schema up to date before the next one."""
    process.start()
    time.sleep(0.5)
    return process


def _lease_holder(url: str, host: str) -> int | None:
    """The pid of the worker that holds `host` now (the lease names it host:pid)."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT holder FROM host_leases WHERE host = %s AND session <> 0", (host,)).fetchone()
    return int(row[0].rsplit(":", 1)[1]) if row else None


def test_a_killed_workers_source_is_taken_over_quickly(tmp_path, feeds, bot_api, daemon_factory, postgres_url) -> None:
    feeds.set_feed("/wire.xml", [G20], delay=SLOW)
    config = write_config(tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed",
                                      "interval": INTERVAL}], api_url=f"{bot_api.url}/bot", database=postgres_url)
    workers = [_start(daemon_factory(config, command="worker", name=f"worker{n}")) for n in (1, 2)]
    others = [_start(daemon_factory(config, command=role, name=role)) for role in ("dispatch", "bot")]
    _subscribe(bot_api)
    _baseline(feeds)
    feeds.set_feed("/wire.xml", [SEED, G20], delay=SLOW)
    wait_until(lambda: _texts(bot_api, "Kim Jong Un arrives in Beijing"), what="the alert before the kill")

    def mid_fetch():  # a request is being answered, by the worker that holds the host
        if not feeds.in_flight.get("127.0.0.1"):
            return None
        pid = _lease_holder(postgres_url, "127.0.0.1")
        return next((w for w in workers if w.proc.pid == pid), None)

    victim = wait_until(mid_fetch, what="a worker in the middle of a fetch")
    survivor = next(w for w in workers if w is not victim)
    feeds.set_feed("/wire.xml", [HANOI, SEED, G20], delay=SLOW)
    killed = time.monotonic()
    victim.stop(signal.SIGKILL)
    wait_until(lambda: feeds.arrivals_for("/wire.xml", since=killed), timeout=TAKE_OVER,
               what="the other worker polling the source")
    print(f"the source was polled again {feeds.arrivals_for('/wire.xml', since=killed)[0] - killed:.1f}s after the kill")
    assert _lease_holder(postgres_url, "127.0.0.1") in (survivor.proc.pid, None)
    wait_until(lambda: _texts(bot_api, HANOI.title), timeout=30, what="the alert after the take-over")
    polls = len(feeds.arrivals_for("/wire.xml"))
    wait_until(lambda: len(feeds.arrivals_for("/wire.xml")) >= polls + 2, what="more polls")
    time.sleep(2)  # more than one look of the dispatcher and the bot at the database
    for process in (survivor, *others):
        assert process.stop() == 0
    assert len(_texts(bot_api, "Kim Jong Un arrives in Beijing")) == 1
    assert len(_texts(bot_api, HANOI.title)) == 1
    assert_clean(survivor, *others)


def _one_host(tmp_path, feeds, postgres_url, count: int, *, delay: float, interval: int) -> tuple[list[str], Path]:
    """`count` feeds on the feed server's one host, each answering after `delay` seconds, and a
    config polling them every `interval` seconds with `per_host: 1`: (their paths, the config)."""
    paths = [f"/feed{n}.xml" for n in range(count)]
    for path in paths:
        feeds.set_feed(path, [G20], delay=delay, conditional=False)
    sources = [{"name": f"feed{n}", "url": feeds.url(path), "kind": "feed", "interval": interval}
               for n, path in enumerate(paths)]
    return paths, write_config(tmp_path, sources, database=postgres_url, crawler={"per_host": 1})


def test_two_workers_keep_to_per_host_together(tmp_path, feeds, daemon_factory, postgres_url) -> None:
    paths, config = _one_host(tmp_path, feeds, postgres_url, 4, delay=0.5, interval=1)
    workers = [_start(daemon_factory(config, token=None, command="worker", name=f"worker{n}")) for n in (1, 2)]
    wait_until(lambda: all(len(feeds.hits_for(p)) >= 3 for p in paths), timeout=60, what="three polls of every feed")
    # read before the workers stop: a stopping worker gives its hosts up while the server still
    # answers the requests it abandoned
    most = dict(feeds.most_in_flight)
    for worker in workers:
        assert worker.stop() == 0
    assert most == {"127.0.0.1": 1}, (most, [p.output()[-2000:] for p in workers])
    assert_clean(*workers)


def test_two_workers_poll_every_source_of_a_shared_host_in_the_first_round(tmp_path, feeds, daemon_factory,
                                                                          postgres_url) -> None:
    """Both workers start together on one host's sources (an hour's interval): a worker that
    finds the host being crawled by the other asks again shortly, so every source is polled in
    the first round (within seconds, not an interval later), and none twice."""
    paths, config = _one_host(tmp_path, feeds, postgres_url, 40, delay=0.05, interval=3600)
    workers = [daemon_factory(config, token=None, command="worker", name=f"worker{n}").start() for n in (1, 2)]
    with contextlib.suppress(AssertionError):  # the counts below say which feeds were left out
        wait_until(lambda: all(feeds.hits_for(p) for p in paths), timeout=30, what="a poll of every feed")
    time.sleep(1)
    for worker in workers:
        assert worker.stop() == 0
    assert {p: len(feeds.hits_for(p)) for p in paths} == dict.fromkeys(paths, 1)
    assert_clean(*workers)


def _through(url: str, port: int) -> str:
    """`url` with its server's port replaced by `port` (the proxy's)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.hostname}:{port}"))


@pytest.mark.parametrize(("commands", "outage"), [(("run",), OUTAGE / 3), (("worker", "dispatch", "bot"), OUTAGE)],
                         ids=["run", "roles"])
def test_the_daemon_waits_for_the_database_and_loses_nothing(tmp_path, feeds, bot_api, daemon_factory,
                                                             postgres_url, commands, outage) -> None:
    """`newswatch run` (a shorter outage: the same code in one process), or the three role
    processes for OUTAGE seconds (the dispatcher and the bot lose their locks with their
    connections, stand by again and take them back)."""
    server = urlsplit(postgres_url)
    with TcpProxy(server.hostname or "127.0.0.1", server.port or 5432) as proxy:
        feeds.set_feed("/wire.xml", [G20])
        config = write_config(tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 1}],
                              api_url=f"{bot_api.url}/bot", database=_through(postgres_url, proxy.port))
        processes = [_start(daemon_factory(config, command=command, name=command)) for command in commands]
        _subscribe(bot_api)
        _baseline(feeds)
        feeds.set_feed("/wire.xml", [SEED, G20])
        wait_until(lambda: _texts(bot_api, "Kim Jong Un arrives in Beijing"), what="the alert before the outage")

        proxy.cut()
        cut = time.monotonic()
        feeds.set_feed("/wire.xml", [HANOI, SEED, G20])  # published while the database is away
        for process in processes:
            wait_until(lambda p=process: "the database does not answer" in p.output(), timeout=outage,
                       what=f"the outage in the log of {process.name}")
        time.sleep(max(0.0, outage - (time.monotonic() - cut)))
        assert not _texts(bot_api, HANOI.title)
        assert all(p.proc.poll() is None for p in processes)
        proxy.restore()

        wait_until(lambda: _texts(bot_api, HANOI.title), timeout=30, what="the alert after the outage")
        for process in processes:
            wait_until(lambda p=process: "the database answers again" in p.output(),
                       what=f"the end of the outage in the log of {process.name}")
        bot_api.user_message(CHAT, "/topics")  # the bot answers commands again
        wait_until(lambda: _texts(bot_api, "tap a button to switch"), what="the /topics reply")
        polls = len(feeds.arrivals_for("/wire.xml"))
        wait_until(lambda: len(feeds.arrivals_for("/wire.xml")) >= polls + 2, what="more polls")
        time.sleep(2)
        for process in processes:
            assert process.stop() == 0
    for process in processes:
        output = process.output()
        assert output.count("the database does not answer") == 1, output[-3000:]
    assert len(_texts(bot_api, "Kim Jong Un arrives in Beijing")) == 1
    assert len(_texts(bot_api, HANOI.title)) == 1
    assert len(_texts(bot_api, "Subscribed")) == 1
    assert_clean(*processes)
