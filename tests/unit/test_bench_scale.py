"""`python -m bench scale` checks that every configuration brought the same events to every
chat, losing none, and says when they differ."""

from __future__ import annotations

from argparse import Namespace

from bench.scale import coverage, report

EVENTS = {"https://a/1": 7, "https://b/1": 7, "https://c/1": 8}  # two outlets' copies of event 7


def _reach(sent: list[tuple[int, str]], clusters: dict[str, str] | None = None) -> dict:
    return {"matched": {"s1": "https://a/1", "s2": "https://b/1", "s3": "https://c/1"}, "sent": sent,
            "clusters": clusters or {}, "chats": [100, 101]}


def _result(label: str, reach: dict, workers: int | None = None) -> dict:
    return {"label": label, "wall": 2.0, "dispatched": 1.0, "cpu": 1.5, "cpu_by_process": {"run1": 1.5},
            "requests": 100, "sends": len(reach["sent"]), "timed_out": False, "workers": workers,
            **coverage(reach, EVENTS)}


ARGS = Namespace(feeds=100, changed=0.05, chats=2, hosts=5)
CLUSTERED = {"s1": "c1", "s2": "c1", "s3": "c3"}
EVERYWHERE = [(100, "s1"), (100, "s3"), (101, "s1"), (101, "s3")]


def test_a_copy_of_an_event_sent_reaches_the_chat_and_a_story_not_sent_is_lost() -> None:
    reached = coverage(_reach(EVERYWHERE, CLUSTERED), EVENTS)
    assert reached["lost"] == 0 and reached["repeats"] == 0
    assert reached["reached"] == [(100, "7"), (100, "8"), (101, "7"), (101, "8")]
    missing = coverage(_reach([(100, "s1"), (100, "s3"), (101, "s1")], CLUSTERED), EVENTS)
    assert missing["lost"] == 1 and (101, "8") not in missing["reached"]
    unclustered = coverage(_reach(EVERYWHERE), EVENTS)  # s2 joined no cluster: lost for both chats
    assert unclustered["lost"] == 2


def test_two_stories_of_one_cluster_sent_to_one_chat_are_a_repeat() -> None:
    assert coverage(_reach(EVERYWHERE + [(100, "s2")], CLUSTERED), EVENTS)["repeats"] == 1


def test_the_same_events_by_other_copies_are_the_same_alerts() -> None:
    other_copy = [(100, "s2"), (100, "s3"), (101, "s2"), (101, "s3")]
    text = report([_result("run, SQLite", _reach(EVERYWHERE, CLUSTERED)),
                   _result("2 workers", _reach(other_copy, CLUSTERED), workers=2)], ARGS)
    assert "the same alerts in every configuration: each of the 2 matching events reached every chat" in text
    assert "| 2 workers | 1.0 | 2.0 | 1.5 | run1 1.5 | 50 | 25 | 3 | 4 | 0 | 0 |" in text


def test_different_or_lost_alerts_are_named() -> None:
    text = report([_result("run, SQLite", _reach(EVERYWHERE, CLUSTERED)),
                   _result("run, PostgreSQL", _reach([(100, "s1"), (100, "s3"), (101, "s1")], CLUSTERED))], ARGS)
    assert "DIFFERENT alerts: run, PostgreSQL: 0 more, 1 fewer than run, SQLite; run, PostgreSQL: 1 lost" in text
