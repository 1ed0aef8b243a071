"""Suite-wide check: no bot token may appear in any test's captured output or failure text.

Every token the fake Bot API served is known (`FakeBotAPI.tokens_issued`, plus the e2e
token); each test report's captured stdout, stderr and log, and its failure text, are
searched. The daemons' own output files are checked by the e2e fixtures.

Also the two servers the address-policy tests (unit and e2e) aim at: `forbidden` on 127.0.0.1
(loopback, never to be fetched) and `public` on 127.0.0.2 (the alias those tests' policy
treats as a public address).

And the databases the store tests run on: `database` is an SQLite file or a fresh schema on
the PostgreSQL test server (`postgres_url`; skipped, saying why, when that server does not
answer).
"""

from __future__ import annotations

import os
import secrets

import pytest

from tests.e2e.conftest import TOKEN
from tests.fakes.bot_api import FakeBotAPI
from tests.fakes.feed_server import FeedServer

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


@pytest.fixture
def forbidden():
    with FeedServer() as server:
        server.set("/secret", "<html><body><article><h1>internal</h1><p>do not fetch</p></article></body></html>",
                   content_type="text/html")
        yield server


@pytest.fixture
def public():
    with FeedServer(host="127.0.0.2") as server:
        yield server


POSTGRES_SERVER = os.environ.get("NEWSWATCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_unavailable() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None when they can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    try:
        psycopg.connect(POSTGRES_SERVER, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"PostgreSQL does not answer at {POSTGRES_SERVER} (set NEWSWATCH_TEST_POSTGRES): {exc}".strip()
    return None


@pytest.fixture
def postgres_url():
    """The URL of a fresh, empty schema on the test server, dropped after the test."""
    why = _postgres_unavailable()
    if why:
        pytest.skip(why)
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES_SERVER, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in POSTGRES_SERVER else "?"
    yield f"{POSTGRES_SERVER}{separator}options=-csearch_path%3D{schema},public"
    with psycopg.connect(POSTGRES_SERVER, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """Where a test's database is: a file in tmp_path, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return tmp_path / "db.sqlite"
    return request.getfixturevalue("postgres_url")
