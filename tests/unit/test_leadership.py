"""The role locks (newswatch.leadership) on both backends, and the workers' source leases
(newswatch.crawler.leases) on PostgreSQL. The PostgreSQL tests need a server: $NEWSWATCH_TEST_POSTGRES
(default postgresql://postgres@127.0.0.1:5432/test); they skip when none answers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from pathlib import Path

import pytest
from newswatch.crawler.leases import SingleWorkerLeases
from newswatch.crawler.store import DatabaseFileError
from tests.e2e.conftest import wait_until

from newswatch.crawler.postgres import advisory_key
from newswatch.leadership import (
    FileLeadership,
    PostgresLeadership,
    SharedDatabaseLock,
    keep,
    lead,
    leadership_for,
)

POSTGRES_URL = os.environ.get("NEWSWATCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres() -> str:
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'psycopg[binary]')")
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=2).close()
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL server answers at {POSTGRES_URL}: {exc}")
    return POSTGRES_URL


def _soon(attempt, timeout: float = 5.0) -> bool:
    """True when `attempt()` succeeds within `timeout` seconds, tried as a standby does."""
    deadline = time.monotonic() + timeout
    while not attempt():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- SQLite: a lock file per role -------------------------------------------------------------
def test_file_lock_has_one_holder_until_it_is_released(tmp_path) -> None:
    first, second = FileLeadership(tmp_path / "n.db", "dispatch"), FileLeadership(tmp_path / "n.db", "dispatch")
    assert first.try_acquire() and first.held()
    assert first.path == tmp_path / "n.db.dispatch.lock"
    assert first.holder() == str(os.getpid())
    assert not second.try_acquire() and not second.held()
    assert FileLeadership(tmp_path / "n.db", "bot").try_acquire()  # another role, another lock
    first.release()
    assert second.try_acquire()


def test_lock_file_is_released_when_its_process_dies(tmp_path) -> None:
    import subprocess
    import sys

    code = ("import sys, time; from newswatch.leadership import FileLeadership as F; "
            "lock = F(sys.argv[1], 'bot'); assert lock.try_acquire(); print('held', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "n.db")], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        mine = FileLeadership(tmp_path / "n.db", "bot")
        assert not mine.try_acquire()
        child.kill()
        child.wait(10)
        assert mine.try_acquire()
    finally:
        child.kill()
        child.wait(10)


def test_standby_becomes_active_when_the_lock_is_let_go(tmp_path, caplog) -> None:
    active, standby = FileLeadership(tmp_path / "n.db", "dispatch"), FileLeadership(tmp_path / "n.db", "dispatch")
    assert active.try_acquire()

    async def scenario() -> float:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.3, active.release)
        started = time.monotonic()
        assert await lead(standby, stop, retry=0.1)
        return time.monotonic() - started

    caplog.set_level("INFO", "newswatch.leadership")
    assert asyncio.run(scenario()) < 2
    assert "standing by" in caplog.text and "active now" in caplog.text


def test_standby_stops_waiting_when_told_to(tmp_path) -> None:
    holder = FileLeadership(tmp_path / "n.db", "bot")
    assert holder.try_acquire()

    async def scenario() -> bool:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.2, stop.set)
        return await lead(FileLeadership(tmp_path / "n.db", "bot"), stop, retry=0.05)

    assert asyncio.run(scenario()) is False


def test_role_processes_and_run_exclude_each_other(tmp_path) -> None:
    from newswatch.crawler.store import InstanceLock

    shared, other = SharedDatabaseLock(tmp_path / "n.db"), SharedDatabaseLock(tmp_path / "n.db")
    shared.acquire()
    other.acquire()  # role processes side by side
    with pytest.raises(DatabaseFileError, match="already running"):
        InstanceLock(tmp_path / "n.db").acquire()
    shared.release()
    other.release()
    run = InstanceLock(tmp_path / "n.db")
    run.acquire()
    with pytest.raises(DatabaseFileError, match="newswatch run"):
        SharedDatabaseLock(tmp_path / "n.db").acquire()
    run.release()


def test_leadership_follows_the_storage(tmp_path) -> None:
    from types import SimpleNamespace

    config = SimpleNamespace(storage=SimpleNamespace(path="n.db"), database_path=tmp_path / "n.db",
                             database=tmp_path / "n.db")
    for role in ("worker", "dispatch", "bot"):
        lock = leadership_for(config, role)
        assert isinstance(lock, FileLeadership) and lock.path == tmp_path / f"n.db.{role}.lock"
    config = SimpleNamespace(storage=SimpleNamespace(url="postgresql://db.example/newswatch"), database_path=None,
                             database="postgresql://db.example/newswatch")
    assert leadership_for(config, "worker") is None  # workers share the sources by leases
    lock = leadership_for(config, "dispatch")
    assert isinstance(lock, PostgresLeadership) and lock.key == advisory_key("dispatch")
    assert SingleWorkerLeases().claim({"a": "one.example", "b": "two.example"}) == (["a", "b"], [])


def test_advisory_keys_are_stable_and_differ_per_role() -> None:
    assert advisory_key("dispatch") == advisory_key("dispatch") != advisory_key("bot")
    assert -(2**63) <= advisory_key("bot") < 2**63


# -- PostgreSQL: an advisory lock on a connection of its own ----------------------------------
def test_postgres_second_connection_waits_until_the_first_closes() -> None:
    url = _postgres()
    role = f"test-{uuid.uuid4().hex}"
    first, second = PostgresLeadership(url, role), PostgresLeadership(url, role)
    try:
        assert first.try_acquire() and first.held()
        assert not second.try_acquire()
        assert not second.try_acquire()  # trying again changes nothing while the first holds it
        first.conn.close()  # the connection ends (a dead process): the lock goes with it
        assert not first.held()
        assert _soon(second.try_acquire) and second.held()  # once the server has seen the connection end
        assert not first.try_acquire()
        second.release()
        assert _soon(first.try_acquire)
    finally:
        first.release()
        second.release()


def test_postgres_lock_lost_with_its_connection_is_noticed() -> None:
    import psycopg

    url = _postgres()
    lock = PostgresLeadership(url, f"test-{uuid.uuid4().hex}")
    assert lock.try_acquire()
    with psycopg.connect(url, autocommit=True) as admin:  # as a server restart or a network cut would
        admin.execute("SELECT pg_terminate_backend(%s)", (lock.conn.info.backend_pid,))

    async def watch() -> None:
        await asyncio.wait_for(keep(lock, every=0.05), 5)

    asyncio.run(watch())  # returns: the lock is lost
    assert not lock.held()


# -- PostgreSQL: source leases shared by workers ----------------------------------------------
@pytest.fixture
def leases_url(postgres_url):
    """A fresh schema with the crawler's migrations applied (where the lease tables are made)."""
    from newswatch.storage import open_storage

    open_storage(postgres_url).close()
    return postgres_url


