"""End to end: the daemon's roles in processes of their own on one SQLite database, and on
PostgreSQL (two workers sharing the source by leases; skipped, saying why, without a server).

`newswatch worker`, `dispatch` and `bot` as three processes deliver the seed alert exactly
once. With two dispatchers (or two bots) one is active and the other stands by; after a
`kill -9` of the active one, the standby takes over within `TAKE_OVER` seconds, and every
alert still arrives exactly once.
"""

from __future__ import annotations

import re
import signal
import time

from tests.e2e.conftest import (
    TAKE_OVER,
    assert_clean,
    take_over,
    wait_until,
    write_config,
)
from tests.e2e.test_clusters import HANOI
from tests.e2e.test_skeleton import CHAT, G20, SEED


def _texts(bot_api, needle: str) -> list[dict]:
    return [m for m in bot_api.messages_for(CHAT) if needle in (m.get("text") or "")]


def _roles(tmp_path, feeds, bot_api, daemon_factory, *commands: str, database=None) -> dict[str, list]:
    """The role processes (`commands`, in order) on one config polling /wire.xml every second,
    on the SQLite file in tmp_path or on `database`."""
    config = write_config(tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 1}],
                          api_url=f"{bot_api.url}/bot", database=database)
    started: dict[str, list] = {}
    for command in commands:
        mine = started.setdefault(command, [])
        mine.append(daemon_factory(config, command=command, name=f"{command}{len(mine) + 1}").start())
        time.sleep(0.5)  # the first of a role takes its lock first
    return started


def _subscribe(bot_api) -> None:
    bot_api.user_message(CHAT, "/start")
    wait_until(lambda: _texts(bot_api, "Subscribed"), what="the /start reply")


def test_three_role_processes_deliver_the_alert_once(tmp_path, feeds, bot_api, daemon_factory) -> None:
    feeds.set_feed("/wire.xml", [G20])
    roles = _roles(tmp_path, feeds, bot_api, daemon_factory, "worker", "dispatch", "bot")
    _subscribe(bot_api)
    wait_until(lambda: len(feeds.hits_for("/wire.xml")) >= 2, what="two polls of the feed")
    feeds.set_feed("/wire.xml", [SEED, G20])
    alerts = wait_until(lambda: _texts(bot_api, "Kim Jong Un arrives in Beijing"), what="the seed alert")
    assert "#summit" in alerts[0]["text"] and "#sanctions" in alerts[0]["text"]
    polls = len(feeds.hits_for("/wire.xml"))
    wait_until(lambda: len(feeds.hits_for("/wire.xml")) >= polls + 3, what="more polls")
    time.sleep(2)  # more than one look of the dispatcher and the bot at the database
    processes = [p for group in roles.values() for p in group]
    for process in processes:
        assert process.stop() == 0
    assert len(_texts(bot_api, "Kim Jong Un arrives in Beijing")) == 1
    assert not _texts(bot_api, "G20 leaders")
    assert_clean(*processes)


def test_a_second_run_or_worker_is_kept_off_the_database(tmp_path, feeds, bot_api, daemon_factory) -> None:
    feeds.set_feed("/wire.xml", [G20])
    roles = _roles(tmp_path, feeds, bot_api, daemon_factory, "worker", "worker")
    first, second = roles["worker"]
    wait_until(lambda: "worker: active" in first.output(), what="the first worker active")
    wait_until(lambda: "standing by" in second.output(), what="the second worker standing by")
    run = daemon_factory(first.config, name="run").start()
    assert run.proc.wait(30) == 2
    run.stop()
    assert "is already running on this database" in run.output()
    for process in (first, second):
        assert process.stop() == 0


