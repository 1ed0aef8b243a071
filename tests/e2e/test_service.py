"""Running as a service: /metrics and /healthz of the real daemon, and the operator commands.

The daemon runs as a subprocess with `http: {listen: 127.0.0.1:<free port>}` against the
local feed server and the fake Bot API. /metrics is parsed with prometheus-client's own
parser; /healthz must fail while Telegram hangs and recover once it answers again.
`crawl --once` is run under a pseudo-terminal (progress bar) and through a pipe (plain
lines); `export` output is read back; `doctor` is run against good and bad sources.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import pty
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import ROOT, TOKEN, wait_until, write_config
from tests.e2e.test_skeleton import G20, SEED
from tests.fakes.feed_server import FeedItem

CHAT = 1001
FAST = {"crawler": {"delay": 0, "autothrottle": False, "timeout": 5}}  # no politeness pause between local requests

HANOI = FeedItem(
    title="Trump and Kim Jong Un to hold second summit in Hanoi, North Korea says",
    link="https://wire.example.com/world/asia/trump-kim-hanoi-summit",
    guid="wire-2019-0206-hanoi",
    description=(
        "North Korean leader Kim Jong Un and U.S. President Donald Trump will hold their second summit "
        "in Hanoi, Pyongyang's state media said, as talks on denuclearisation and sanctions relief resume."
    ),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def _alerts(bot_api, needle: str) -> list[dict]:
    return [m for m in bot_api.messages_for(CHAT) if needle in (m.get("text") or "")]


def _subscribe(bot_api) -> None:
    bot_api.user_message(CHAT, "/start")
    wait_until(lambda: _alerts(bot_api, "Subscribed"), what="the /start reply")


def test_metrics_count_a_cycle(tmp_path, feeds, bot_api, daemon_factory) -> None:
    port = free_port()
    feeds.set_feed("/wire.xml", [G20])
    config = write_config(
        tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 1},
                   {"name": "broken", "url": feeds.url("/missing.xml"), "kind": "feed", "interval": 1}],
        api_url=f"{bot_api.url}/bot", http={"listen": f"127.0.0.1:{port}"}, **FAST,
    )
    started = time.time()
    daemon = daemon_factory(config).start()
    _subscribe(bot_api)
    wait_until(lambda: healthz(port)[0] == 200, what="a healthy daemon")
    wait_until(lambda: feeds.hits_for("/wire.xml") and feeds.hits_for("/missing.xml"), what="both sources polled")

    feeds.set_feed("/wire.xml", [SEED, G20])
    wait_until(lambda: _alerts(bot_api, "Kim Jong Un arrives in Beijing"), what="the first alert")
    polls = len(feeds.hits_for("/wire.xml"))
    wait_until(lambda: any(h.status == 304 for h in feeds.hits_for("/wire.xml")[polls:]), what="a 304")

    bot_api.fail_next("sendMessage", status=429, retry_after=1)
    feeds.set_feed("/wire.xml", [HANOI, SEED, G20])
    wait_until(lambda: _alerts(bot_api, "second summit in Hanoi"), what="the alert sent after a 429")

    samples = wait_until(lambda: (s := scrape(port)) and metric(s, "newswatch_alerts_sent_total") >= 2 and s,
                         what="two alerts counted as sent")
    assert daemon.stop() == 0

    assert metric(samples, "newswatch_fetches_total", source="wire", status="200") >= 3
    assert metric(samples, "newswatch_fetch_not_modified_total", source="wire") >= 1
    assert metric(samples, "newswatch_fetches_total", source="wire", status="304") == \
        metric(samples, "newswatch_fetch_not_modified_total", source="wire")
    assert metric(samples, "newswatch_fetches_total", source="broken", status="404") >= 1
    assert metric(samples, "newswatch_source_consecutive_failures", source="broken") >= 1
    assert metric(samples, "newswatch_source_consecutive_failures", source="wire") == 0
    assert metric(samples, "newswatch_fetch_bytes_total", source="wire") > 1000
    assert metric(samples, "newswatch_parse_errors_total", source="wire") == 0
    assert metric(samples, "newswatch_stories_stored_total", source="wire") == 3  # G20, the seed, Hanoi
    assert metric(samples, "newswatch_stories_stored_total", source="broken") == 0
    assert started < metric(samples, "newswatch_source_last_success_timestamp_seconds", source="wire") <= time.time()
    assert metric(samples, "newswatch_matches_total", topic="summit") == 2  # the seed and Hanoi, not G20
    assert metric(samples, "newswatch_alerts_queued_total") == 2
    assert metric(samples, "newswatch_alerts_sent_total") == 2
    assert metric(samples, "newswatch_telegram_429_total") == 1
    assert metric(samples, "newswatch_alerts_failed_total") == 0
    assert metric(samples, "newswatch_outbox_depth") == 0
    assert metric(samples, "newswatch_notifier_in_flight") == 0
    cycles = metric(samples, "newswatch_crawl_cycle_seconds_count")
    assert cycles >= 3 and metric(samples, "newswatch_crawl_cycle_seconds_bucket", le="+Inf") == cycles
    assert TOKEN not in daemon.output()


def test_healthz_fails_while_telegram_hangs_and_recovers(tmp_path, feeds, bot_api, daemon_factory) -> None:
    port = free_port()
    feeds.set_feed("/wire.xml", [G20])
    config = write_config(
        tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 1}],
        api_url=f"{bot_api.url}/bot", http={"listen": f"127.0.0.1:{port}", "stuck_after": 1}, **FAST,
    )
    daemon = daemon_factory(config).start()
    _subscribe(bot_api)
    status, body = wait_until(lambda: (h := healthz(port))[0] == 200 and h, what="a healthy daemon")
    assert body["status"] == "ok"
    assert all(check["ok"] for check in body["checks"].values())

    bot_api.set_hang(True, methods=["sendMessage"])
    feeds.set_feed("/wire.xml", [SEED, G20])
    status, body = wait_until(lambda: (h := healthz(port))[0] == 503 and h, what="/healthz to fail")
    assert body["status"] == "unhealthy"
    assert not body["checks"]["notifier"]["ok"]
    assert "stuck" in body["checks"]["notifier"]["problem"]
    assert body["checks"]["scheduler"]["ok"] and body["checks"]["database"]["ok"]
    assert metric(scrape(port), "newswatch_notifier_in_flight") == 1

    bot_api.set_hang(False)
    wait_until(lambda: _alerts(bot_api, "Kim Jong Un arrives in Beijing"), what="the alert once Telegram answers")
    status, body = wait_until(lambda: (h := healthz(port))[0] == 200 and h, what="/healthz to recover")
    assert body["checks"]["notifier"]["in_flight"] == 0
    assert daemon.stop() == 0


def test_http_port_in_use_is_a_config_error(tmp_path) -> None:
    from newswatch.alerts.config import ConfigError, load_config
    from newswatch.http_api import start_http
    from newswatch.metrics import Metrics
    from newswatch.alerts.deliver.notifier import ConsoleSink, Notifier
    from newswatch.alerts.deliver.outbox import Outbox
    from newswatch.alerts.subscriptions import Subscriptions
    from newswatch.crawler.clock import SystemClock
    from newswatch.storage import open_storage

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = load_config(write_config(tmp_path, [], http={"listen": f"127.0.0.1:{port}"}))
        db = open_storage(config.database_path)
        store, outbox = db.stories, Outbox(db.alerts)
        notifier = Notifier(outbox, store, Subscriptions(db.alerts), SystemClock(), None, ConsoleSink(io.StringIO()))

        async def start() -> None:
            await start_http(config, Metrics(), store=store, outbox=outbox, notifier=notifier,
                             scheduler=lambda: None, sources=lambda: [], telegram=lambda: "not used")

        with pytest.raises(ConfigError, match=rf"http.listen: cannot listen on 127.0.0.1:{port}: "):
            asyncio.run(start())
        db.close()


# -- the operator's commands ---------------------------------------------------------------------------
def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "newswatch.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", **(env or {})})


def _on_terminal(*args: str) -> tuple[int, str]:
    """Run the CLI attached to a pseudo-terminal; its exit status and everything it drew."""
    pid, fd = pty.fork()
    if pid == 0:  # the child
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "newswatch.cli", *args],
                  {"PATH": "/usr/bin:/bin", "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"})
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode("utf-8", "replace")


def test_crawl_once_progress_on_a_terminal_plain_lines_otherwise_then_export(tmp_path, feeds) -> None:
    feeds.set_feed("/wire.xml", [SEED, G20])
    config = write_config(tmp_path, [
        {"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 60},
        {"name": "broken", "url": feeds.url("/missing.xml"), "kind": "feed", "interval": 60},
    ], **FAST)

    proc = _cli("crawl", "--once", "-c", str(config))
    assert proc.returncode == 0, proc.stderr
    assert "  fetched   wire: HTTP 200, 2 stories, 2 new\n" in proc.stdout
    assert "  failed    broken: HTTP 404" in proc.stdout
    assert "sources: 2  ok: 1  unchanged (304): 0  failed: 1" in proc.stdout
    assert "\x1b[" not in proc.stdout and "━" not in proc.stdout  # no bar, no escape codes in a pipe

    code, screen = _on_terminal("crawl", "--once", "-c", str(config))
    assert code == 0, screen
    assert "━" in screen and "2/2" in screen  # the bar, complete
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert "Crawl summary" in plain and "Failed sources" in plain and "HTTP 404" in plain
    assert "fetched   wire" not in plain  # the plain per-source lines are for pipes

    out = tmp_path / "matched.csv"
    proc = _cli("export", "--since", "7d", "--format", "csv", "-o", str(out), "-c", str(config))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text("utf-8"))))
    assert [r["title"] for r in rows] == [SEED.title]
    assert rows[0]["url"] == SEED.link and rows[0]["source"] == "wire"
    assert "summit:" in rows[0]["topics"]
    proc = _cli("export", "--since", "1d", "--text", "-c", str(config))
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 1 and records[0]["title"] == SEED.title
    assert {"summit"} <= {t["topic"] for t in records[0]["topics"]}
    assert records[0]["published"] == SEED.published.isoformat(timespec="seconds")
    assert "Kim Jong Un arrived in Beijing by train" in records[0]["text"]
    assert _cli("export", "--since", "2100-01-01", "-c", str(config)).stdout == ""

    proc = _cli("stats", "--json", "-c", str(config))
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    health = {s["name"]: s["health"] for s in stats["sources"]}
    assert health == {"wire": "ok", "broken": "failing"}
    assert sum(stats["stories_per_day"].values()) == 2
    assert sum(stats["topics_per_day"]["summit"].values()) == 1
    assert stats["outbox"] == {"sent": 1}
    proc = _cli("stats", "-c", str(config))
    assert proc.returncode == 0 and "failing" in proc.stdout and "summit" in proc.stdout


def test_doctor_names_what_is_wrong(tmp_path, feeds, bot_api) -> None:
    feeds.set_feed("/wire.xml", [SEED])
    feeds.set("/page.html", "<html><body>Not a feed</body></html>", content_type="text/html")
    closed = free_port()
    config = write_config(tmp_path, [
        {"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed"},
        {"name": "gone", "url": feeds.url("/missing.xml"), "kind": "feed"},
        {"name": "html", "url": feeds.url("/page.html"), "kind": "feed"},
        {"name": "down", "url": f"http://127.0.0.1:{closed}/feed.xml", "kind": "feed"},
        {"name": "slow", "url": feeds.url("/slow.xml"), "kind": "feed"},
    ], api_url=f"{bot_api.url}/bot")
    feeds.set_feed("/slow.xml", [SEED], delay=2)

    proc = _cli("doctor", "--timeout", "1", "-c", str(config), env={"NEWSWATCH_TELEGRAM_TOKEN": TOKEN})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()

    def line(check: str) -> str:
        return next(l for l in lines if re.match(rf"^\S+\s+{re.escape(check)}\s", l))

    assert line("config").startswith("ok")
    assert line("database").startswith("warn") and "does not exist yet" in line("database")
    assert line("source wire").startswith("ok") and "feed with 1 item" in line("source wire")
    assert line("source gone").startswith("FAIL") and "HTTP 404" in line("source gone")
    assert line("source html").startswith("FAIL") and "not a usable feed" in line("source html")
    assert line("source down").startswith("FAIL") and "connection refused" in line("source down")
    assert line("source slow").startswith("FAIL") and "no answer within 1s" in line("source slow")
    assert line("telegram").startswith("ok") and "@newswatch_test_bot" in line("telegram")
    assert "4 problems to fix" in proc.stdout
    assert not (tmp_path / "newswatch.db").exists()  # doctor never creates the database

    wrong = TOKEN.split(":")[0] + ":AAE2e-Wrong-Token-Wrong-Token-Wrong"  # well-formed, not the bot's
    proc = _cli("doctor", "--timeout", "1", "-c", str(config), env={"NEWSWATCH_TELEGRAM_TOKEN": wrong})
    assert "FAIL  telegram" in proc.stdout and "refused the bot token" in proc.stdout
    assert wrong not in proc.stdout + proc.stderr and TOKEN not in proc.stdout + proc.stderr