@contextlib.contextmanager
def _workers(url: str, *holders: str, **options):
    """PostgresLeases for each holder (the same `options`), all closed at the end."""
    from newswatch.crawler.leases import PostgresLeases

    leases = [PostgresLeases(url, holder=holder, **options) for holder in holders]
    try:
        yield leases
    finally:
        for lease in leases:
            lease.close()


def test_postgres_leases_give_each_source_to_one_worker(leases_url) -> None:
    a, b, c = "a", "b", "c"
    hosts = {a: "one.example", b: "two.example", c: "three.example"}
    with _workers(leases_url, "one", "two", ttl=60) as (one, two):
        assert one.claim({a: hosts[a], b: hosts[b]}).granted == [a, b]
        assert two.claim(hosts).granted == [c]  # a and b are the first worker's while it crawls them
        one.finish({a: 0.0, b: 30.0})  # a is free at once, b rests 30 s
        assert two.claim({a: hosts[a], b: hosts[b]}).granted == [a]
        two.finish({a: 0.0, c: 0.0})
        assert one.claim(hosts) == ([a, c], [])  # b still rests (not waiting: another worker polled it)


def test_postgres_leases_give_a_host_to_one_worker_at_a_time(leases_url) -> None:
    """All due sources of a host go to the worker that holds the host, until it finishes them all."""
    with _workers(leases_url, "one", "two", ttl=60) as (one, two):
        assert one.claim({"a": "news.example", "b": "news.example"}).granted == ["a", "b"]
        # news.example is one's: c waits (asked for again shortly), d is granted
        assert two.claim({"c": "news.example", "d": "other.example"}) == (["d"], ["c"])
        assert one.claim({"c": "news.example"}).granted == ["c"]  # the holder adds to its crawl of the host
        one.finish({"a": 0.0, "b": 0.0})
        assert two.claim({"a": "news.example"}) == ([], ["a"])  # c is still being crawled
        one.finish({"c": 0.0})
        assert two.claim({"a": "news.example", "c": "news.example"}) == (["a", "c"], [])


