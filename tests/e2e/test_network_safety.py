"""End to end: what the daemon and the operator commands may reach, show and bear.

- No fetch reaches a forbidden server (127.0.0.1 here, counting every request it gets) through
  a redirect, a sitemap entry, a site's link, a full-text item's link, or a host name that
  resolves elsewhere once `/addsource` has checked it (DNS rebinding); each refusal is a clear
  per-source error and the daemon goes on.
- The user name and password of a source URL appear in no log line and no command output.
- The HTTP endpoint answers /healthz through a flood of idle, half-sent connections, with the
  daemon's file descriptors limited, and logs the flood in a few lines.
- `doctor` reads a feed larger than one network buffer whole.

"Public" servers listen on 127.0.0.2: the config lists 127.0.0.2/32 under
`telegram.allow_private_source_networks`, or (for rebinding) the daemon is started by
`tests.e2e.launch_daemon` with a policy that takes 127.0.0.2 for a public address.
"""

from __future__ import annotations

import json
import socket
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from tests.e2e.conftest import ROOT, TOKEN, shipped_topics, wait_until
from tests.e2e.test_skeleton import SEED
from tests.fakes.bot_api import FakeBotAPI
from tests.fakes.feed_server import FeedItem

ADMIN = 1001
FAST = {"delay": 0, "autothrottle": False, "timeout": 5}
SECRET = "s3cr3t-Pa55"


def _config(tmp_path: Path, sources: list[dict], *, telegram: dict | None = None, crawler: dict | None = None,
            **extra) -> Path:
    data: dict = {"storage": {"path": "newswatch.db"}, "telegram": telegram or {},
                  "crawler": {**FAST, **(crawler or {})}, "sources": sources, "topics": shipped_topics(), **extra}
    path = tmp_path / "newswatch.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "newswatch.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", **(env or {})})


def _fetch_errors(db: Path) -> dict[str, str]:
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {r[0]: r[1] or "" for r in conn.execute("SELECT source, last_error FROM fetch_state")}
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


# -- the address policy --------------------------------------------------------------------------------


