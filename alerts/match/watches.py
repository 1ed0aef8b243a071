"""Personal watches: a chat's own rules, matched by the topic engine, alerting that chat alone.

A watch is written in one line and becomes a `TopicConfig`, so it is validated and matched
exactly like a topic from the YAML file (same term forms, same normalisation):

    Hanoi summit            every word must occur (each word is a required group)
    "Hanoi summit"          the exact phrase
    Hanoi OR Hue summit     either Hanoi or Hue, and summit
    summit -G20 -"G7"       summit, but no story mentioning G20 or G7
    sanction*  visit(s)     a term's own forms: any ending, optional parts
    개성공단  北朝鮮          Korean, Chinese and Japanese words match inside longer words

`OR` (upper case) joins the terms on each side into one group. Terms follow the topic
syntax of `newswatch.alerts.match.topics` except `re:` regular expressions, which are refused in watches
(any chat can write one, and a careless pattern can stall the matcher).

A rule of N groups becomes a topic whose N groups are all required, weight 1 each, with a
threshold of N; excluded terms form a group with a weight low enough that any hit sinks the
score. A watch reads the whole text (`text_chars: 0`), as a search alert does: a rule names
exactly what to look for, so a mention anywhere in the story counts.

Any chat can write a rule, so what one costs is bounded before anything is compiled: at most
`MAX_RULE_FORMS` forms in all (optional parts multiply: `x(a|b)(c|d)` is nine words, and the
count is worked out, not expanded), at most `max_per_chat` watches per chat and `max_watches`
in all (`telegram.max_watches_per_chat`, `telegram.max_watches`).

`Watches` keeps the compiled matcher in memory, in shards of at most `SHARD_SIZE` watches:
adding or removing a watch recompiles its shard only. `refresh()` compiles the changed shards in
a worker thread, so that the event loop (and every chat's commands) never waits for it;
`matcher()` does the same work in the calling thread. The rules themselves are kept by the
`WatchRows` it is given (`newswatch.alerts.store.AlertsStore`, the `watches` table): nothing
here touches storage.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from pydantic import ValidationError

from newswatch.alerts.match.matcher import Matcher, TopicScore
from newswatch.alerts.match.topics import TermGroup, TopicConfig, count_forms, parse_term

log = logging.getLogger("newswatch.watches")

MAX_RULE_CHARS = 200
MAX_GROUPS = 8
MAX_ALTERNATIVES = 8
MAX_EXCLUDED = 8
MAX_TERM_CHARS = 64
MAX_RULE_FORMS = 64  # words and phrases a rule stands for, all its terms' forms together
MAX_PER_CHAT = 20  # the default of telegram.max_watches_per_chat
MAX_WATCHES = 10_000  # the default of telegram.max_watches
SHARD_SIZE = 1000  # watches compiled together: one automaton, recompiled when one changes
EXCLUDED_WEIGHT = -1000.0
LABEL_CHARS = 40

class RuleError(ValueError):
    """A watch rule that cannot be used; the message says why, for the person who wrote it."""


@dataclass(frozen=True)
class Rule:
    """A parsed rule: the required groups (each a tuple of alternatives) and excluded terms."""

    text: str
    groups: tuple[tuple[str, ...], ...]
    excluded: tuple[str, ...]

    def describe(self) -> str:
        """The rule read back in words, e.g. `Hanoi AND (summit OR talks), not G20`."""
        parts = []
        for group in self.groups:
            shown = [_shown(term) for term in group]
            parts.append(shown[0] if len(shown) == 1 else "(" + " OR ".join(shown) + ")")
        text = " AND ".join(parts)
        if self.excluded:
            text += ", not " + ", ".join(_shown(term) for term in self.excluded)
        return text

    def topic(self) -> TopicConfig:
        groups = {f"g{i}": TermGroup(weight=1.0, terms=list(g)) for i, g in enumerate(self.groups, 1)}
        if self.excluded:
            groups["excluded"] = TermGroup(weight=EXCLUDED_WEIGHT, terms=list(self.excluded))
        return TopicConfig(
            description=self.text, threshold=float(len(self.groups)), groups=groups,
            require=[f"g{i}" for i in range(1, len(self.groups) + 1)], text_chars=0,
        )


def _shown(term: str) -> str:
    return f'"{term}"' if " " in term else term


def _tokens(text: str) -> list[tuple[str, bool, bool]]:
    """(text, quoted, excluded) per token; `OR` comes back as ("OR", False, False)."""
    tokens: list[tuple[str, bool, bool]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        excluded = False
        if text[i] == "-" and i + 1 < n and not text[i + 1].isspace():
            excluded = True
            i += 1
        if text[i] in "\"“”":
            close = min((j for j in (text.find(q, i + 1) for q in "\"“”") if j != -1), default=-1)
            if close == -1:
                raise RuleError("a quotation mark is not closed")
            phrase = " ".join(text[i + 1 : close].split())
            if not phrase:
                raise RuleError("empty quotes \"\" match nothing")
            tokens.append((phrase, True, excluded))
            i = close + 1
            continue
        j = i
        while j < n and not text[j].isspace() and text[j] not in "\"“”":
            j += 1
        tokens.append((text[i:j], False, excluded))
        i = j
    return tokens


def _check_term(term: str) -> int:
    """Check one term; return how many forms it stands for (counted, not expanded)."""
    if len(term) > MAX_TERM_CHARS:
        raise RuleError(f"“{term[:20]}…” is longer than {MAX_TERM_CHARS} characters")
    if term.lower().startswith("re:"):
        raise RuleError("regular expressions (re:) are not allowed in watches; use words, "
                        "\"phrases\", OR, -word and word* instead")
    try:
        forms = count_forms(term)
        if forms <= MAX_RULE_FORMS:
            parse_term(term)
    except ValueError as exc:
        raise RuleError(str(exc)) from None
    if forms > MAX_RULE_FORMS:
        raise _too_many_forms(forms, f"“{term}” alone")
    return forms


def _too_many_forms(forms: int, what: str) -> RuleError:
    return RuleError(f"the rule has too many forms: {what} stands for {forms:,} words or phrases "
                     f"(each (…) part multiplies them), and a watch may stand for at most "
                     f"{MAX_RULE_FORMS}")


def parse_rule(text: str) -> Rule:
    """Parse a watch rule; raise `RuleError` with a message fit to send back to the chat."""
    text = " ".join((text or "").split())
    if not text:
        raise RuleError("the rule is empty; write the words to watch for, e.g. Hanoi summit")
    if len(text) > MAX_RULE_CHARS:
        raise RuleError(f"the rule is {len(text)} characters long; keep it under {MAX_RULE_CHARS}")
    groups: list[list[str]] = []
    excluded: list[str] = []
    join_next = False
    previous_positive = False
    forms: dict[str, int] = {}
    for token, quoted, negative in _tokens(text):
        if token == "OR" and not quoted and not negative:
            if not previous_positive or join_next:
                raise RuleError("OR must stand between two words or phrases, e.g. Hanoi OR Hue")
            join_next = True
            continue
        term = token
        if term not in forms:
            forms[term] = _check_term(term)
            if sum(forms.values()) > MAX_RULE_FORMS:
                raise _too_many_forms(sum(forms.values()), "the rule")
        if negative:
            if join_next:
                raise RuleError("OR cannot join an excluded term (-word); exclude each term on its own")
            if term not in excluded:
                excluded.append(term)
            previous_positive = False
            continue
        if join_next:
            if term not in groups[-1]:
                groups[-1].append(term)
            join_next = False
        else:
            groups.append([term])
        previous_positive = True
    if join_next:
        raise RuleError("the rule ends with OR; add the alternative after it")
    if not groups:
        raise RuleError("the rule only excludes; add at least one word to look for")
    unique: list[tuple[str, ...]] = []
    for group in groups:
        if tuple(group) not in unique:
            unique.append(tuple(group))
    if len(unique) > MAX_GROUPS:
        raise RuleError(f"at most {MAX_GROUPS} required words or phrases; use \"phrases\" or OR to combine")
    if any(len(g) > MAX_ALTERNATIVES for g in unique):
        raise RuleError(f"at most {MAX_ALTERNATIVES} alternatives joined by OR")
    if len(excluded) > MAX_EXCLUDED:
        raise RuleError(f"at most {MAX_EXCLUDED} excluded terms")
    rule = Rule(text=text, groups=tuple(unique), excluded=tuple(excluded))
    try:
        rule.topic()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise RuleError(str((first.get("ctx") or {}).get("error", first["msg"]))) from None
    return rule


@dataclass(frozen=True)
class Watch:
    id: int
    chat_id: int
    rule: str
    created: datetime

    @property
    def topic(self) -> str:
        """The watch's name inside the watch matcher."""
        return f"watch:{self.id}"

    @property
    def label(self) -> str:
        """How an alert names the watch (shown as a hashtag, e.g. #watch_Hanoi_summit)."""
        rule = self.rule if len(self.rule) <= LABEL_CHARS else self.rule[: LABEL_CHARS - 1] + "…"
        return f"watch {rule}"


