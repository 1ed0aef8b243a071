"""Suite-wide check: no bot token may appear in any test's captured output or failure text.

Every token the fake Bot API served is known (`FakeBotAPI.tokens_issued`, plus the e2e
token); each test report's captured stdout, stderr and log, and its failure text, are
searched. The daemons' own output files are checked by the e2e fixtures.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import TOKEN
from tests.fakes.bot_api import FakeBotAPI

_leaks: list[str] = []


def _secrets() -> set[str]:
    return {TOKEN, *FakeBotAPI.tokens_issued}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    texts = [content for _, content in report.sections]
    if report.failed:
        texts.append(report.longreprtext)
    for secret in _secrets():
        secret_part = secret.split(":", 1)[1]
        if any(secret_part in text for text in texts):
            _leaks.append(f"{report.nodeid} ({report.when})")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _leaks:
        print("\nA bot token appeared in the output of: " + ", ".join(sorted(set(_leaks))))
        session.exitstatus = 1
