"""Looking back: /search over stored stories (FTS5 or LIKE) and /latest over matches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from newswatch.alerts.bot.history import History, search_words
from newswatch.alerts.deliver.outbox import Outbox
from newswatch.storage import open_storage
from newswatch.crawler.story import Story, story_id

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STORIES = [
    ("Trump and Kim meet at Hanoi summit", "The second summit was cut short."),
    ("개성공단 입주기업 총회", "개성공단에서 철수한 기업들이 모였다."),
    ("Sanctions on North Korea tightened", "The 100% oil cap_stays."),
    ("Hanoi hotel prices soar", ""),
]


@pytest.fixture(params=["fts", "like", "postgresql"])
def history(request, tmp_path) -> History:
    db = open_storage(request.getfixturevalue("postgres_url") if request.param == "postgresql"
                      else tmp_path / "db.sqlite")
    store = db.stories
    for i, (title, text) in enumerate(STORIES):
        url = f"https://example.com/{i}"
        store.add_stories([Story(id=story_id("s", url, url), source="s", url=url, title=title, text=text,
                                 published=NOW + timedelta(minutes=i), guid=url)], NOW)
    found = History(db.stories, db.alerts)
    if request.param == "postgresql":
        assert found.fts, "the pg_trgm indexes were made"
    elif request.param == "like":
        found.fts = False
    elif not found.fts:
        pytest.skip("this SQLite has no FTS5 trigram tokenizer")
    return found


def _titles(history: History, text: str) -> list[str]:
    return [s.story.title for s in history.search(search_words(text))]


def test_search(history: History) -> None:
    assert _titles(history, "hanoi") == ["Hanoi hotel prices soar", "Trump and Kim meet at Hanoi summit"]
    assert _titles(history, "HANOI summit") == ["Trump and Kim meet at Hanoi summit"]
    assert _titles(history, '"second summit"') == ["Trump and Kim meet at Hanoi summit"]
    assert _titles(history, "개성공단") == ["개성공단 입주기업 총회"]
    assert _titles(history, "총회") == ["개성공단 입주기업 총회"]          # two characters
    assert _titles(history, "100%") == ["Sanctions on North Korea tightened"]
    assert _titles(history, "cap_") == ["Sanctions on North Korea tightened"]
    assert _titles(history, "zyzzyva") == []
    assert history.search([]) == []


def test_new_stories_are_found_on_the_next_search(history: History) -> None:
    assert _titles(history, "Vladivostok") == []
    url = "https://example.com/new"
    history.store.add_stories([Story(id=story_id("s", url, url), source="s", url=url, title="Kim in Vladivostok",
                                     text="", published=NOW, guid=url)], NOW)
    assert _titles(history, "Vladivostok") == ["Kim in Vladivostok"]


def test_latest_lists_each_story_once_with_its_topics(history: History) -> None:
    outbox = Outbox(history.alerts)
    ids = [history.store.find(f"https://example.com/{i}").story.id for i in range(4)]
    outbox.record_match(ids[0], "summit", 9.0, [], NOW)
    outbox.record_match(ids[0], "north-korea", 7.0, [], NOW)
    outbox.record_match(ids[2], "sanctions", 8.0, [], NOW + timedelta(minutes=5))
    latest = history.latest(["summit", "sanctions", "north-korea"], 5)
    assert [m.stored.story.title for m in latest] == [STORIES[2][0], STORIES[0][0]]
    assert latest[1].topics == (("summit", 9.0), ("north-korea", 7.0))
    assert [m.stored.story.title for m in history.latest(["summit"], 5)] == [STORIES[0][0]]
    assert history.latest([], 5) == []


def test_search_words_keep_quoted_phrases() -> None:
    assert search_words('Kim "Yo Jong"  statement') == ["Kim", "Yo Jong", "statement"]
    assert search_words('unbalanced "quote') == ["unbalanced", "quote"]


def test_search_matches_whole_words_newest_published_first(history: History) -> None:
    def add(title: str, published: datetime) -> None:
        url = f"https://example.com/{title}"
        history.store.add_stories([Story(id=story_id("s", url, url), source="s", url=url, title=title, text="",
                                         published=published, guid=url)], NOW)

    # stored in a feed's order, newest first: the store's order is the opposite of the news'
    add("Kim Yo Jong warns Seoul", NOW + timedelta(days=3))
    add("Kimi Antonelli wins in Monza", NOW + timedelta(days=2))
    add("Kim Jong Un inspects a factory", NOW + timedelta(days=1))
    assert _titles(history, "Kim") == ["Kim Yo Jong warns Seoul", "Kim Jong Un inspects a factory",
                                       "Trump and Kim meet at Hanoi summit"]
    assert _titles(history, "summit") == ["Trump and Kim meet at Hanoi summit"]
    assert _titles(history, "summits") == []
    assert _titles(history, "Kim*") == ["Kim Yo Jong warns Seoul", "Kimi Antonelli wins in Monza",
                                        "Kim Jong Un inspects a factory", "Trump and Kim meet at Hanoi summit"]
    assert _titles(history, "개성") == ["개성공단 입주기업 총회"]   # Korean matches inside a longer word
