"""End to end: learning from votes. Alerts voted 👍/👎 in Telegram -> `newswatch feedback export`
-> `newswatch train` -> `newswatch explain` shows the model moving a borderline story's score;
the running daemon loads the new model on SIGHUP and scores with it (a borderline story the
votes speak for alerts, one they speak against does not); a corrupt model file gives one clear
log line and the rules alone go on alerting."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from tests.e2e.conftest import TOKEN, DaemonProcess, wait_until
from tests.e2e.test_feedback import Desk, buttons, newswatch
from tests.fakes.bot_api import FakeBotAPI
from tests.fakes.feed_server import FeedItem, FeedServer

ALICE = 3003
TOPICS = {"talks": {"description": "Talks with North Korea.", "threshold": 2,
                    "groups": {"talks": {"weight": 2, "terms": ["talks"]}}}}
NOW = datetime.now(UTC).replace(microsecond=0)
PEACE = [
    ("Envoys meet in Pyongyang", ("Diplomats from Washington and Pyongyang held talks on denuclearisation and the "
                                 "nuclear programme.")),
    ("Nuclear envoy heads to Beijing", ("The envoy said talks with North Korea on its nuclear weapons would resume "
                                       "after the missile tests.")),
    ("Kim receives South Korean delegation", ("Kim Jong Un welcomed the delegation for talks on a peace treaty and "
                                             "denuclearisation of the peninsula.")),
    ("Six-party format revived", ("Negotiators from six nations began talks in Beijing on North Korea's nuclear "
                                 "disarmament.")),
    ("Hotline reopened across the border", ("Seoul and Pyongyang restored the hotline and agreed to talks on military "
                                           "tension and the nuclear issue.")),
]
WAGES = [
    ("Car plant strike looms", "The factory union held talks with managers over overtime pay and wages at the car plant."),
    ("Dockworkers reject offer", "Port workers said wage talks with employers had stalled over pensions and shift pay."),
    ("Nurses vote on pay deal", "Hospital unions ended talks with the health board on salaries, overtime and staffing."),
    ("Teachers union threatens walkout", ("Talks between the teachers union and the council over pay rises and pensions "
                                         "broke down.")),
    ("Airline pilots accept raise", ("Pilots ended months of contract talks with the airline over wages, pensions and "
                                    "rest hours.")),
]
BORDERLINE_IN = ("Delegations arrive in Panmunjom", ("Envoys of Pyongyang and Washington open talks on the nuclear "
                                                    "programme and denuclearisation."))
BORDERLINE_OUT = ("Bus drivers and city hall", ("The drivers union opened talks with the city over wages, overtime pay "
                                               "and pensions."))


def item(title: str, text: str, minutes: int) -> FeedItem:
    slug = "-".join(title.lower().split())
    return FeedItem(title=title, link=f"https://wire.example.com/{slug}", description=text,
                    published=NOW - timedelta(minutes=minutes))


def write_config(path: Path, sources: list[dict], bot: FakeBotAPI | None = None, **extra) -> Path:
    data: dict = {"storage": {"path": "newswatch.db"}, "sources": sources, "topics": TOPICS, **extra}
    if bot is not None:
        data["telegram"] = {"api_url": f"{bot.url}/bot", "poll_timeout": 1, "admins": [1001],
                            "allow_private_source_networks": ["127.0.0.0/8"]}
    else:
        data["telegram"] = {"allow_private_source_networks": ["127.0.0.0/8"]}
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def test_votes_train_a_model_that_explain_shows_and_the_daemon_loads_on_sighup(tmp_path: Path) -> None:
    with FeedServer() as feeds, FakeBotAPI(token=TOKEN) as bot:
        feeds.set_feed("/wire.xml", [])
        config = write_config(tmp_path / "newswatch.yaml",
                              [{"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 1}], bot)
        daemon = DaemonProcess(config, token=TOKEN, log_dir=tmp_path).start()
        desk = Desk(bot, tmp_path / "newswatch.db")
        try:
            wait_until(lambda: bot.calls_to("getUpdates"), 30, what="the bot to start polling")
            desk.ask(ALICE, "/start", "Subscribed to all topics")
            stories = [item(t, x, 60 - i) for i, (t, x) in enumerate(PEACE + WAGES)]
            feeds.set_feed("/wire.xml", stories)
            for story in stories:  # 👍 under the talks with Pyongyang, 👎 under the wage talks
                alert = desk.alert(ALICE, story.title)
                up, down = [data for _, data in buttons(alert)]
                good = story.title in dict(PEACE)
                desk.tap(ALICE, up if good else down, alert["message_id"],
                         "Thanks — marked relevant" if good else "Thanks — marked not relevant")
            assert "no model file" in daemon_log(tmp_path)

            labels = tmp_path / "votes.jsonl"
            done = newswatch("feedback", "export", "-c", str(config), "-o", str(labels))
            assert done.returncode == 0, done.stderr
            assert len(labels.read_text("utf-8").splitlines()) == 10
            done = newswatch("train", "-c", str(config), str(labels))
            assert done.returncode == 0, done.stderr
            assert "10 labelled stories (10 from votes)" in done.stdout
            [row] = [line.split() for line in done.stdout.splitlines() if line.startswith("talks")]
            assert row[1:3] == ["5", "5"], done.stdout  # positives, negatives
            assert (tmp_path / "newswatch.model.npz").is_file()

            story_file = tmp_path / "borderline.txt"
            story_file.write_text("\n".join(BORDERLINE_OUT), "utf-8")
            done = newswatch("explain", "-c", str(config), str(story_file))
            assert done.returncode == 0, done.stderr
            assert "talks: no  score 1." in done.stdout and "model: probability 0." in done.stdout, done.stdout
            assert "rules 2.00 x 0.5" in done.stdout

            daemon.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "model loaded from" in daemon_log(tmp_path), 30, what="the model to be loaded")
            feeds.set_feed("/wire.xml", [*stories, item(*BORDERLINE_OUT, 2), item(*BORDERLINE_IN, 1)])
            desk.alert(ALICE, BORDERLINE_IN[0])
            scores = dict(desk.sql("SELECT s.title, m.score FROM matches m JOIN stories s ON s.id = m.story_id"))
            assert scores[BORDERLINE_IN[0]] > 2  # the rules alone give it 2: the model raised it
            assert BORDERLINE_OUT[0] not in scores  # ... and lowered this one below the threshold
            assert not [m for m in bot.messages_for(ALICE) if BORDERLINE_OUT[0] in (m.get("visible") or "")]
        finally:
            daemon.finish()


def daemon_log(tmp_path: Path) -> str:
    return "".join(p.read_text() for p in sorted(tmp_path.glob("daemon-*.err")))


def test_a_corrupt_model_file_gives_one_log_line_and_the_rules_go_on(tmp_path: Path, feeds, daemon_factory) -> None:
    feeds.set_feed("/wire.xml", [item(*BORDERLINE_OUT, 5)])
    config = write_config(tmp_path / "newswatch.yaml",
                          [{"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 1}],
                          model={"blend": 1.0})
    (tmp_path / "newswatch.model.npz").write_bytes(b"PK\x03\x04 truncated model file")
    daemon = daemon_factory(config, token=None).start()
    try:
        wait_until(lambda: BORDERLINE_OUT[0] in (tmp_path / "daemon-1.out").read_text(), 30,
                   what="the alert from the rules")
    finally:
        daemon.stop()
    lines = [line for line in daemon_log(tmp_path).splitlines() if "model file" in line or "newswatch.model:" in line]
    assert len(lines) == 1, lines
    assert "newswatch.model.npz is not used: not a readable model file" in lines[0]
    assert "rules alone" in lines[0] and "ERROR" in lines[0]
    assert "Traceback" not in daemon.output()
    matched = json.loads(newswatch("export", "-c", str(config), "--since", "1d").stdout.splitlines()[0])
    assert matched["title"] == BORDERLINE_OUT[0]


def test_the_daemon_trains_again_after_retrain_after_votes_new_votes(tmp_path: Path) -> None:
    with FeedServer() as feeds, FakeBotAPI(token=TOKEN) as bot:
        stories = [item(t, x, 60 - i) for i, (t, x) in enumerate(PEACE + WAGES)]
        feeds.set_feed("/wire.xml", [])
        config = write_config(tmp_path / "newswatch.yaml",
                              [{"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 1}], bot,
                              model={"retrain_after_votes": 10})
        daemon = DaemonProcess(config, token=TOKEN, log_dir=tmp_path).start()
        desk = Desk(bot, tmp_path / "newswatch.db")
        try:
            wait_until(lambda: bot.calls_to("getUpdates"), 30, what="the bot to start polling")
            desk.ask(ALICE, "/start", "Subscribed to all topics")
            feeds.set_feed("/wire.xml", stories)
            for story in stories:
                alert = desk.alert(ALICE, story.title)
                up, down = [data for _, data in buttons(alert)]
                good = story.title in dict(PEACE)
                desk.tap(ALICE, up if good else down, alert["message_id"],
                         "Thanks — marked relevant" if good else "Thanks — marked not relevant")
            wait_until(lambda: "model: trained again and in use" in daemon_log(tmp_path), 60,
                       what="the daemon to train the model")
            assert "10 new votes since it was made" in daemon_log(tmp_path)
            assert (tmp_path / "newswatch.model.npz").is_file()
            feeds.set_feed("/wire.xml", [*stories, item(*BORDERLINE_OUT, 2), item(*BORDERLINE_IN, 1)])
            desk.alert(ALICE, BORDERLINE_IN[0])
            scores = dict(desk.sql("SELECT s.title, m.score FROM matches m JOIN stories s ON s.id = m.story_id"))
            assert scores[BORDERLINE_IN[0]] > 2 and BORDERLINE_OUT[0] not in scores
        finally:
            if daemon.proc and daemon.proc.poll() is None:
                daemon.stop()
            assert "Traceback" not in daemon.output(), daemon.output()[-4000:]
