"""`python -m bench scale` compares the alerts each configuration sent and says when they differ."""

from __future__ import annotations

from argparse import Namespace

from bench.scale import report


def _result(label: str, alerts: list, workers: int | None = None) -> dict:
    return {"label": label, "wall": 2.0, "cpu": 1.5, "cpu_by_process": {"run1": 1.5}, "requests": 100,
            "sends": len(alerts), "alerts": alerts, "timed_out": False, "workers": workers}


ARGS = Namespace(feeds=100, changed=0.05, chats=1)


def test_the_same_alerts_everywhere_are_reported_as_such() -> None:
    text = report([_result("run, SQLite", [(100, "u1")]), _result("2 workers", [[100, "u1"]], workers=2)], ARGS)
    assert "the same alerts (chat, story) in every configuration: 1" in text
    assert "| 2 workers | 2.0 | 1.5 | run1 1.5 | 50 | 25 | 1 |" in text


def test_different_alerts_are_named() -> None:
    text = report([_result("run, SQLite", [(100, "u1"), (100, "u2")]), _result("run, PostgreSQL", [(100, "u1")])], ARGS)
    assert "DIFFERENT alerts: run, PostgreSQL: 0 more, 1 fewer than run, SQLite" in text