def _alert_once_across_a_take_over(tmp_path, feeds, bot_api, daemon_factory, role: str, *,
                                   workers: int = 1, database=None) -> None:
    feeds.set_feed("/wire.xml", [G20])
    commands = ["worker"] * workers + ["dispatch", "bot"]
    commands.insert(commands.index(role) + 1, role)
    roles = _roles(tmp_path, feeds, bot_api, daemon_factory, *commands, database=database)
    _subscribe(bot_api)
    feeds.set_feed("/wire.xml", [SEED, G20])
    wait_until(lambda: _texts(bot_api, "Kim Jong Un arrives in Beijing"), what="the alert before the kill")

    seconds = take_over(roles[role], role).seconds
    print(f"{role}: the standby was active {seconds:.1f}s after the kill")
    feeds.set_feed("/wire.xml", [HANOI, SEED, G20])
    wait_until(lambda: _texts(bot_api, HANOI.title), timeout=30, what="the alert after the take-over")
    bot_api.user_message(CHAT, "/topics")  # the bot (the new one, for role bot) answers commands
    polls = len(feeds.hits_for("/wire.xml"))
    wait_until(lambda: len(feeds.hits_for("/wire.xml")) >= polls + 3, what="more polls")
    time.sleep(2)
    survivors = [p for group in roles.values() for p in group if p.proc.poll() is None]
    for process in survivors:
        assert process.stop() == 0
    assert len(_texts(bot_api, "Kim Jong Un arrives in Beijing")) == 1
    assert len(_texts(bot_api, HANOI.title)) == 1
    assert len(_texts(bot_api, "Subscribed")) == 1  # the /start update was answered once
    assert_clean(*survivors)


def test_standby_dispatcher_takes_over_after_kill_9(tmp_path, feeds, bot_api, daemon_factory) -> None:
    _alert_once_across_a_take_over(tmp_path, feeds, bot_api, daemon_factory, "dispatch")


def test_standby_bot_takes_over_after_kill_9(tmp_path, feeds, bot_api, daemon_factory) -> None:
    _alert_once_across_a_take_over(tmp_path, feeds, bot_api, daemon_factory, "bot")


def test_roles_over_postgresql_two_workers_and_a_dispatcher_take_over(tmp_path, feeds, bot_api, daemon_factory,
                                                                     postgres_url) -> None:
    """Two workers lease the source between them, the dispatchers and the bot hold PostgreSQL
    advisory locks: after a kill -9 of the active dispatcher every alert still arrives once."""
    _alert_once_across_a_take_over(tmp_path, feeds, bot_api, daemon_factory, "dispatch", workers=2,
                                   database=postgres_url)


def test_run_over_postgresql_holds_the_dispatch_and_bot_locks(tmp_path, feeds, bot_api, daemon_factory,
                                                              postgres_url) -> None:
    """`newswatch run` on PostgreSQL takes the dispatcher's and the bot's advisory locks: a second
    `run` and a `dispatch` on the same database stand by, no alert goes out twice, and after a
    kill -9 of the active `run` the standby `run` takes over."""
    feeds.set_feed("/wire.xml", [G20])
    runs = _roles(tmp_path, feeds, bot_api, daemon_factory, "run", "run", database=postgres_url)["run"]
    first = wait_until(lambda: next((p for p in runs if "run: active" in p.output()), None), what="one run active")
    second = next(p for p in runs if p is not first)  # whichever took the locks first is active
    dispatch = daemon_factory(first.config, command="dispatch", name="dispatch1").start()
    for standby in (second, dispatch):
        wait_until(lambda p=standby: "standing by" in p.output(), what="the second run and the dispatcher standing by")
    _subscribe(bot_api)
    feeds.set_feed("/wire.xml", [SEED, G20])
    wait_until(lambda: _texts(bot_api, "Kim Jong Un arrives in Beijing"), what="the alert before the kill")
    assert dispatch.stop() == 0  # a standby stops cleanly; the second run is left to take over

    killed = time.monotonic()
    first.stop(signal.SIGKILL)
    wait_until(lambda: "active now" in second.output(), timeout=TAKE_OVER, what="the standby run active")
    print(f"run: the standby was active {time.monotonic() - killed:.1f}s after the kill")
    feeds.set_feed("/wire.xml", [HANOI, SEED, G20])
    wait_until(lambda: _texts(bot_api, HANOI.title), timeout=30, what="the alert after the take-over")
    time.sleep(2)  # more than one look of the dispatcher at the database
    assert second.stop() == 0
    assert len(_texts(bot_api, "Kim Jong Un arrives in Beijing")) == 1
    assert len(_texts(bot_api, HANOI.title)) == 1
    assert len(_texts(bot_api, "Subscribed")) == 1
    assert not re.search(r"newswatch\.lock|is already running", first.output() + second.output())
    assert_clean(second, dispatch)