def test_postgres_one_claim_takes_whole_hosts_up_to_its_share(leases_url) -> None:
    """A worker that claims first leaves hosts for the others: whole hosts up to `share` due
    sources; the due sources of the hosts left over wait for its next claim, or go to another."""
    hosts = {f"{h}-{n}": f"{h}.example" for h in "abcd" for n in range(3)}
    with _workers(leases_url, "one", "two", share=4) as (one, two):
        first = one.claim(hosts)
        assert first.granted == ["a-0", "a-1", "a-2", "b-0", "b-1", "b-2"]  # a reaches 3 < 4, b makes 6
        assert first.waiting == [f"{h}-{n}" for h in "cd" for n in range(3)]
        second = two.claim(hosts)
        assert second.granted == [f"{h}-{n}" for h in "cd" for n in range(3)]
        assert second.waiting == [f"{h}-{n}" for h in "ab" for n in range(3)]  # one's, being crawled


def test_postgres_hosts_of_a_worker_whose_session_ended_are_free_at_once(leases_url) -> None:
    from newswatch.crawler.leases import PostgresLeases

    dead, alive = PostgresLeases(leases_url, holder="dead", ttl=600), PostgresLeases(leases_url, holder="alive", ttl=60)
    try:
        assert dead.claim({"wire": "news.example"}).granted == ["wire"]
        assert alive.claim({"wire": "news.example"}).granted == []
        dead.close()  # as a kill -9 does: the server ends the session, the crawl is never finished
        assert wait_until(lambda: alive.claim({"wire": "news.example"}).granted == ["wire"], 5)
    finally:
        alive.close()


def test_postgres_host_lease_of_a_live_worker_runs_out_after_its_ttl(leases_url) -> None:
    from newswatch.crawler.leases import PostgresLeases

    stuck, alive = PostgresLeases(leases_url, holder="stuck", ttl=0.5), PostgresLeases(leases_url, holder="alive", ttl=60)
    try:
        assert stuck.claim({"wire": "news.example"}).granted == ["wire"]  # connected, but never finishes
        assert alive.claim({"wire": "news.example"}).granted == []
        time.sleep(0.6)
        assert alive.claim({"wire": "news.example"}).granted == ["wire"]
    finally:
        stuck.close()
        alive.close()


def test_postgres_claims_skip_rows_another_worker_is_claiming(leases_url) -> None:
    import psycopg
    from newswatch.crawler.leases import PostgresLeases

    leases = PostgresLeases(leases_url, holder="one", ttl=60)
    hosts = {"a": "a.example", "b": "b.example"}
    try:
        leases.claim(hosts)
        leases.finish({"a": 0.0, "b": 0.0})
        with psycopg.connect(leases_url) as other, other.transaction():  # another worker, mid-claim on a
            other.execute("SELECT host FROM host_leases WHERE host = %s FOR UPDATE", ("a.example",))
            started = time.monotonic()
            assert leases.claim(hosts).granted == ["b"]  # skipped, not waited for
            assert time.monotonic() - started < 2
    finally:
        leases.close()


