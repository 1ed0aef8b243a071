"""Watches: the rule syntax, its errors, matching through the topic engine, storage and dispatch."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from newswatch.alerts.dispatch import Dispatcher
from newswatch.alerts.match.matcher import Matcher
from newswatch.alerts.deliver.outbox import Outbox
from newswatch.alerts.subscriptions import Subscriptions
from newswatch.alerts.match.topics import TopicConfig
from newswatch.alerts.match.watches import MAX_PER_CHAT, RuleError, Watch, WatchMatcher, Watches, parse_rule
from newswatch.crawler.clock import ManualClock
from newswatch.storage import open_storage
from newswatch.crawler.story import Story, story_id

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

PARSED = [
    # (rule, groups, excluded, described)
    ("Hanoi summit", [["Hanoi"], ["summit"]], [], "Hanoi AND summit"),
    ('"Hanoi summit"', [["Hanoi summit"]], [], '"Hanoi summit"'),
    ("Hanoi OR Hue summit", [["Hanoi", "Hue"], ["summit"]], [], "(Hanoi OR Hue) AND summit"),
    ('summit -G20 -"G7 leaders"', [["summit"]], ["G20", "G7 leaders"], 'summit, not G20, "G7 leaders"'),
    ("개성공단", [["개성공단"]], [], "개성공단"),
    ("sanction* visit(s)", [["sanction*"], ["visit(s)"]], [], "sanction* AND visit(s)"),
    ("  Hanoi   Hanoi  ", [["Hanoi"]], [], "Hanoi"),
    ("“Kim Yo Jong” statement", [["Kim Yo Jong"], ["statement"]], [], '"Kim Yo Jong" AND statement'),
    ("Kim - Putin", [["Kim"], ["-"], ["Putin"]], None, None),  # a lone "-" is a term, and a bad one
]


@pytest.mark.parametrize(("text", "groups", "excluded", "described"), [p for p in PARSED if p[2] is not None])
def test_parse_rule(text: str, groups: list, excluded: list, described: str) -> None:
    rule = parse_rule(text)
    assert [list(g) for g in rule.groups] == groups
    assert list(rule.excluded) == excluded
    assert rule.describe() == described
    topic = rule.topic()
    assert isinstance(topic, TopicConfig)
    assert topic.threshold == len(groups)
    assert topic.required_groups() == [(f"g{i}",) for i in range(1, len(groups) + 1)]


BAD = [
    ("", "the rule is empty"),
    ("   ", "the rule is empty"),
    ('"Hanoi summit', "a quotation mark is not closed"),
    ('""', "empty quotes"),
    ("OR summit", "OR must stand between"),
    ("Hanoi OR OR summit", "OR must stand between"),
    ("summit OR", "the rule ends with OR"),
    ("summit OR -G20", "OR cannot join an excluded term"),
    ("-G20 -G7", "the rule only excludes"),
    ("re:kim.*", "regular expressions (re:) are not allowed"),
    # term errors come from the topic syntax itself, and name the term
    ("ab*", "ab*"),
    ("summit(", "summit("),
    ("sum*mit", "sum*mit"),
    ("word:summit", "word:summit"),
    ("Kim - Putin", "'-'"),
    ("a b c d e f g h i", "at most 8 required"),
    ("x" * 70, "longer than 64 characters"),
    ("word " * 50, "keep it under 200"),
    # what a rule stands for is counted before anything is expanded
    ("x(a|b)(c|d)(e|f)(g|h)(i|j)(k|l)(m|n)(o|p)(q|r)(s|t)", "stands for 59,049 words or phrases"),
    ("x(a|b)(c|d)(e|f)(g|h)(i|j)(k|l)(m|n)(o|p)(q|r)(s|t)", "at most 64"),
    ("Kim x(a|b)(c|d)(e|f)(g|h)", "“x(a|b)(c|d)(e|f)(g|h)” alone stands for 81"),
    ("x" + "(a|b)" * 12, "531,441"),
    ("a(b|c)(d|e) f(g|h)(i|j) k(l|m)(n|o) p(q|r)(s|t) u(v|w)(x|y) z(a|b)(c|d) m(a|b)(c|d) -n(a|b)(c|d)",
     "the rule has too many forms: the rule stands for 72 words or phrases"),  # 9 forms a term
]


@pytest.mark.parametrize(("text", "why"), BAD)
def test_bad_rules_say_why(text: str, why: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rule(text)
    assert why in str(caught.value)


def _watch(watch_id: int, chat_id: int, rule: str) -> Watch:
    return Watch(watch_id, chat_id, rule, NOW)


MATCHES = [
    # (rule, title, text, matches)
    ("Hanoi summit", "Trump and Kim to meet at Hanoi summit", "", True),
    ("Hanoi summit", "Hanoi hosts", "The summit opens on Wednesday.", True),
    ("Hanoi summit", "Hanoi hotel prices soar", "", False),
    ("Hanoi summit", "Hanoi summitry", "", False),                # English words are whole words
    ('"Hanoi summit"', "Hanoi prepares for the summit", "", False),
    ('"Hanoi summit"', "After the Hanoi summit", "", True),
    ("Hanoi OR Hue summit", "Summit moved to Hue", "", True),
    ("summit -G20", "G20 summit opens in Rio", "", False),
    ("summit -G20", "Putin Kim summit", "", True),
    ('Kim -"Kim Jong Un"', "Kim Jong Un visits Russia", "", False),  # the longer hit wins, and is excluded
    ('Kim -"Kim Jong Un"', "Kim Yo Jong issues statement", "", True),
    ("개성공단", "개성공단 재가동 논의", "", True),
    ("개성공단", "", "입주기업들은 개성공단에서 철수했다", True),  # inside a longer Korean word
    ("sanction*", "New sanctions announced", "", True),
    ("HANOI", "hanoi", "", True),
    ("Sim Hyon Sop", "Treasury names banker", "Officials said. " * 200 + "Sim Hyon Sop", True),  # anywhere
]


@pytest.mark.parametrize(("rule", "title", "text", "matches"), MATCHES)
def test_watches_match_like_topics(rule: str, title: str, text: str, matches: bool) -> None:
    matcher = WatchMatcher([_watch(1, 7, rule)])
    assert bool(matcher.score(title, text)) is matches


def test_one_matcher_scores_every_watch() -> None:
    matcher = WatchMatcher([_watch(1, 7, "Hanoi summit"), _watch(2, 8, "개성공단"), _watch(3, 9, "Hanoi")])
    hits = matcher.score("Hanoi summit set", "")
    assert sorted(w.id for w, _ in hits) == [1, 3]
    assert all(score.passed for _, score in hits)


@pytest.fixture
def db(database):
    db = open_storage(database)
    subs = Subscriptions(db.alerts)
    for chat in (7, 8):
        subs.start(chat, ["summit"], now=NOW)
    return db, subs, Watches(db.alerts)


def test_watches_are_stored_numbered_and_versioned(db) -> None:
    storage, subs, watches = db
    assert watches.matcher() is None
    first, rule = watches.add(7, "  Hanoi   summit ", NOW)
    assert first.rule == "Hanoi summit" and rule.describe() == "Hanoi AND summit"
    watches.add(7, "개성공단", NOW)
    watches.add(8, "Hanoi", NOW)
    assert [w.rule for w in watches.of(7)] == ["Hanoi summit", "개성공단"]
    built = watches.matcher()
    assert built is not None and watches.matcher() is built  # cached while nothing changes
    with pytest.raises(RuleError, match="already has that watch"):
        watches.add(7, "Hanoi summit", NOW)
    assert watches.remove(7, 3) is None
    removed = watches.remove(7, 1)
    assert removed is not None and removed.rule == "Hanoi summit"
    assert [w.rule for w in watches.of(7)] == ["개성공단"]
    assert watches.matcher() is not built  # rebuilt after a change
    assert {w.rule for w in Watches(storage.alerts).all()} == {"개성공단", "Hanoi"}  # persisted


def test_a_chat_has_a_limited_number_of_watches(db) -> None:
    _, _, watches = db
    for i in range(MAX_PER_CHAT):
        watches.add(7, f"word{i}", NOW)
    with pytest.raises(RuleError, match="/unwatch one first"):
        watches.add(7, "one more", NOW)


def test_the_limits_per_chat_and_in_all_are_settings(db) -> None:
    storage, subs, _ = db
    watches = Watches(storage.alerts, max_per_chat=2, max_watches=3)
    watches.add(7, "Hanoi", NOW)
    watches.add(7, "Hue", NOW)
    with pytest.raises(RuleError, match="this chat has 2 watches, the most allowed"):
        watches.add(7, "Danang", NOW)
    watches.add(8, "Danang", NOW)
    with pytest.raises(RuleError, match="holds 3 watches, the most it takes"):
        watches.add(8, "Saigon", NOW)
    watches.remove(7, 1)
    watches.add(8, "Saigon", NOW)
    assert watches.count() == 3


def test_a_rule_within_the_limit_of_forms_works() -> None:
    rule = parse_rule("visit(s|ed|ing) Kim(s) 북한(의|은|이)")  # 4 + 2 + 4 forms
    matcher = WatchMatcher([_watch(1, 7, rule.text)])
    assert matcher.score("Kims visited", "북한이 밝혔다")
    assert not matcher.score("Kims visit", "")


INVISIBLE_IN_WATCHES = ["\u200c", "\u200d", "\u200e", "\u200f", "\u2063", "\u034f", "\u180e", "\ufe0f",
                        "\u3164", "\U000e0100"]


@pytest.mark.parametrize("char", INVISIBLE_IN_WATCHES)
def test_watches_see_through_invisible_characters(char: str) -> None:
    matcher = WatchMatcher([_watch(1, 7, "Hanoi summit"), _watch(2, 8, "개성공단")])
    assert [w.id for w, _ in matcher.score(f"Ha{char}noi sum{char}mit opens", "")] == [1]
    assert [w.id for w, _ in matcher.score("", f"개성{char}공단 재가동")] == [2]


def test_a_stored_rule_that_is_no_longer_allowed_never_matches_and_costs_nothing(db) -> None:
    storage, _, watches = db
    watches.add(7, "Hanoi", NOW)
    hostile = "x(a|b)(c|d)(e|f)(g|h)(i|j)(k|l)(m|n)(o|p)(q|r)(s|t)(u|v)(w|y)"  # 531,441 forms
    storage.alerts.conn.execute("INSERT INTO watches (chat_id, rule, created) VALUES (8, ?, ?)", (hostile, NOW.isoformat()))
    restarted = Watches(storage.alerts)  # as after a restart: every stored rule is compiled again
    matcher = restarted.matcher()
    assert matcher is not None and [w.rule for w in matcher.watches.values()] == ["Hanoi"]
    assert [w.rule for w, _ in matcher.score("Hanoi xacegikmoqsuw", "")] == ["Hanoi"]


def test_one_change_recompiles_one_shard(db, monkeypatch) -> None:
    import newswatch.alerts.match.watches as module

    storage, subs, _ = db
    monkeypatch.setattr(module, "SHARD_SIZE", 3)
    for chat in range(10, 14):
        subs.start(chat, [], now=NOW)
    watches = Watches(storage.alerts)
    for i in range(8):
        watches.add(10 + i % 4, f"word{i}", NOW)
    first = watches.matcher()
    assert first is not None and [len(s.watches) for s in first.shards] == [3, 3, 2]
    compiled: list[tuple[str, ...]] = []
    real = module.compile_shard
    monkeypatch.setattr(module, "compile_shard",
                        lambda members, known=None: compiled.append(tuple(w.rule for w in members)) or real(members, known))

    watches.add(12, "word8", NOW)  # fills the last shard
    second = watches.matcher()
    assert compiled == [("word6", "word7", "word8")]
    assert second.shards[:2] == first.shards[:2]  # the same compiled objects, untouched
    watches.remove(10, 1)  # word0, in the first shard
    third = watches.matcher()
    assert compiled[1:] == [("word1", "word2")] and third.shards[1:] == second.shards[1:]
    watches.add(13, "word9", NOW)  # goes where there is room
    assert watches.matcher().shards[0].watches[-1].rule == "word9" and compiled[2] == ("word1", "word2", "word9")
    hits = watches.matcher().score("word1 word9 word8 word0", "")
    assert sorted(w.rule for w, _ in hits) == ["word1", "word8", "word9"]


def test_refresh_compiles_in_a_worker_thread_and_the_loop_keeps_turning(db, monkeypatch) -> None:
    import asyncio
    import threading

    import newswatch.alerts.match.watches as module

    storage, subs, watches = db
    monkeypatch.setattr(module, "SHARD_SIZE", 2)
    for i in range(7):
        watches.add(7 + i % 2, f"word{i}", NOW)
    threads: list[int] = []
    real = module.compile_shard
    monkeypatch.setattr(module, "compile_shard",
                        lambda members, known=None: threads.append(threading.get_ident()) or real(members, known))

    async def main() -> tuple[int, object]:
        turns = 0

        async def ticker() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        matcher = await watches.refresh()
        task.cancel()
        return turns, matcher

    turns, matcher = asyncio.run(main())
    assert len(threads) == 4 and threading.get_ident() not in threads
    assert turns >= 4  # the loop ran between the shards (and while each was compiled)
    assert matcher is watches.matcher() and not watches.stale
    assert sorted(w.rule for w, _ in matcher.score("word0 word6", "")) == ["word0", "word6"]


def test_watches_follow_a_migrated_chat(db) -> None:
    _, subs, watches = db
    watches.add(7, "Hanoi", NOW)
    subs.migrate(7, 8)  # 8 exists already: watches move before 7 is deleted
    assert [w.rule for w in watches.of(8)] == ["Hanoi"]
    subs.migrate(8, -100555)
    assert [w.rule for w in watches.of(-100555)] == ["Hanoi"]


def _dispatcher(storage, subs, watches) -> Dispatcher:
    topics = {"summit": TopicConfig.model_validate({
        "description": "summits", "threshold": 6,
        "groups": {"summit": {"weight": 3, "terms": ["summit(s)"]}, "korea": {"weight": 1, "terms": ["North Korea"]}},
        "require": ["korea"],
    })}
    return Dispatcher(storage.stories, subs, Outbox(storage.alerts), Matcher(topics), ManualClock(NOW), console=False,
                      watches=watches)


def _store(storage, title: str, text: str = "") -> str:
    url = f"https://example.com/{abs(hash(title))}"
    story = Story(id=story_id("s", url, url), source="s", url=url, title=title, text=text, published=NOW, guid=url)
    storage.stories.add_stories([story], NOW)
    return story.id


def _outbox(storage) -> dict[tuple[int, str], list]:
    rows = storage.alerts.conn.execute("SELECT chat_id, story_id, topics FROM outbox").fetchall()
    return {(r[0], r[1]): r[2] for r in rows}


def test_dispatch_queues_watch_alerts_for_the_owner_only(db) -> None:
    storage, subs, watches = db
    watches.add(7, "Hanoi summit", NOW)
    dispatcher = _dispatcher(storage, subs, watches)
    only_watch = _store(storage, "Hanoi readies hotel for summit week")
    summary = dispatcher.run()
    assert summary.queued == 1
    assert set(_outbox(storage)) == {(7, only_watch)}
    assert "watch Hanoi summit" in _outbox(storage)[(7, only_watch)]

    both = _store(storage, "North Korea summit in Hanoi")  # the topic for 7 and 8, the watch for 7: one alert each
    dispatcher.run()
    queued = _outbox(storage)
    assert (7, both) in queued and (8, both) in queued
    assert "summit" in queued[(7, both)] and "watch Hanoi summit" in queued[(7, both)]
    assert "watch" not in queued[(8, both)]

    subs.stop(7)
    later = _store(storage, "Hanoi summit preparations")
    dispatcher.run()
    assert not any(story == later for _, story in _outbox(storage))  # an inactive owner gets nothing

    subs.start(7, [], now=NOW)
    watches.add(7, "Metropole", NOW)  # a watch added later is used from the next story on
    newest = _store(storage, "Metropole hotel closes roads")
    dispatcher.run()
    assert (7, newest) in _outbox(storage)


def test_dispatch_honours_lower_and_higher_chat_thresholds(db) -> None:
    storage, subs, watches = db
    dispatcher = _dispatcher(storage, subs, watches)
    subs.set_threshold(7, "summit", 3)
    subs.set_threshold(8, "summit", 100)
    weak = _store(storage, "Geneva meetings", "Talk of a summit with North Korea continued.")  # 3 + 1 = 4
    strong = _store(storage, "North Korea summit", "The summit with North Korea opens.")
    missing = _store(storage, "A summit", "The summit of the mountain.")  # no Korea: never, whatever the bar
    dispatcher.run()
    queued = set(_outbox(storage))
    assert (7, weak) in queued and (8, weak) not in queued
    assert (7, strong) in queued and (8, strong) not in queued
    assert not any(story == missing for _, story in queued)


def test_a_failed_compilation_loses_no_change(db, monkeypatch) -> None:
    import newswatch.alerts.match.watches as module

    _, _, watches = db
    watches.add(7, "Hanoi", NOW)
    assert watches.matcher() is not None
    watches.add(8, "Hue", NOW)
    real = module.compile_shard

    def failing(members, known=None):
        raise MemoryError("no room")

    monkeypatch.setattr(module, "compile_shard", failing)
    with pytest.raises(MemoryError):
        watches.matcher()
    assert watches.stale
    monkeypatch.setattr(module, "compile_shard", real)
    assert sorted(w.rule for w, _ in watches.matcher().score("Hanoi and Hue", "")) == ["Hanoi", "Hue"]
