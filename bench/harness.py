"""The pieces every benchmark mode shares: the farm process, the fake Bot API, the daemon's
config and chats, and running the daemon (`crawl --once` or `run`) while measuring it.

The daemon always runs as a user starts it, `python -m newswatch.cli ...` in a subprocess, on
a config written here: the shipped topics, one feed source per farm feed, Telegram pointed
at the fake Bot API (token in the environment), and crawler settings for a farm that is a
single host (see `crawler_settings`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.proc import ChildCPU, TreeSampler, read_status, reap_orphans

ROOT = Path(__file__).resolve().parents[1]
FIRST_CHAT = 500_001


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSWATCH_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


# -- the farm --------------------------------------------------------------------------------------
class FarmProcess:
    """`python -m bench.farm` in a subprocess, and its control endpoint."""

    def __init__(self, feeds: int, *, seed: int = 1, slow: float = 0.01, failing: float = 0.01,
                 slow_delay: float = 5.0, log_dir: Path, texts: Path | None = None,
                 instance: int | None = None, port: int = 0, hosts: int = 1) -> None:
        self.args = [sys.executable, "-m", "bench.farm", "--feeds", str(feeds), "--seed", str(seed),
                     "--slow", str(slow), "--failing", str(failing), "--slow-delay", str(slow_delay)]
        if texts is not None:
            self.args += ["--texts", str(texts)]
        if instance is not None:
            self.args += ["--instance", str(instance)]
        if port:
            self.args += ["--port", str(port)]
        self.hosts = hosts
        self.args += ["--hosts", str(hosts)]
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}

    def start(self, timeout: float = 600.0) -> FarmProcess:
        self.stderr = open(self.log_dir / "farm.err", "w")
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=self.stderr,
                                     text=True)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line or time.monotonic() > deadline:
            raise RuntimeError(f"the feed farm did not start; see {self.log_dir / 'farm.err'}")
        self.info = json.loads(line)
        self.base = f"http://127.0.0.1:{self.info['port']}"
        return self

    def call(self, action: str, data: dict | None = None, timeout: float = 60.0) -> dict:
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(f"{self.base}/control/{action}", data=body, method="POST" if body else "GET",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def reset(self) -> None:
        self.call("reset", {})

    def stats(self) -> dict:
        return self.call("stats")

    def advance(self, share: float, matching: float) -> dict:
        return self.call("advance", {"share": share, "matching": matching})

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.stderr.close()


def start_bot_api():
    """The fake Telegram Bot API of the test suite, on 127.0.0.1, in a thread of this process."""
    from tests.fakes.bot_api import FakeBotAPI

    return FakeBotAPI(strict_entities=False).start()


_HREF = re.compile(r'href="([^"]+)"')


def sends_by_url(bot) -> dict[str, list[tuple[float, int]]]:
    """(arrival time, chat) of every sendMessage at the fake Bot API, by the story link it carries."""
    out: dict[str, list[tuple[float, int]]] = {}
    for entry in bot.sent:
        text = entry.get("text") or ""
        match = _HREF.search(text)
        if match:
            url = match.group(1).replace("&amp;", "&")
            out.setdefault(url, []).append((entry["time"], entry["chat_id"]))
    return out


# -- config and database ---------------------------------------------------------------------------
def crawler_settings(concurrency: int, timeout: int = 30) -> dict:
    """The farm is ONE host: per-host politeness (per_host, delay, AutoThrottle) would make
    10,000 requests to it take hours, where the same sources spread over many real hosts
    would not wait on each other. So per_host is raised to the overall concurrency and the
    delay and AutoThrottle are off; the overall concurrency stays the product default (32)."""
    return {"concurrency": concurrency, "per_host": concurrency, "delay": 0, "autothrottle": False,
            "timeout": timeout}


def write_config(work: Path, farm_base: str, feeds: int, *, api_url: str, interval: int, concurrency: int,
                 timeout: int = 30, extra: dict | None = None, hosts: int = 1) -> Path:
    """The daemon's config for the farm at `farm_base` (its feeds on `hosts` loopback addresses)."""
    from bench.farm import feed_url

    port = int(farm_base.rsplit(":", 1)[1])
    shipped = yaml.safe_load((ROOT / "config" / "newswatch.yaml").read_text("utf-8"))
    data = {
        "storage": {"path": "newswatch.db"},
        "telegram": {"api_url": api_url, "poll_timeout": 2, "admins": []},
        "crawler": crawler_settings(concurrency, timeout),
        "sources": [{"name": f"farm-{n:06d}", "url": feed_url(port, n, hosts), "kind": "feed",
                     "interval": interval} for n in range(feeds)],
        "topics": shipped["topics"],
    }
    data.update(extra or {})
    work.mkdir(parents=True, exist_ok=True)
    for stale in work.glob("newswatch.db*"):  # a fresh database every time
        stale.unlink()
    path = work / "newswatch.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def subscribe_chats(config_path: Path, chats: int) -> list[int]:
    """Chats subscribed to every topic, as /start would leave them."""
    from newswatch.alerts.config import load_config
    from newswatch.alerts.subscriptions import Subscriptions
    from newswatch.storage import open_storage

    config = load_config(config_path)
    storage = open_storage(config.database)
    subs = Subscriptions(storage.alerts)
    ids = [FIRST_CHAT + i for i in range(chats)]
    for chat_id in ids:
        subs.start(chat_id, list(config.topics), kind="private", title=f"bench chat {chat_id}")
    storage.close()
    return ids