@dataclass(frozen=True)
class _Shard:
    """Up to `SHARD_SIZE` watches compiled together. `topics` keeps each watch's parsed rule
    (None for a rule that cannot be used), so that recompiling the shard parses only new ones."""

    watches: tuple[Watch, ...]
    topics: dict[int, TopicConfig | None]
    matcher: Matcher | None
    by_topic: dict[str, Watch] = field(default_factory=dict)


def compile_shard(watches: tuple[Watch, ...], known: dict[int, TopicConfig | None] | None = None) -> _Shard:
    """Compile `watches` into one shard (pure; the daemon runs it in a worker thread). A rule that
    cannot be used any more (stored before a limit was added) is kept but never matches."""
    known = known or {}
    topics: dict[int, TopicConfig | None] = {}
    for watch in watches:
        if watch.id in known:
            topics[watch.id] = known[watch.id]
            continue
        try:
            topics[watch.id] = parse_rule(watch.rule).topic()
        except RuleError as exc:
            log.warning("watch %d of chat %s cannot be used and never matches: %s", watch.id, watch.chat_id, exc)
            topics[watch.id] = None
    usable = {w.topic: w for w in watches if topics[w.id] is not None}
    matcher = Matcher({w.topic: topics[w.id] for w in usable.values()}) if usable else None
    return _Shard(watches, topics, matcher, usable)


