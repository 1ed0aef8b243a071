"""The trained model: a file that round-trips without pickle, one log line and the rules alone
for a file that is missing, corrupt, truncated or made for other features or topics, scores
exactly the rules' without a model or at blend 0, a borderline story moved up or down by what
the labels taught, the `model:` config keys, and the thresholds chats' votes raise."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from newswatch.alerts.config import ConfigError, parse_config
from newswatch.alerts.deliver.outbox import Outbox
from newswatch.alerts.dispatch import Dispatcher
from newswatch.alerts.feedback import MIN_ABOVE, MIN_VOTES, Votes, raised_threshold
from newswatch.alerts.match.blended import BlendedMatcher
from newswatch.alerts.match.evaluation import format_explanation
from newswatch.alerts.match.matcher import Matcher
from newswatch.alerts.match.model import HASHING, ModelError, StoryModel, fit
from newswatch.alerts.match.topics import TopicConfig
from newswatch.alerts.model_file import load_model, training_rows, write_model
from newswatch.alerts.subscriptions import Subscriptions
from newswatch.crawler.clock import ManualClock
from newswatch.storage import open_storage
from newswatch.crawler.story import Story

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TOPICS = {
    "talks": TopicConfig.model_validate({
        "description": "Talks with North Korea.", "threshold": 2,
        "groups": {"talks": {"weight": 2, "terms": ["talks"]}},
    }),
    "launch": TopicConfig.model_validate({
        "description": "Missile launches.", "threshold": 3,
        "groups": {"launch": {"weight": 3, "terms": ["missile"]}},
    }),
}
PEACE = "Envoys meet for peace talks with Pyongyang on the nuclear programme and denuclearisation"
WAGES = "Union and factory managers hold wage talks over pay and overtime at the car plant"
BORDERLINE_IN = ("Back at the table", "Envoys in Pyongyang resume talks on the nuclear programme")
BORDERLINE_OUT = ("Back at the table", "Factory union resumes talks on wages and overtime pay")


def labelled_rows() -> list[dict]:
    """Stories each rule passes exactly at its threshold, half of them wrongly: the words around
    the term tell them apart, which the rules cannot and the model can learn."""
    rows = []
    for i in range(12):
        rows.append({"id": f"p{i}", "title": f"Round {i}", "text": PEACE, "talks": 1, "launch": 0})
        rows.append({"id": f"w{i}", "title": f"Round {i}", "text": WAGES, "talks": 0, "launch": 0})
        rows.append({"id": f"m{i}", "title": f"Test {i}", "text": "A missile flew over the sea.", "talks": 0, "launch": 1})
        rows.append({"id": f"d{i}", "title": f"Budget {i}", "text": "Parliament debates the missile defence budget.",
                     "talks": 0, "launch": 0})
    return rows


@pytest.fixture(scope="module")
def trained() -> StoryModel:
    model, report = fit(labelled_rows(), Matcher(TOPICS), blend=0.5, meta={"created": "2026-03-02T12:00:00+00:00"})
    assert report["talks"].positives == 12 and report["talks"].negatives == 36
    assert all(fit.used and fit.blended_f1 > fit.rules_f1 for fit in report.values()), report
    return model


def test_the_file_round_trips_without_pickle(trained: StoryModel, tmp_path: Path) -> None:
    path = tmp_path / "newswatch.model.npz"
    write_model(path, trained)
    with np.load(path, allow_pickle=False) as npz:  # no object arrays anywhere
        meta = json.loads(str(npz["meta"][()]))
    assert meta["hashing"] == HASHING and meta["topics"] == ["talks", "launch"]
    assert meta["labels"]["talks"] == {"positives": 12, "negatives": 36}
    assert set(meta["cv"]["talks"]) >= {"rules_f1", "blended_f1"} and meta["created"]
    loaded = load_model(path, TOPICS)
    assert loaded is not None and loaded.topics == trained.topics
    rules = Matcher(TOPICS).score(*BORDERLINE_IN)
    assert loaded.probabilities(*BORDERLINE_IN, rules) == pytest.approx(trained.probabilities(*BORDERLINE_IN, rules),
                                                                        abs=1e-5)
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed


def _reworked(data: bytes, **meta_changes) -> bytes:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(str(arrays["meta"][()]))
    meta.update(meta_changes)
    arrays["meta"] = np.array(json.dumps(meta))
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


@pytest.mark.parametrize("damage, reason", [
    (lambda data: b"not a zip file at all", "not a readable model file"),
    (lambda data: data[: len(data) // 2], "not a readable model file"),
    (lambda data: b"", "not a readable model file"),
    (lambda data: _reworked(data, hashing={**HASHING, "n_features": 2**10}), "trained with other features"),
    (lambda data: _reworked(data, topics=["talks", "launch", "weather"]), "topics the config does not have: weather"),
    (lambda data: _reworked(data, format=99), "format 99"),
])
def test_a_damaged_or_mismatched_file_gives_one_log_line_and_the_rules_alone(
        trained: StoryModel, tmp_path: Path, caplog, damage, reason: str) -> None:
    path = tmp_path / "newswatch.model.npz"
    path.write_bytes(damage(trained.to_bytes()))
    with caplog.at_level(logging.DEBUG, logger="newswatch.model"):
        assert load_model(path, TOPICS) is None
    assert len(caplog.records) == 1 and caplog.records[0].levelno == logging.ERROR
    assert reason in caplog.messages[0] and str(path) in caplog.messages[0]
    assert "rules alone" in caplog.messages[0] and "Traceback" not in caplog.text
    with pytest.raises(ModelError):
        StoryModel.from_bytes(path.read_bytes(), TOPICS)


def test_a_missing_file_gives_one_line_too(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger="newswatch.model"):
        assert load_model(tmp_path / "none.npz", TOPICS) is None
    assert len(caplog.records) == 1 and "no model file" in caplog.messages[0]


def test_without_a_model_or_at_blend_0_the_scores_are_exactly_the_rules(trained: StoryModel) -> None:
    rules = Matcher(TOPICS)
    stories = [BORDERLINE_IN, BORDERLINE_OUT, ("Missile talks", "missile missile talks"), ("", ""), ("x", "y")]
    for blended in (BlendedMatcher(rules), BlendedMatcher(rules, None, 0.7), BlendedMatcher(rules, trained, 0.0)):
        assert not blended.learning and blended.topics == rules.topics
        for title, text in stories:
            assert blended.score(title, text) == rules.score(title, text)
            assert blended.matched(title, text) == rules.matched(title, text)
            assert blended.explain(title, text) == rules.explain(title, text)


def test_a_trained_model_raises_and_lowers_a_borderline_story(trained: StoryModel) -> None:
    rules = Matcher(TOPICS)
    blended = BlendedMatcher(rules, trained, 0.5)
    for story in (BORDERLINE_IN, BORDERLINE_OUT):
        [rule, _] = rules.score(*story)
        assert rule.score == rule.threshold == 2 and rule.passed  # exactly on the threshold
    [raised, _] = blended.score(*BORDERLINE_IN)
    [lowered, _] = blended.score(*BORDERLINE_OUT)
    assert raised.score > 2 and raised.passed
    assert lowered.score < 2 and not lowered.passed
    assert [s.topic for s in blended.score(*BORDERLINE_OUT) if s.passed] == []
    explained = blended.explain(*BORDERLINE_OUT)["topics"]["talks"]
    assert explained["score"] == lowered.score and explained["passed"] is False
    assert explained["model"]["rules"] == 2 and 0 <= explained["model"]["probability"] < 0.5
    assert "model: probability" in format_explanation(blended.explain(*BORDERLINE_OUT))


def test_a_model_without_a_topic_leaves_its_rule_score(trained: StoryModel) -> None:
    only_talks = StoryModel({"talks": trained.weights["talks"]}, trained.meta)
    blended = BlendedMatcher(Matcher(TOPICS), StoryModel.from_bytes(only_talks.to_bytes(), TOPICS), 1.0)
    assert blended.score("Missile", "missile")[1] == Matcher(TOPICS).score("Missile", "missile")[1]


def test_training_rows_join_files_and_votes(tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"id": "a", "title": "A", "text": "", "talks": 1}) + "\n", "utf-8")
    rows = training_rows([labels], [{"id": "a", "title": "A", "talks": 0, "launch": 0},
                                    {"id": "b", "title": "B", "launch": 1}])
    assert [(r["id"], r.get("talks"), r.get("launch")) for r in rows] == [("a", 1, 0), ("b", None, 1)]


# -- the model: section ---------------------------------------------------------------------------

BASE = """storage:
  path: data/news.db