def test_config_sources_restricted_never_reach_the_forbidden_server(tmp_path, public, forbidden,
                                                                    daemon_factory) -> None:
    """crawler.restrict_private_addresses: true, 127.0.0.2/32 allowed: a feed that redirects, a
    sitemap, a site whose article redirects, a full-text feed, all leading to 127.0.0.1."""
    secret = forbidden.url("/secret")
    public.set("/moved.xml", status=302, headers={"Location": secret})
    public.set("/sitemap.xml", ('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                                f"<url><loc>{secret}-map</loc></url></urlset>"), content_type="application/xml")
    public.set("/index", f'<html><body><a href="{public.url("/view/1")}">story</a></body></html>',
               content_type="text/html")
    public.set("/view/1", status=302, headers={"Location": f"{secret}-site"})
    public.set_feed("/full.xml", [FeedItem("Kim Jong Un meets Trump", f"{secret}-full",
                                           description="Kim Jong Un and Trump met.")])
    config = _config(tmp_path, [
        {"name": "moved", "url": public.url("/moved.xml"), "interval": 1},
        {"name": "map", "kind": "sitemap", "url": public.url("/sitemap.xml"), "interval": 1},
        {"name": "site", "kind": "site", "url": public.url("/index"), "follow": "/view/", "interval": 1},
        {"name": "full", "url": public.url("/full.xml"), "full_text": True, "interval": 1},
    ], telegram={"allow_private_source_networks": ["127.0.0.2/32"]}, crawler={"restrict_private_addresses": True})
    daemon = daemon_factory(config, token=None).start()
    wait_until(lambda: len(public.hits_for("/moved.xml")) >= 3 and len(public.hits_for("/full.xml")) >= 2
               and len(public.hits_for("/view/1")) >= 1 and len(public.hits_for("/sitemap.xml")) >= 2, 40,
               what="every source polled more than once")
    errors = _fetch_errors(tmp_path / "newswatch.db")
    assert daemon.stop() == 0
    output = daemon.output()
    assert forbidden.hits == [], forbidden.hits
    assert errors["moved"] == (f"refused: {secret} resolves to a loopback address (127.0.0.1), not allowed for source "
                               "moved: sources (crawler.restrict_private_addresses) may reach only public addresses "
                               "and the networks in telegram.allow_private_source_networks")
    for name in ("map", "site", "full"):
        refused = (rf"source {name}: article \S+ not fetched: refused: {re.escape(secret)}-{name} resolves to a "
                   "loopback address")
        assert re.search(refused, output), name
    assert "Traceback" not in output


def _bot_config(tmp_path: Path, bot: FakeBotAPI, sources: list[dict]) -> Path:
    return _config(tmp_path, sources, telegram={"api_url": f"{bot.url}/bot", "poll_timeout": 1, "admins": [ADMIN],
                                                "allow_private_source_networks": ["127.0.0.2/32"]})


def _ask(bot: FakeBotAPI, text: str, expect: str) -> str:
    before = len(bot.messages_for(ADMIN))
    bot.user_message(ADMIN, text)

    def found():
        return next((m["visible"] for m in bot.messages_for(ADMIN)[before:] if expect in (m.get("visible") or "")),
                    None)

    return wait_until(found, 15, what=f"a reply containing {expect!r}")  # type: ignore[return-value]


def _polled_with_error(db: Path, name: str) -> bool:
    return bool(_fetch_errors(db).get(name))


def test_addsource_redirect_never_reaches_the_forbidden_server(tmp_path, public, forbidden, daemon_factory) -> None:
    """127.0.0.2/32 is allowed for sources added from Telegram; 127.0.0.1 is not."""
    public.set_feed("/wire.xml", [SEED])
    public.set("/redirect.xml", status=302, headers={"Location": forbidden.url("/secret")})
    db = tmp_path / "newswatch.db"
    with FakeBotAPI(token=TOKEN) as bot:
        config = _bot_config(tmp_path, bot, [{"name": "wire", "url": public.url("/wire.xml"), "interval": 1}])
        daemon = daemon_factory(config).start()
        wait_until(lambda: bot.calls_to("getUpdates"), 30, what="the bot to start polling")
        _ask(bot, f"/addsource hop {public.url('/redirect.xml')} 1", "Added source hop")
        wait_until(lambda: len(public.hits_for("/redirect.xml")) >= 3, 30, what="hop polled three times")
        listing = _ask(bot, "/sources", "Sources")
        assert daemon.stop() == 0
    errors = _fetch_errors(db)
    assert forbidden.hits == [], forbidden.hits
    assert errors["hop"].startswith(f"refused: {forbidden.url('/secret')} resolves to a loopback address (127.0.0.1), "
                                    "not allowed for source hop: sources added from Telegram may reach only public")
    assert "failing" in listing and "refused: " in listing
    assert not errors.get("wire")  # the other source goes on


def test_dns_rebinding_after_addsource_never_reaches_the_forbidden_server(tmp_path, public, forbidden,
                                                                         daemon_factory) -> None:
    """rebind.test resolves to 127.0.0.2 (public, for this daemon) when /addsource checks it,
    then to 127.0.0.1."""
    public.set_feed("/wire.xml", [SEED])
    answers = {"rebind.test": ["127.0.0.2", "127.0.0.1"]}
    rebound = f"http://rebind.test:{forbidden.port}/secret"
    db = tmp_path / "newswatch.db"
    with FakeBotAPI(token=TOKEN) as bot:
        config = _bot_config(tmp_path, bot, [{"name": "wire", "url": public.url("/wire.xml"), "interval": 1}])
        daemon = daemon_factory(config, module="tests.e2e.launch_daemon",
                                extra_args=("--answers", json.dumps(answers))).start()
        wait_until(lambda: bot.calls_to("getUpdates"), 30, what="the bot to start polling")
        _ask(bot, f"/addsource rebound {rebound} 1", "Added source rebound")  # checked while it was "public"
        wait_until(lambda: _polled_with_error(db, "rebound"), 30, what="the new source to fail")
        assert daemon.stop() == 0
    errors = _fetch_errors(db)
    assert forbidden.hits == [], forbidden.hits
    assert errors["rebound"].startswith(f"refused: {rebound} resolves to a loopback address (127.0.0.1), not allowed "
                                        "for source rebound: sources added from Telegram may reach only public")
    assert not errors.get("wire")


# -- credentials in source URLs -------------------------------------------------------------------------------


def test_source_credentials_never_appear_in_logs_or_command_output(tmp_path, feeds, daemon_factory) -> None:
    feeds.set_feed("/wire.xml", [SEED])
    with_auth = feeds.url("/wire.xml").replace("http://", f"http://reader:{SECRET}@")
    failing = feeds.url("/missing.xml").replace("http://", f"http://reader:{SECRET}@")
    config = _config(tmp_path, [{"name": "wire", "url": with_auth, "interval": 1},
                                {"name": "gone", "url": failing, "interval": 1}])
    daemon = daemon_factory(config, token=None).start()
    wait_until(lambda: len(feeds.hits_for("/missing.xml")) >= 2 and feeds.hits_for("/wire.xml"), 30,
               what="both sources polled")
    wait_until(lambda: "source gone: HTTP 404" in daemon.output(), 10, what="the failure logged")
    assert daemon.stop() == 0
    outputs = {"daemon": daemon.output()}
    for command in ("check-config", "doctor", "stats"):
        proc = _cli(command, "-c", str(config))
        outputs[command] = proc.stdout + proc.stderr
    for name, text in outputs.items():
        assert SECRET not in text, f"the password of a source URL appeared in {name}:\n{text[-3000:]}"
    assert "http://***@127.0.0.1" in outputs["check-config"]
    assert "http://***@127.0.0.1" in outputs["doctor"] and "HTTP 404" in outputs["doctor"]
    assert "url=http://***@127.0.0.1" in outputs["daemon"]


# -- the HTTP endpoint under a flood -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


FLOOD = 400


def test_healthz_answers_through_a_flood_of_idle_connections(tmp_path, feeds, daemon_factory) -> None:
    feeds.set_feed("/wire.xml", [SEED])
    port = _free_port()
    config = _config(tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "interval": 1}],
                     http={"listen": f"127.0.0.1:{port}"})  # the default limits
    daemon = daemon_factory(config, token=None, open_files=256).start()
    wait_until(lambda: _healthz(port) == 200, 30, what="a healthy daemon")
    idle: list[socket.socket] = []
    try:
        for _ in range(FLOOD):  # half-sent requests that never end, more than the daemon has descriptors
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            idle.append(s)
        polls = len(feeds.hits_for("/wire.xml"))
        assert _healthz(port) == 200
        wait_until(lambda: len(feeds.hits_for("/wire.xml")) >= polls + 2, 20, what="the feed polled during the flood")
        assert _healthz(port) == 200
    finally:
        for s in idle:
            s.close()
    assert daemon.stop() == 0
    output = daemon.output()
    assert "Too many open files" not in output
    assert "out of system resource" not in output
    assert output.count("HTTP endpoint:") <= 3, output[-3000:]
    assert len(output) < 200_000