class Database:
    """Read-only looks at the daemon's database while it runs (WAL lets readers in)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def dispatched(self) -> bool:
        """Every stored story went through the dispatcher."""
        try:
            cursor = self._query("SELECT value FROM meta WHERE key = 'dispatch_cursor'")
            top = self._query("SELECT MAX(seq) FROM stories")[0][0] or 0
        except sqlite3.Error:
            return False
        return int(cursor[0][0] if cursor else 0) >= top

    def settled(self) -> bool:
        """Every stored story dispatched and no alert due for delivery."""
        try:
            due = self._query("SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND not_before <= ?",
                              (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 1)),))[0][0]
        except sqlite3.Error:
            return False
        return due == 0 and self.dispatched()

    def reach(self) -> dict:
        """Who got which matching story (see `bench.scale.coverage`): the stories that passed a
        topic and may alert, the alerts sent, and each clustered story's cluster."""
        return {
            "matched": dict(self._query("SELECT DISTINCT s.id, s.url FROM matches m JOIN stories s ON s.id = m.story_id"
                                        " WHERE s.held = ''")),
            "sent": self._query("SELECT chat_id, story_id FROM outbox WHERE kind = 'alert' AND state = 'sent'"),
            "clusters": dict(self._query("SELECT story_id, cluster_id FROM story_clusters")),
            "chats": [row[0] for row in self._query("SELECT chat_id FROM chats WHERE active = 1")],
        }

    def backing_off(self, margin: float = 10.0) -> int:
        """Sources whose backoff keeps them from the next poll."""
        try:
            when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + margin))
            return self._query("SELECT COUNT(*) FROM fetch_state WHERE not_before > ?", (when,))[0][0]
        except sqlite3.Error:
            return 0

    def stories(self) -> int:
        try:
            return self._query("SELECT COUNT(*) FROM stories")[0][0]
        except sqlite3.Error:
            return 0

    def merged_into_alert(self, url: str) -> bool:
        """The story at `url` was stored and clustered with another story (the same event) that
        did alert: the daemon attached it to that alert instead of alerting again."""
        return bool(self._query(
            "SELECT 1 FROM stories s JOIN story_clusters c ON c.story_id = s.id "
            "JOIN story_clusters other ON other.cluster_id = c.cluster_id AND other.story_id != s.id "
            "JOIN outbox o ON o.story_id = other.story_id WHERE s.url = ? LIMIT 1", (url,)))


# -- running the daemon ------------------------------------------------------------------------------
@dataclass
class OnceResult:
    wall: float
    cpu: float
    hwm: int
    exit_code: int
    sampled_cpu: float


def crawl_once(config: Path, token: str, log_dir: Path, label: str, timeout: float = 3600.0) -> OnceResult:
    """`newswatch crawl --once` to the end; CPU exact from rusage (the process and every
    descendant reaped by it or, orphaned, by this subreaper), peak RSS sampled (VmHWM)."""
    out = open(log_dir / f"{label}.out", "w")
    err = open(log_dir / f"{label}.err", "w")
    keep = {p for p in _my_children()}
    with ChildCPU() as usage:
        started = time.perf_counter()
        env = {"NEWSWATCH_TELEGRAM_TOKEN": token}
        proc = subprocess.Popen([sys.executable, "-m", "newswatch.cli", "crawl", "--once", "-c", str(config)],
                                cwd=ROOT, env=_env(env), stdout=out, stderr=err)
        sampler = TreeSampler(proc.pid, interval=0.1).start()
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(10)
        wall = time.perf_counter() - started
        sampler.stop()
        reap_orphans(keep)
    out.close()
    err.close()
    return OnceResult(wall, usage.seconds, sampler.peak_hwm, code, sampler.samples[-1].cpu if sampler.samples else 0.0)


