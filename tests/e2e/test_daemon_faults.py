"""The running daemon under faults: config reload, failing sources, slow sources."""

from __future__ import annotations

import signal
import time

import yaml

from tests.e2e.conftest import wait_until, write_config
from tests.e2e.test_skeleton import CHAT, G20, SEED


def _texts(bot_api, chat=CHAT) -> list[str]:
    return [m.get("text") or "" for m in bot_api.messages_for(chat)]


def _start(bot_api) -> None:
    bot_api.user_message(CHAT, "/start")
    wait_until(lambda: any("Subscribed" in t for t in _texts(bot_api)), what="the /start reply")


def test_sighup_reloads_a_good_config_and_refuses_a_bad_one(tmp_path, feeds, bot_api, daemon_factory) -> None:
    feeds.set_feed("/wire.xml", [G20])
    feeds.set_feed("/extra.xml", [SEED])
    wire = {"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 1}
    config = write_config(tmp_path, [wire], api_url=f"{bot_api.url}/bot")
    daemon = daemon_factory(config).start()
    _start(bot_api)
    wait_until(lambda: feeds.hits_for("/wire.xml"), what="the first poll")
    assert not feeds.hits_for("/extra.xml")

    data = yaml.safe_load(config.read_text())
    data["sources"].append({"name": "extra", "url": feeds.url("/extra.xml"), "kind": "feed", "interval": 1})
    config.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: any("Kim Jong Un arrives in Beijing" in t for t in _texts(bot_api)),
               what="an alert from the source added by the reload")

    good = config.read_text()
    config.write_text(good.replace("threshold:", "threshold: -1 #", 1))
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "config reload refused" in daemon.output(), what="the refusal in the log")
    polls = len(feeds.hits_for("/extra.xml"))
    wait_until(lambda: len(feeds.hits_for("/extra.xml")) >= polls + 2, what="polling to go on")
    assert daemon.proc.poll() is None
    assert daemon.stop() == 0
    log = daemon.output()
    refusal = next(line for line in log.splitlines() if "config reload refused" in line)
    assert f"{config}:" in refusal and "threshold: must be > 0" in refusal


def test_source_failing_in_a_row_is_disabled_admins_told_and_reenabled(tmp_path, feeds, bot_api, daemon_factory) -> None:
    feeds.set("/broken.xml", b"oops", status=500, content_type="text/plain")
    config = write_config(
        tmp_path, [{"name": "broken", "url": feeds.url("/broken.xml"), "kind": "feed", "interval": 1}],
        api_url=f"{bot_api.url}/bot", crawler={"disable_after": 3, "failure_backoff_max": 1},
    )
    daemon = daemon_factory(config).start()
    _start(bot_api)  # chat 1001 is the admin in write_config
    wait_until(lambda: any("Source broken was disabled" in t for t in _texts(bot_api)), timeout=40,
               what="the admin message")
    polls = len(feeds.hits_for("/broken.xml"))
    assert polls == 3
    time.sleep(2.5)  # real time passes in the real daemon: a disabled source is not polled
    assert len(feeds.hits_for("/broken.xml")) == polls

    feeds.set_feed("/broken.xml", [SEED])
    bot_api.user_message(CHAT, "/enablesource broken")
    wait_until(lambda: any("Kim Jong Un arrives in Beijing" in t for t in _texts(bot_api)), timeout=30,
               what="an alert once the source is enabled again")
    assert daemon.stop() == 0
    assert "disabled after 3 failures in a row" in daemon.output()


def test_a_hanging_source_does_not_delay_other_alerts(tmp_path, feeds, bot_api, daemon_factory) -> None:
    feeds.set("/slow.xml", b"<", forever=True)
    feeds.set_feed("/wire.xml", [G20])
    config = write_config(tmp_path, [
        {"name": "slow", "url": feeds.url("/slow.xml"), "kind": "feed", "interval": 1},
        {"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 1},
    ], api_url=f"{bot_api.url}/bot", crawler={"timeout": 30})
    daemon = daemon_factory(config).start()
    _start(bot_api)
    wait_until(lambda: feeds.hits_for("/slow.xml") and feeds.hits_for("/wire.xml"), what="both polled")
    feeds.set_feed("/wire.xml", [SEED, G20])
    published = time.monotonic()
    wait_until(lambda: any("Kim Jong Un arrives in Beijing" in t for t in _texts(bot_api)), timeout=15,
               what="the alert while the slow source still hangs")
    took = time.monotonic() - published
    assert len(feeds.hits_for("/slow.xml")) == 1, "the hanging source was requested again while in flight"
    assert daemon.stop() == 0
    assert took < 10
