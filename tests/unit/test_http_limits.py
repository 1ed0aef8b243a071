"""The HTTP endpoint's log throttle: a flood of the same trouble is a few lines with counts."""

from __future__ import annotations

import asyncio
import logging

from newswatch.http_api import ACCEPT_ERROR, ThrottledLog, quiet_accept_errors


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_of_one_event_logs_once_per_interval_with_a_count(caplog) -> None:
    clock = Clock()
    throttle = ThrottledLog(logging.getLogger("newswatch.http"), interval=60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="newswatch.http"):
        for i in range(120_000):  # 2,000 a second for a minute, then one more
            clock.now = 1000.0 + i / 2000
            throttle.event("full", "endpoint full")
        clock.now = 1061.0
        throttle.event("full", "endpoint full")
        throttle.event("other", "something else")
    assert [r.getMessage() for r in caplog.records] == [
        "endpoint full", "endpoint full (120000 times in the last 61s)", "something else"]


def test_accept_errors_of_the_loop_go_through_the_throttle(caplog) -> None:
    clock = Clock()
    loop = asyncio.new_event_loop()
    try:
        quiet_accept_errors(loop, ThrottledLog(logging.getLogger("newswatch.http"), interval=60, clock=clock))
        with caplog.at_level(logging.ERROR):
            for _ in range(263_679 // 100):
                loop.call_exception_handler({"message": ACCEPT_ERROR, "exception": OSError(24, "Too many open files")})
            loop.call_exception_handler({"message": "something else broke"})
    finally:
        loop.close()
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "the HTTP endpoint cannot accept connections: [Errno 24] Too many open files"
    assert len(messages) == 2 and "something else broke" in messages[1]
