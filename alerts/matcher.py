"""The matcher: scores a story's title and text against every configured topic.

Pure: no I/O, no clock, no globals. A `Matcher` is compiled once from the validated topics
(see `alerts.topics` for the syntax and the scoring rules) and then only reads.

All literal terms of all topics go into one Aho-Corasick automaton pass, so the cost of a
story hardly depends on the number of terms. English hits are kept only on word boundaries;
Korean, Chinese and Japanese hits wherever they occur (or, for `word:` terms, where the term
is not part of a longer word of its script). `re:` terms are searched separately, one
regular expression each.

Terms with Korean, Chinese or Japanese characters live in a second automaton that only runs on
texts containing such characters, and it reads the text's UTF-16 bytes: pyahocorasick looks a
node's children up one by one, and hundreds of distinct first characters would otherwise make
every character of a Korean text cost hundreds of comparisons.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import ahocorasick

from alerts.topics import LATIN, Term, TopicConfig, normalize, parse_term, script

__all__ = ["Matcher", "TermHit", "TopicScore"]

_TITLE, _TEXT = 0, 1
_WHERE = ("title", "text")
_MASK = -1

# A kept hit while collecting: (topic, start, -end, group, label); sorting puts each topic's
# hits in text order, the longest first among those starting together.
_Hit = tuple[int, int, int, int, str]
# A counted hit of one group: (start, end, label).
_Span = tuple[int, int, str]

_CJK_CHAR = re.compile(
    "[\u1100-\u11ff\u2e80-\u2fdf\u3000-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f]"
)


@dataclass(frozen=True)
class TermHit:
    term: str
    group: str
    where: str  # "title" | "text"


@dataclass(frozen=True)
class TopicScore:
    topic: str
    score: float
    threshold: float
    terms: tuple[str, ...]  # distinct matched terms, for display
    missing: tuple[str, ...] = ()  # requirements not met, e.g. ("korea",)

    @property
    def passed(self) -> bool:
        return self.score >= self.threshold and not self.missing


@dataclass(frozen=True)
class _Group:
    name: str
    weight: float


@dataclass(frozen=True)
class _Near:
    first: int
    second: int
    within: int
    bonus: float


@dataclass(frozen=True)
class _Topic:
    name: str
    threshold: float
    title_weight: float
    decay: float
    groups: tuple[_Group, ...]
    require: tuple[tuple[int, ...], ...]
    require_names: tuple[str, ...]
    near: tuple[_Near, ...]
    weights: tuple[float, ...]
    saturation: tuple[float, ...]  # _saturated(n, decay) for n = 0 … _SATURATION_TABLE - 1


class _Key:
    """What one automaton key stands for: its length and, per kind of boundary check, the
    (topic, group, label) it counts for."""

    __slots__ = ("length", "variants")

    def __init__(self, length: int) -> None:
        self.length = length
        self.variants: list[tuple[int, int, list[tuple[int, int, str]]]] = []

    def add(self, left: int, right: int, target: tuple[int, int, str]) -> None:
        for v_left, v_right, targets in self.variants:
            if (v_left, v_right) == (left, right):
                if not any(t[:2] == target[:2] for t in targets):
                    targets.append(target)
                return
        self.variants.append((left, right, [target]))

    def frozen(self) -> tuple[int, tuple[tuple[int, int, tuple[tuple[int, int, str], ...]], ...]]:
        return self.length, tuple((left, right, tuple(t)) for left, right, t in self.variants)


_OPTIONAL_PART = re.compile(r"\([^()]*\)")


def display_term(label: str) -> str:
    """A term as a reader would name it: `North Korea(n)` -> North Korea, `sanction*` ->
    sanction, `word:北` -> 北; regular expressions are shown as written."""
    if label.startswith("re:"):
        return label
    if label.startswith("word:"):
        label = label[5:]
    return _OPTIONAL_PART.sub("", label).strip("*").strip()


def _boundaries(term: Term, pattern: str) -> tuple[int, int]:
    """The script a neighbouring character must not belong to, left and right (0: any)."""
    if term.kind in ("substr", "anywhere"):
        return 0, 0
    left = script(pattern[0]) if term.kind != "suffix" else 0
    right = script(pattern[-1]) if term.kind != "prefix" else 0
    return left, right


_SATURATION_TABLE = 64


def _saturated(count: int, decay: float) -> float:
    """1 + decay + decay² + … for `count` hits: never more than 1 / (1 - decay)."""
    if count <= 0:
        return 0.0
    if decay == 0:
        return 1.0
    return (1.0 - decay**count) / (1.0 - decay)


def _utf16(text: str) -> str:
    """The UTF-16 (big-endian) bytes of `text`, as a str of code points 0-255."""
    return text.encode("utf-16-be").decode("latin-1")


# Characters by how often they occur in news text: English letters and marks, and the high
# bytes of Hangul syllables in UTF-16. pyahocorasick tries a node's children in the order
# they were added, so keys are added in this order, and a few never-matching keys are added
# first to give frequent characters that start no term (the space) an early place at the root.
_LATIN_ORDER = " etaniorshldcupmgfykwbv.,j'0x2\u20191()z:\"q"
_HANGUL_HIGH_ORDER = bytes.fromhex(
    "c7d5acb2c8c5adc9b3bcb8d6c6b9c2c1c0bbaed1b4ccbabdb7b0beb1cdd3d0d2ced7b5d4cfafb6c3cacbc4bf"
).decode("latin-1")
_NEVER = "\uffff"


def _rank(order: str) -> Any:
    positions = {c: i for i, c in enumerate(order)}
    return lambda key: [positions.get(c, len(order) + ord(c)) for c in key[1]]


def _build(
    keys: list[tuple[int, str]], order: str, never: int, *, wide: bool = False
) -> ahocorasick.Automaton | None:
    if not keys:
        return None
    automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
    starts = {key[0] for _, key in keys}
    for char in order:
        if char not in starts:
            automaton.add_word(char + (_utf16(_NEVER) if wide else _NEVER), never)
    for index, key in sorted(keys, key=_rank(order)):
        automaton.add_word(key, index)
    automaton.make_automaton()
    return automaton


class Matcher:
    """Scores stories against topics; build once, call `score` for every story."""

    def __init__(self, topics: Mapping[str, TopicConfig]) -> None:
        if not topics:
            raise ValueError("at least one topic is needed")
        self._topics: list[_Topic] = []
        table: dict[str, _Key] = {}
        self._regexes: list[tuple[int, int, Term]] = []

        def add(pattern: str, left: int, right: int, target: tuple[int, int, str]) -> None:
            key = table.get(pattern)
            if key is None:
                key = table[pattern] = _Key(len(pattern))
            key.add(left, right, target)

        for t_index, (name, config) in enumerate(topics.items()):
            group_names = list(config.groups)
            for g_index, g_name in enumerate(group_names):
                for term in config.groups[g_name].parsed():
                    if term.kind == "regex":
                        self._regexes.append((t_index, g_index, term))
                        continue
                    for pattern in term.patterns:
                        add(pattern, *_boundaries(term, pattern), (t_index, g_index, term.label))
            for phrase in config.ignore:
                term = parse_term(phrase)
                if term.kind == "regex":
                    self._regexes.append((t_index, _MASK, term))
                    continue
                for pattern in term.patterns:
                    add(pattern, *_boundaries(term, pattern), (t_index, _MASK, phrase))
            requirements = config.required_groups()
            self._topics.append(
                _Topic(
                    name=name,
                    threshold=config.threshold,
                    title_weight=config.title_weight,
                    decay=config.repeat_decay,
                    groups=tuple(_Group(g, config.groups[g].weight) for g in group_names),
                    require=tuple(tuple(group_names.index(g) for g in req) for req in requirements),
                    require_names=tuple(" or ".join(req) for req in requirements),
                    near=tuple(
                        _Near(
                            group_names.index(rule.groups[0]),
                            group_names.index(rule.groups[1]),
                            rule.within,
                            rule.bonus,
                        )
                        for rule in config.near
                    ),
                    weights=tuple(config.groups[g].weight for g in group_names),
                    saturation=tuple(
                        _saturated(n, config.repeat_decay) for n in range(_SATURATION_TABLE)
                    ),
                )
            )

        patterns = list(table)
        self._keys = [table[p].frozen() for p in patterns]
        never = len(self._keys)
        self._keys.append((len(_NEVER) + 1, ()))
        self._latin = _build(
            [(i, p) for i, p in enumerate(patterns) if _CJK_CHAR.search(p) is None],
            _LATIN_ORDER,
            never,
        )
        self._cjk = _build(
            [(i, _utf16(p)) for i, p in enumerate(patterns) if _CJK_CHAR.search(p) is not None],
            "\x00" + _HANGUL_HIGH_ORDER,
            never,
            wide=True,
        )
        self._masks = any(config.ignore for config in topics.values())

    @property
    def topics(self) -> list[str]:
        return [t.name for t in self._topics]

    # -- scanning ---------------------------------------------------------------------------

    def _scan(self, text: str) -> list[_Hit]:
        """Every hit in normalised `text` that passes its boundary check."""
        hits: list[_Hit] = []
        if not text:
            return hits
        keys = self._keys
        last = len(text) - 1
        found: Iterable[tuple[int, int]] = ()
        if self._latin is not None:
            found = self._latin.iter(text)
        if self._cjk is not None and not text.isascii() and _CJK_CHAR.search(text):
            wide = [(end >> 1, i) for end, i in self._cjk.iter(_utf16(text)) if end & 1]
            found = [*found, *wide]
        for end, index in found:
            length, variants = keys[index]
            start = end - length + 1
            before = text[start - 1] if start > 0 else " "
            after = text[end + 1] if end < last else " "
            for need_left, need_right, targets in variants:
                if need_left and before.isalnum():
                    if need_left == LATIN:
                        if before < "\u1100":
                            continue
                    elif before.isdigit() or script(before) == need_left:
                        continue  # a `word:` term: digits glue too (20日 is a date)
                if need_right and after.isalnum():
                    if need_right == LATIN:
                        if after < "\u1100":
                            continue
                    elif after.isdigit() or script(after) == need_right:
                        continue
                for t_index, g_index, label in targets:
                    hits.append((t_index, start, -end - 1, g_index, label))
        for t_index, g_index, term in self._regexes:
            assert term.regex is not None
            for match in term.regex.finditer(text):
                if match.end() > match.start():
                    hits.append((t_index, match.start(), -match.end(), g_index, term.label))
        if self._masks:
            hits = _apply_masks(hits)
        return hits

    def _collect(self, title: str, text: str) -> list[dict[int, tuple[list[_Span], list[_Span]]]]:
        """Per topic: group -> (title spans, text spans); hits inside longer hits dropped."""
        per_topic: list[dict[int, tuple[list[_Span], list[_Span]]]] = [
            {} for _ in self._topics
        ]
        for where, field in ((_TITLE, title), (_TEXT, text)):
            hits = self._scan(normalize(field))
            if not hits:
                continue
            hits.sort()
            topic_seen = last_group = -1
            cover_start = cover_end = -1
            found: dict[int, tuple[list[_Span], list[_Span]]] = {}
            for t_index, start, neg_end, g_index, label in hits:
                end = -neg_end
                if t_index != topic_seen:
                    topic_seen, cover_start, cover_end, last_group = t_index, -1, -1, -1
                    found = per_topic[t_index]
                if end <= cover_end:
                    if start != cover_start or end != cover_end:
                        continue  # inside a longer hit of this topic
                    if g_index == last_group:
                        continue  # the same words again, through another term of the group
                cover_start, cover_end, last_group = start, end, g_index
                slots = found.get(g_index)
                if slots is None:
                    slots = found[g_index] = ([], [])
                slots[where].append((start, end, label))
        return per_topic

    # -- scoring ----------------------------------------------------------------------------

    def _score_topic(
        self, topic: _Topic, found: dict[int, tuple[list[_Span], list[_Span]]]
    ) -> tuple[float, list[tuple[int, float]], list[tuple[int, float]], tuple[str, ...]]:
        """(score, points per group, bonus per near rule, requirements not met)."""
        score = 0.0
        group_points: list[tuple[int, float]] = []
        weights, saturation, title_weight = topic.weights, topic.saturation, topic.title_weight
        last = len(saturation) - 1
        for g_index, (in_title, in_text) in found.items():
            points = 0.0
            if in_title:
                points = weights[g_index] * title_weight
            if in_text:
                points += weights[g_index] * saturation[min(len(in_text), last)]
            group_points.append((g_index, points))
            score += points
        near_points: list[tuple[int, float]] = []
        for r_index, rule in enumerate(topic.near):
            first = found.get(rule.first)
            if first is None:
                continue
            second = found.get(rule.second)
            if second is None:
                continue
            if (first[0] and second[0]) or _close(first[1], second[1], rule.within):
                near_points.append((r_index, rule.bonus))
                score += rule.bonus
        if not topic.require:
            return score, group_points, near_points, ()
        missing = tuple(
            name
            for req, name in zip(topic.require, topic.require_names, strict=True)
            if not any(g in found for g in req)
        )
        return score, group_points, near_points, missing

    def score(self, title: str, text: str) -> list[TopicScore]:
        """One `TopicScore` per topic, in configuration order."""
        results = []
        for topic, found in zip(self._topics, self._collect(title, text), strict=True):
            if not found:
                results.append(
                    TopicScore(topic.name, 0.0, topic.threshold, (), topic.require_names)
                )
                continue
            score, _, _, missing = self._score_topic(topic, found)
            terms: dict[str, None] = {}
            weights = topic.weights
            for g_index, (in_title, in_text) in found.items():
                if weights[g_index] > 0:
                    for _, _, label in (*in_title, *in_text):
                        terms[display_term(label)] = None
            results.append(
                TopicScore(topic.name, round(score, 4), topic.threshold, tuple(terms), missing)
            )
        return results

    def passed(self, title: str, text: str) -> list[str]:
        """Names of the topics the story passes."""
        return [s.topic for s in self.score(title, text) if s.passed]

    def hits(self, title: str, text: str) -> list[tuple[str, TermHit]]:
        """Every counted hit as (topic, TermHit), in configuration order."""
        out = []
        for topic, found in zip(self._topics, self._collect(title, text), strict=True):
            for g_index, slots in found.items():
                for where, spans in enumerate(slots):
                    for _, _, label in spans:
                        out.append(
                            (topic.name, TermHit(label, topic.groups[g_index].name, _WHERE[where]))
                        )
        return out

    def explain(self, title: str, text: str) -> dict[str, Any]:
        """Why each topic scored what it did.

        {"title": ..., "topics": {topic: {"score", "threshold", "passed",
            "contributions": [{"term", "group", "weight", "where", "count"}],
            "groups": {group: points}, "near": [{"groups": [a, b], "bonus"}],
            "missing": [requirement, ...]}}}
        """
        out: dict[str, Any] = {"title": title, "topics": {}}
        for topic, found in zip(self._topics, self._collect(title, text), strict=True):
            score, group_points, near_points, missing = self._score_topic(topic, found)
            contributions = []
            for g_index, slots in found.items():
                group = topic.groups[g_index]
                for where, spans in enumerate(slots):
                    counts: dict[str, int] = {}
                    for _, _, label in spans:
                        counts[label] = counts.get(label, 0) + 1
                    for label, count in counts.items():
                        contributions.append(
                            {
                                "term": label,
                                "group": group.name,
                                "weight": group.weight,
                                "where": _WHERE[where],
                                "count": count,
                            }
                        )
            out["topics"][topic.name] = {
                "score": round(score, 4),
                "threshold": topic.threshold,
                "passed": score >= topic.threshold and not missing,
                "contributions": contributions,
                "groups": {topic.groups[g].name: round(p, 4) for g, p in group_points},
                "near": [
                    {
                        "groups": [
                            topic.groups[topic.near[r].first].name,
                            topic.groups[topic.near[r].second].name,
                        ],
                        "bonus": bonus,
                    }
                    for r, bonus in near_points
                ],
                "missing": list(missing),
            }
        return out


def _apply_masks(hits: list[_Hit]) -> list[_Hit]:
    """Drop the hits that lie inside an `ignore:` phrase of their topic, and the phrases."""
    masks = [(t, s, -e) for t, s, e, g, _ in hits if g == _MASK]
    if not masks:
        return hits
    return [
        hit
        for hit in hits
        if hit[3] != _MASK
        and not any(t == hit[0] and s <= hit[1] and -hit[2] <= e for t, s, e in masks)
    ]


def _close(first: list[_Span], second: list[_Span], within: int) -> bool:
    """True when a span of `first` and one of `second` (both in text order) are at most
    `within` characters apart."""
    i = j = 0
    while i < len(first) and j < len(second):
        a_start, a_end, _ = first[i]
        b_start, b_end, _ = second[j]
        if max(a_start, b_start) - min(a_end, b_end) <= within:
            return True
        if a_end < b_end:
            i += 1
        else:
            j += 1
    return False