def test_a_request_head_must_arrive_within_the_header_timeout(tmp_path, daemon_factory) -> None:
    port = _free_port()
    config = _config(tmp_path, [], http={"listen": f"127.0.0.1:{port}", "header_timeout": 1})
    daemon = daemon_factory(config, token=None).start()
    wait_until(lambda: _healthz(port) in (200, 503), 30, what="the endpoint to answer")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        try:
            assert s.recv(1024) == b""  # closed by the daemon (recv times out after 10s otherwise)
        except ConnectionResetError:
            pass
    daemon.stop()
    assert "HTTP endpoint: connections dropped for sending no complete request within 1s" in daemon.output()


# -- doctor ----------------------------------------------------------------------------------------------------


def test_doctor_reads_a_large_feed_whole(tmp_path, feeds) -> None:
    items = [FeedItem(f"Story {i}: Kim Jong Un and the summit", f"https://wire.example.com/{i}",
                      description="North Korea " * 80) for i in range(120)]
    feeds.set_feed("/big.xml", items)
    size = len(feeds._routes["/big.xml"].body)
    assert size > 100_000
    config = _config(tmp_path, [{"name": "big", "url": feeds.url("/big.xml")}])
    proc = _cli("doctor", "-c", str(config))
    line = next(l for l in proc.stdout.splitlines() if "source big" in l)
    assert line.startswith("ok") and f"{size:,} bytes, feed with 120 items" in line, proc.stdout


def test_doctor_refuses_a_redirect_into_loopback(tmp_path, public, forbidden) -> None:
    public.set("/moved.xml", status=302, headers={"Location": forbidden.url("/secret")})
    config = _config(tmp_path, [{"name": "moved", "url": public.url("/moved.xml")}],
                     telegram={"allow_private_source_networks": ["127.0.0.2/32"]},
                     crawler={"restrict_private_addresses": True})
    proc = _cli("doctor", "-c", str(config))
    line = next(l for l in proc.stdout.splitlines() if "source moved" in l)
    assert line.startswith("FAIL") and f"refused: {forbidden.url('/secret')} resolves to a loopback address" in line
    assert forbidden.hits == []