class WatchMatcher:
    """Scores a story against every watch at once; returns the watches it passes."""

    def __init__(self, watches: list[Watch] | None = None, *, shards: tuple[_Shard, ...] | None = None) -> None:
        if shards is None:
            listed = list(watches or [])
            shards = tuple(compile_shard(tuple(listed[i : i + SHARD_SIZE]))
                           for i in range(0, len(listed), SHARD_SIZE))
        self.shards = shards
        self.watches = {topic: w for shard in shards for topic, w in shard.by_topic.items()}

    def score(self, title: str, text: str) -> list[tuple[Watch, TopicScore]]:
        passed = []
        for shard in self.shards:
            if shard.matcher is not None:
                passed += [(shard.by_topic[s.topic], s) for s in shard.matcher.matched(title, text) if s.passed]
        return passed


class WatchRows(Protocol):
    """Where the rules are kept (`newswatch.alerts.store.AlertsStore`)."""

    def add_watch(self, chat_id: int, rule: str, created: datetime) -> Watch: ...
    def watches_of(self, chat_id: int) -> list[Watch]: ...
    def delete_watch(self, watch_id: int) -> None: ...
    def all_watches(self) -> list[Watch]: ...
    def watch_count(self) -> int: ...


class Watches:
    """Per-chat watch rules (kept by `rows`), and their compiled matcher: `refresh()` (in a
    worker thread) or `matcher()` (here) bring it up to date."""

    def __init__(self, rows: WatchRows, *, max_per_chat: int = MAX_PER_CHAT,
                 max_watches: int = MAX_WATCHES) -> None:
        self.rows = rows
        self.max_per_chat = max_per_chat
        self.max_watches = max_watches
        self._shards: tuple[_Shard, ...] | None = None  # None: the stored watches are not read yet
        self._added: list[Watch] = []
        self._removed: set[int] = set()
        self._matcher: WatchMatcher | None = None
        self._refreshing = asyncio.Lock()
        self._stored_ids: frozenset[int] | None = None  # the ids follow_stored() saw last

    def add(self, chat_id: int, text: str, now: datetime | None = None) -> tuple[Watch, Rule]:
        """Validate and store a rule; raise `RuleError` when it is bad or there are too many."""
        rule = parse_rule(text)
        mine = self.of(chat_id)
        if any(w.rule == rule.text for w in mine):
            raise RuleError("this chat already has that watch")
        if len(mine) >= self.max_per_chat:
            raise RuleError(f"this chat has {self.max_per_chat} watches, the most allowed; /unwatch one first")
        if self.count() >= self.max_watches:
            raise RuleError(f"this bot holds {self.max_watches:,} watches, the most it takes; "
                            "try again when some have been removed")
        watch = self.rows.add_watch(chat_id, rule.text, now or datetime.now(UTC))
        self._added.append(watch)
        return watch, rule

    def of(self, chat_id: int) -> list[Watch]:
        """A chat's watches in the order they were made (numbered from 1 in replies)."""
        return self.rows.watches_of(chat_id)

    def remove(self, chat_id: int, number: int) -> Watch | None:
        """Remove the chat's watch number `number` (1-based, as /watches lists them)."""
        mine = self.of(chat_id)
        if not 1 <= number <= len(mine):
            return None
        watch = mine[number - 1]
        self.rows.delete_watch(watch.id)
        self._removed.add(watch.id)
        return watch

    def all(self) -> list[Watch]:
        return self.rows.all_watches()

    def count(self) -> int:
        return self.rows.watch_count()

    def follow_stored(self) -> bool:
        """Take the watches another process added or removed (the bot runs apart from the
        dispatcher): when the stored ones are not the ones last seen, every watch is read again
        at the next refresh. True when they changed."""
        stored = frozenset(w.id for w in self.all())
        seen, self._stored_ids = self._stored_ids, stored
        if seen is None or seen == stored:
            return False
        self._shards = None
        return True

    @property
    def stale(self) -> bool:
        """True when the compiled matcher does not have every change yet."""
        return self._shards is None or bool(self._added or self._removed)

    def matcher(self) -> WatchMatcher | None:
        """The matcher over every stored watch (None when none can match), compiling the shards
        that changed in this thread first. The daemon awaits `refresh()` instead."""
        while self.stale:
            shards, jobs = self._plan()
            try:
                built = {index: compile_shard(*job) for index, job in jobs.items()}
            except BaseException:
                self._shards = None  # the changes taken are not lost: read every watch again next time
                raise
            self._install(shards, built)
        return self._matcher

    async def refresh(self) -> WatchMatcher | None:
        """`matcher()`, with each changed shard compiled in a worker thread; returns when the
        matcher has every change made before or while it ran."""
        async with self._refreshing:
            while self.stale:
                shards, jobs = self._plan()
                built = {}
                try:
                    for index, (members, known) in jobs.items():
                        built[index] = await asyncio.to_thread(compile_shard, members, known)
                except BaseException:  # cancelled at shutdown, or a failure the caller logs
                    self._shards = None  # the changes taken are not lost: read every watch again
                    raise
                self._install(shards, built)
        return self._matcher

    def _plan(self) -> tuple[list[tuple[Watch, ...]], dict[int, tuple[tuple[Watch, ...], dict]]]:
        """Take the pending changes: the members of every shard after them, and for each shard
        that changed, its members and the parsed rules it can reuse."""
        if self._shards is None:
            self._added, self._removed = [], set()
            stored = self.all()
            members = [tuple(stored[i : i + SHARD_SIZE]) for i in range(0, len(stored), SHARD_SIZE)]
            return members, {index: (shard, {}) for index, shard in enumerate(members)}
        added, removed = self._added, self._removed
        self._added, self._removed = [], set()
        members = [[w for w in shard.watches if w.id not in removed] for shard in self._shards]
        changed = {i for i, shard in enumerate(self._shards) if len(members[i]) != len(shard.watches)}
        for watch in added:
            if watch.id in removed:
                continue
            index = next((i for i, m in enumerate(members) if len(m) < SHARD_SIZE), len(members))
            if index == len(members):
                members.append([])
            members[index].append(watch)
            changed.add(index)
        known = [shard.topics for shard in self._shards]
        jobs = {i: (tuple(members[i]), known[i] if i < len(known) else {}) for i in sorted(changed)}
        return [tuple(m) for m in members], jobs

    def _install(self, members: list[tuple[Watch, ...]], built: dict[int, _Shard]) -> None:
        previous = self._shards or ()
        shards = tuple(built[i] if i in built else previous[i] for i in range(len(members)) if members[i])
        self._shards = shards
        self._matcher = WatchMatcher(shards=shards) if any(s.matcher for s in shards) else None