def test_postgres_leases_raise_database_unreachable_when_the_server_is_gone(leases_url) -> None:
    import psycopg
    from newswatch.crawler.leases import PostgresLeases
    from newswatch.crawler.store import DatabaseUnreachable

    leases = PostgresLeases(leases_url, holder="one", ttl=60)
    try:
        with psycopg.connect(leases_url, autocommit=True) as admin:  # as a server restart or a network cut would
            admin.execute("SELECT pg_terminate_backend(%s)", (leases.conn.info.backend_pid,))
        with pytest.raises(DatabaseUnreachable):
            leases.claim({"a": "a.example"})
        assert leases.claim({"a": "a.example"}).granted == ["a"]  # connected again
    finally:
        leases.close()


def test_listen_option_overrides_the_http_section(tmp_path) -> None:
    import yaml
    from newswatch.alerts.config import ConfigError, load_config

    from newswatch.cli import _with_listen

    shipped = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "newswatch.yaml").read_text("utf-8"))
    path = tmp_path / "newswatch.yaml"
    topics = {"topics": shipped["topics"]}
    path.write_text(yaml.safe_dump({**topics, "http": {"listen": "127.0.0.1:9108", "stuck_after": "5m"}}))
    config = load_config(str(path))
    assert _with_listen(config, None) is config
    moved = _with_listen(config, "127.0.0.1:9110")
    assert moved.http.listen == "127.0.0.1:9110" and moved.http.stuck_after == config.http.stuck_after
    path.write_text(yaml.safe_dump(topics))
    assert _with_listen(load_config(str(path)), "127.0.0.1:9111").http.listen == "127.0.0.1:9111"
    with pytest.raises(ConfigError, match="--listen"):
        _with_listen(config, "no port here")


def test_advisory_keys_name_the_schema_when_it_is_not_public() -> None:
    assert advisory_key("dispatch", "public") == advisory_key("dispatch")
    assert advisory_key("dispatch", "tenant_a") not in (advisory_key("dispatch"), advisory_key("dispatch", "tenant_b"))


def test_postgres_locks_of_two_schemas_do_not_exclude_each_other(postgres_url) -> None:
    other = f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}options=-csearch_path%3Dpublic"
    mine, theirs = PostgresLeadership(postgres_url, "dispatch"), PostgresLeadership(other, "dispatch")
    try:
        assert mine.try_acquire() and theirs.try_acquire()
        assert mine.key != theirs.key == advisory_key("dispatch")
    finally:
        mine.release()
        theirs.release()


def test_run_on_postgres_holds_both_locks_or_none(postgres_url) -> None:
    from types import SimpleNamespace

    from newswatch.leadership import JointLeadership, run_leadership

    config = SimpleNamespace(database=postgres_url)
    run, other_run = run_leadership(config), run_leadership(config)
    bot = PostgresLeadership(postgres_url, "bot")
    try:
        assert isinstance(run, JointLeadership) and [p.role for p in run.parts] == ["dispatch", "bot"]
        assert bot.try_acquire()
        assert not run.try_acquire()  # the bot's lock is held elsewhere: the dispatcher's is given back
        dispatch = PostgresLeadership(postgres_url, "dispatch")
        assert dispatch.try_acquire()
        dispatch.release()
        bot.release()
        assert _soon(run.try_acquire) and run.held()
        assert not other_run.try_acquire()
        assert not PostgresLeadership(postgres_url, "bot").try_acquire()
        run.parts[1].conn.close()  # one of its connections ends: the whole lock is lost
        assert not run.held()
    finally:
        run.release()
        other_run.release()
        bot.release()
    assert run_leadership(SimpleNamespace(database="n.db")) is None  # SQLite: the file lock of `run`
