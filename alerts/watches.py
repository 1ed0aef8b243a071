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
syntax of `alerts.topics` except `re:` regular expressions, which are refused in watches
(any chat can write one, and a careless pattern can stall the matcher).

A rule of N groups becomes a topic whose N groups are all required, weight 1 each, with a
threshold of N; excluded terms form a group with a weight low enough that any hit sinks the
score. A watch reads the whole text (`text_chars: 0`), as a search alert does: a rule names
exactly what to look for, so a mention anywhere in the story counts. `Watches` keeps the
rules in SQLite and hands the dispatcher one `Matcher` over every watch, rebuilt only when a
watch is added or removed (`version`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from alerts.matcher import Matcher, TopicScore
from alerts.topics import TermGroup, TopicConfig, parse_term

MAX_RULE_CHARS = 200
MAX_GROUPS = 8
MAX_ALTERNATIVES = 8
MAX_EXCLUDED = 8
MAX_TERM_CHARS = 64
MAX_PER_CHAT = 20
EXCLUDED_WEIGHT = -1000.0
LABEL_CHARS = 40

_SCHEMA = """
CREATE TABLE IF NOT EXISTS watches (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id  INTEGER NOT NULL REFERENCES chats(chat_id) ON UPDATE CASCADE ON DELETE CASCADE,
    rule     TEXT NOT NULL,
    created  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS watches_chat ON watches(chat_id, id);
"""


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


def _check_term(term: str) -> str:
    if len(term) > MAX_TERM_CHARS:
        raise RuleError(f"“{term[:20]}…” is longer than {MAX_TERM_CHARS} characters")
    if term.lower().startswith("re:"):
        raise RuleError("regular expressions (re:) are not allowed in watches; use words, "
                        "\"phrases\", OR, -word and word* instead")
    try:
        parse_term(term)
    except ValueError as exc:
        raise RuleError(str(exc)) from None
    return term


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
    for token, quoted, negative in _tokens(text):
        if token == "OR" and not quoted and not negative:
            if not previous_positive or join_next:
                raise RuleError("OR must stand between two words or phrases, e.g. Hanoi OR Hue")
            join_next = True
            continue
        term = _check_term(token)
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


class WatchMatcher:
    """Scores a story against every watch at once; returns the watches it passes."""

    def __init__(self, watches: list[Watch]) -> None:
        self.watches = {w.topic: w for w in watches}
        self._matcher = Matcher({w.topic: parse_rule(w.rule).topic() for w in watches})

    def score(self, title: str, text: str) -> list[tuple[Watch, TopicScore]]:
        return [(self.watches[s.topic], s) for s in self._matcher.matched(title, text) if s.passed]


class Watches:
    """Per-chat watch rules in SQLite (the `watches` table, beside `chats`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        conn.executescript(_SCHEMA)
        self.version = 0
        self._matcher: tuple[int, WatchMatcher | None] | None = None

    def add(self, chat_id: int, text: str, now: datetime | None = None) -> tuple[Watch, Rule]:
        """Validate and store a rule; raise `RuleError` when it is bad or the chat has too many."""
        rule = parse_rule(text)
        mine = self.of(chat_id)
        if any(w.rule == rule.text for w in mine):
            raise RuleError("this chat already has that watch")
        if len(mine) >= MAX_PER_CHAT:
            raise RuleError(f"this chat has {MAX_PER_CHAT} watches, the most allowed; /unwatch one first")
        now = now or datetime.now(UTC)
        cur = self.conn.execute(
            "INSERT INTO watches (chat_id, rule, created) VALUES (?, ?, ?)",
            (chat_id, rule.text, now.astimezone(UTC).isoformat()),
        )
        self.version += 1
        return Watch(int(cur.lastrowid or 0), chat_id, rule.text, now), rule

    def of(self, chat_id: int) -> list[Watch]:
        """A chat's watches in the order they were made (numbered from 1 in replies)."""
        rows = self.conn.execute("SELECT * FROM watches WHERE chat_id = ? ORDER BY id", (chat_id,))
        return [_watch(r) for r in rows]

    def remove(self, chat_id: int, number: int) -> Watch | None:
        """Remove the chat's watch number `number` (1-based, as /watches lists them)."""
        mine = self.of(chat_id)
        if not 1 <= number <= len(mine):
            return None
        watch = mine[number - 1]
        self.conn.execute("DELETE FROM watches WHERE id = ?", (watch.id,))
        self.version += 1
        return watch

    def all(self) -> list[Watch]:
        return [_watch(r) for r in self.conn.execute("SELECT * FROM watches ORDER BY id")]

    def count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM watches").fetchone()[0]

    def matcher(self) -> WatchMatcher | None:
        """One matcher over every stored watch (None when there is none), cached by version."""
        if self._matcher is None or self._matcher[0] != self.version:
            watches = []
            for watch in self.all():
                try:
                    parse_rule(watch.rule)
                except RuleError:
                    continue  # stored under older rules; kept, but it cannot match
                watches.append(watch)
            self._matcher = (self.version, WatchMatcher(watches) if watches else None)
        return self._matcher[1]


def _watch(row: sqlite3.Row) -> Watch:
    return Watch(id=row["id"], chat_id=row["chat_id"], rule=row["rule"],
                 created=datetime.fromisoformat(row["created"]))