topics:
  talks:
    description: Talks.
    threshold: 2
    groups:
      talks: {weight: 2, terms: [talks]}
"""


def test_model_keys_default_and_resolve(tmp_path: Path) -> None:
    config = parse_config(BASE, "nw.yaml", base_dir=tmp_path)
    assert (config.model.blend, config.model.retrain_after_votes) == (0.5, 0)
    assert config.model_path == tmp_path / "data" / "news.model.npz"
    config = parse_config(BASE + "model:\n  blend: 0\n  path: m/x.npz\n  retrain_after_votes: 50\n", "nw.yaml",
                          base_dir=tmp_path)
    assert (config.model.blend, config.model_path, config.model.retrain_after_votes) == (0, tmp_path / "m/x.npz", 50)


@pytest.mark.parametrize("section, problem", [
    ("model:\n  blend: 1.5\n", "nw.yaml:10: model.blend: must be <= 1.0"),
    ("model:\n  blend: -0.1\n", "nw.yaml:10: model.blend: must be >= 0.0"),
    ("model:\n  retrain_after_votes: -1\n", "nw.yaml:10: model.retrain_after_votes: must be >= 0"),
    ("model:\n  blend: lots\n", "nw.yaml:10: model.blend: must be a number, got 'lots'"),
    ("model:\n  blends: 0.5\n", "nw.yaml:10: model.blends: unknown key (did you mean 'blend'?)"),
])
def test_model_keys_are_validated_with_file_and_line(tmp_path: Path, section: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + section, "nw.yaml", base_dir=tmp_path)
    assert caught.value.problems == [problem]


# -- thresholds raised by votes ---------------------------------------------------------------------

@pytest.mark.parametrize("scored, expected", [
    ([(5.0, True)] * 10 + [(4.0, False)] * 9, None),  # 19 votes: too few
    ([(5.0, True)] * 10 + [(4.0, False)] * 10, 5.0),  # the 👎 all scored 4: from 5 up all are 👍
    ([(4.0, True)] * 17 + [(4.0, False)] * 3, None),  # 85% 👍: the threshold is fine
    ([(9.0, True)] * 9 + [(4.0, False)] * 11, None),  # only 9 above the cut: too few to rest on
    ([(4.0, False)] * 10 + [(6.0, True)] * 8 + [(6.0, False)] * 2 + [(7.0, True)] * 2, 6.0),
    ([(float(s), s % 2 == 0) for s in range(4, 30)], None),  # never 80%, whatever the cut
])
def test_raised_threshold_rule(scored, expected) -> None:
    assert MIN_VOTES == 20 and MIN_ABOVE == 10
    assert raised_threshold(scored) == expected


def test_the_dispatcher_applies_the_threshold_a_chats_votes_raise(tmp_path: Path) -> None:
    db = open_storage(tmp_path / "newswatch.db")
    store, subs, outbox, votes = db.stories, Subscriptions(db.alerts), Outbox(db.alerts), Votes(db.alerts)
    subs.start(7, ["talks"], now=NOW)
    subs.start(8, ["talks"], now=NOW)
    for i in range(20):  # chat 7 voted: alerts scoring 2 were wrong, those scoring 4 right
        outbox.enqueue(7, f"old{i}", [("talks", 4.0 if i < 10 else 2.0)], ["talks"], NOW)
        votes.record(7, f"old{i}", 1, 1 if i < 10 else -1, ["talks"], NOW)
    dispatcher = Dispatcher(store, subs, outbox, BlendedMatcher(Matcher(TOPICS)), ManualClock(NOW), console=False,
                            votes=votes)
    assert dispatcher.raised_thresholds() == {(7, "talks"): 4.0}
    store.add_stories([Story(id="low", source="s", url="https://e.x/1", title="Envoys meet", text="Talks resume.",
                             published=NOW - timedelta(minutes=5))], NOW)
    dispatcher.run()
    queued = {row[0] for row in db.alerts.conn.execute("SELECT chat_id FROM outbox WHERE story_id = 'low'")}
    assert queued == {8}  # the score 2 passes the topic, not chat 7's raised threshold
    db.close()


def test_a_topic_whose_blend_does_not_beat_its_rules_keeps_its_rule_scores() -> None:
    """Labels that only agree with the rules teach nothing the folds can show: that topic is
    left out of the model (its stories score by the rules alone), the other one is learned."""
    rows = [row for row in labelled_rows() if not row["id"].startswith("d")]  # the rules get launches right
    model, report = fit(rows, Matcher(TOPICS), blend=0.5)
    assert report["launch"].rules_f1 == report["launch"].blended_f1 == 1.0 and not report["launch"].used
    assert report["talks"].used and model.topics == ["talks"]
    blended, rules = BlendedMatcher(Matcher(TOPICS), model, 0.5), Matcher(TOPICS)
    story = ("Budget 1", "Parliament debates the missile defence budget.")
    assert [s for s in blended.score(*story) if s.topic == "launch"] == [s for s in rules.score(*story) if s.topic == "launch"]
    assert model.meta["cv"]["launch"]["used"] is False and model.meta["cv"]["talks"]["used"] is True
