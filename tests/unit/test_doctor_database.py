"""`newswatch doctor`'s database check on PostgreSQL: an empty database is one newswatch makes
its tables in when it first starts (a warning, nothing created), a made one is counted. Needs
the test server ($NEWSWATCH_TEST_POSTGRES); skipped, saying why, without one."""

from __future__ import annotations

from newswatch.doctor import OK, WARN, check_postgres
from newswatch.storage import open_storage


def test_empty_postgres_database_is_made_on_first_start(postgres_url) -> None:
    finding = check_postgres(postgres_url)
    assert finding.level == WARN, finding
    assert "no newswatch tables yet" in finding.message and "when it first starts" in finding.message
    assert "does not exist" not in finding.message
    assert check_postgres(postgres_url).level == WARN  # the check created nothing

    open_storage(postgres_url).close()
    finding = check_postgres(postgres_url)
    assert finding == type(finding)(OK, "database", "PostgreSQL: 0 stories, 0 alerts waiting")