def _my_children() -> list[int]:
    from bench.proc import children_map

    return children_map().get(os.getpid(), [])


@dataclass
class DaemonRun:
    """`newswatch run` in a subprocess with a sampler on its process tree."""

    config: Path
    token: str
    log_dir: Path
    label: str
    probe: Path | None = None
    profile: str = ""          # "cprofile": the whole run under cProfile; py-spy: see attach_profiler
    command: str = "run"       # or a role: worker, dispatch, bot
    profile_out: Path | None = None
    proc: subprocess.Popen | None = None
    sampler: TreeSampler | None = None
    started: float = 0.0
    pid: int = 0
    exit_code: int | None = None
    notes: list[str] = field(default_factory=list)

    def start(self, bot=None) -> DaemonRun:
        self.polls_before = len(bot.calls_to("getUpdates")) if bot is not None else 0
        self.out = open(self.log_dir / f"{self.label}.out", "w")
        self.err = open(self.log_dir / f"{self.label}.err", "w")
        env = {"NEWSWATCH_TELEGRAM_TOKEN": self.token}
        module = ["-m", "newswatch.cli"]
        if self.probe is not None:
            module = ["-m", "bench.probe"]
            env["BENCH_PROBE_FILE"] = str(self.probe)
        argv = [sys.executable, *module, self.command, "-c", str(self.config)]
        if self.profile == "cprofile":
            argv = [sys.executable, "-m", "cProfile", "-o", str(self.profile_out), *module, self.command,
                    "-c", str(self.config)]
        self.started = time.time()
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=_env(env), stdout=self.out, stderr=self.err)
        self.pid = self.proc.pid
        self.sampler = TreeSampler(self.pid, interval=0.1).start()
        return self

    def attach_profiler(self, bot, timeout: float = 60.0) -> None:
        """Start py-spy on the running daemon (and its children) once its start-up is over:
        the first getUpdates at the Bot API comes right before the scheduler starts."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(bot.calls_to("getUpdates")) <= self.polls_before:
            time.sleep(0.02)
        self.spy_err = open(self.log_dir / f"{self.label}.py-spy.err", "w")
        self.spy = subprocess.Popen(["py-spy", "record", "--pid", str(self.pid), "--rate", "200", "--format", "raw",
                                     "--subprocesses", "--nonblocking", "-o", str(self.profile_out)],
                                    stdout=self.spy_err, stderr=subprocess.STDOUT)

    def detach_profiler(self) -> None:
        spy = getattr(self, "spy", None)
        if spy is None:
            return
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(10)
        self.spy_err.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> dict[str, int]:
        return read_status(self.pid)

    def stop(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.notes.append(f"did not stop within {timeout:.0f}s of SIGTERM; killed")
                self.proc.kill()
                self.proc.wait(10)
        if self.sampler:
            self.sampler.stop()
        self.exit_code = self.proc.returncode
        self.out.close()
        self.err.close()
        return self.exit_code

    def wait_round(self, farm: FarmProcess, db: Database, expected: int, *, timeout: float, idle: bool = True) -> dict:
        """Wait until the farm has answered `expected` requests with none in flight, every
        stored story is dispatched, nothing is due in the outbox (so every alert reached the
        Bot API), and (with `idle`) the daemon has been idle for a second. Returns the farm's stats and
        when the work ended; `timed_out` when `timeout` passed first."""
        assert self.sampler is not None
        deadline = time.monotonic() + timeout
        timed_out = False
        while True:
            if not self.alive():
                raise RuntimeError(f"the daemon exited ({self.proc.returncode}); see {self.log_dir / (self.label + '.err')}")
            stats = farm.stats()
            fetched = stats["requests"] >= expected and stats["in_flight"] == 0
            if fetched and db.settled() and (not idle or self.sampler.idle_for(1.0)):
                break
            if time.monotonic() > deadline:
                timed_out = True
                break
            time.sleep(0.25)
        first = stats["first_request"] or self.started
        end = max(stats["last_response"] or first, self.sampler.last_busy(first))
        return {"stats": stats, "first": first, "end": end, "timed_out": timed_out}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def mb(value: float) -> str:
    return f"{value / 1e6:,.1f}"


def markdown(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)
