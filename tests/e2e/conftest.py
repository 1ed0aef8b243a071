"""Shared pieces of the end-to-end tests: local servers, a config writer, the daemon process, and
the take-over of a role (dispatch, bot) by its standby process after a `kill -9`."""

from __future__ import annotations

import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from newswatch.leadership import RETRY
from tests.fakes.bot_api import FakeBotAPI
from tests.fakes.feed_server import FeedServer

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "123456789:AAE2e-Test-Token-Never-Logged_x9abc"
# A standby tries its role's lock every RETRY (2 s) seconds; the rest is starting the role's loops
# (the process is already up and connected), with room for a busy machine.
TAKE_OVER = RETRY + 8.0


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


@pytest.fixture
def bot_api() -> Iterator[FakeBotAPI]:
    with FakeBotAPI(token=TOKEN) as fake:
        yield fake


def shipped_topics() -> dict:
    return yaml.safe_load((ROOT / "config" / "newswatch.yaml").read_text("utf-8"))["topics"]


def write_config(tmp_path: Path, sources: list[dict], *, api_url: str | None = None,
                 database: str | Path | None = None, **extra) -> Path:
    """A config using the shipped topics, the given sources and a database in tmp_path (or
    `database`: a file, or a PostgreSQL URL)."""
    storage: dict = {"path": "newswatch.db"}
    if is_postgres(database):
        storage["url"] = str(database)
    elif database is not None:
        storage["path"] = str(database)
    data: dict = {"storage": storage, "sources": sources, "topics": shipped_topics()}
    if api_url:
        data["telegram"] = {"api_url": api_url, "poll_timeout": 1, "admins": [1001]}
    data.update(extra)
    path = tmp_path / "newswatch.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    return path


class DaemonProcess:
    """`newswatch run` (or a role: `command` worker, dispatch, bot) in a subprocess, as a user
    starts it; its output kept in files named after `name`."""

    def __init__(self, config: Path, *, token: str | None, log_dir: Path, module: str = "newswatch.cli",
                 extra_args: tuple[str, ...] = (), open_files: int | None = None,
                 wrapper: tuple[str, ...] = (), command: str = "run", name: str = "daemon") -> None:
        self.config = config
        self.command = command
        self.name = name
        self.token = token
        self.log_dir = log_dir
        self.module = module  # another entry point that builds the same Daemon (see launch_daemon.py)
        self.extra_args = extra_args
        self.open_files = open_files  # a lower RLIMIT_NOFILE for the daemon
        self.wrapper = wrapper  # a command that runs the daemon's command line (e.g. in its own mount namespace)
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def start(self) -> DaemonProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSWATCH_")}
        if self.token:
            env["NEWSWATCH_TELEGRAM_TOKEN"] = self.token
        self.runs += 1
        self.stdout = open(self.log_dir / f"{self.name}-{self.runs}.out", "w")
        self.stderr = open(self.log_dir / f"{self.name}-{self.runs}.err", "w")
        limit = self.open_files

        def lower_limit() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        self.proc = subprocess.Popen(
            [*self.wrapper, sys.executable, "-m", self.module, self.command, "-c", str(self.config), "--log-level", "DEBUG",
             *self.extra_args],
            cwd=ROOT, env=env, stdout=self.stdout, stderr=self.stderr, preexec_fn=lower_limit,
        )
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.stdout.close()
        self.stderr.close()
        return code

    def output(self) -> str:
        return "".join((self.log_dir / f"{self.name}-{i}.{ext}").read_text() for i in range(1, self.runs + 1) for ext in ("out", "err"))

    def finish(self) -> str:
        """Stop the daemon if it still runs, and check that its output holds neither the bot
        token nor a traceback; the output."""
        if self.proc and self.proc.poll() is None:
            self.stop()
        output = self.output()
        assert TOKEN not in output
        assert "Traceback" not in output, output[-4000:]
        return output


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def make(config: Path, token: str | None = TOKEN, **options) -> DaemonProcess:
        d = DaemonProcess(config, token=token, log_dir=tmp_path, **options)
        started.append(d)
        return d

    yield make
    for d in started:
        if d.proc and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)
    for d in started:
        if d.runs:
            assert TOKEN not in d.output(), "the bot token reached the daemon's output"


def is_postgres(database: str | Path | None) -> bool:
    return str(database).startswith("postgresql://")


def query(database: str | Path, sql: str, *args) -> list[tuple]:
    """The rows of `sql` (with `?` placeholders) read from `database`, a file (opened read-only)
    or a PostgreSQL URL, on a connection of its own."""
    if is_postgres(database):
        import psycopg

        with psycopg.connect(str(database), autocommit=True) as conn:
            return conn.execute(sql.replace("?", "%s"), args).fetchall()
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def wait_until(predicate: Callable[[], object], timeout: float = 30, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def active_process(processes: list[DaemonProcess], role: str) -> DaemonProcess:
    """The process of `processes` that says it is the active `role` now."""
    def find():
        active = [p for p in processes if p.proc.poll() is None and re.search(rf"{role}: (active|.*active now)", p.output())]
        return active[0] if len(active) == 1 else None
    return wait_until(find, what=f"one active {role}")


@dataclass
class TakeOver:
    """What `take_over` saw."""

    standby: DaemonProcess  # active now
    killed: float  # time.monotonic() when the active process was killed
    seconds: float  # from the kill until the standby said it is active
    at_kill: object = None  # what `at_kill()` returned once the killed process was gone


def take_over(processes: list[DaemonProcess], role: str, at_kill: Callable[[], object] | None = None) -> TakeOver:
    """Kill -9 the active process of `role` (another one standing by) and note `at_kill()` once it
    is gone; the standby says it is active within TAKE_OVER seconds."""
    active = active_process(processes, role)
    standby = next(p for p in processes if p is not active)
    assert "standing by" in standby.output()
    killed = time.monotonic()
    active.stop(signal.SIGKILL)
    noted = at_kill() if at_kill is not None else None
    wait_until(lambda: "active now" in standby.output(), timeout=TAKE_OVER, what=f"the standby {role} active")
    return TakeOver(standby, killed, time.monotonic() - killed, noted)


def assert_clean(*processes: DaemonProcess) -> None:
    """No traceback, and no 409 Conflict (two bots polling at once), in the processes' output."""
    for process in processes:
        output = process.output()
        assert not re.search(r"Traceback|Conflict", output), output[-3000:]
