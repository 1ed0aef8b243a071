"""The matcher: scores a story's title and text against every configured topic.

Pure: no I/O, no clock, no globals. A `Matcher` is compiled once from the validated topics
(see `alerts.topics` for the syntax and the scoring rules) and then only reads (but for a
cache of how characters beyond Latin-1 are read, when terms hold such characters).

All literal terms of all topics go into Aho-Corasick automata that read a text once, so the
cost of a story hardly depends on the number of terms. English hits are kept only on word
boundaries; Korean, Chinese and Japanese hits wherever they occur (or, for `word:` terms, where
the term is not part of a longer word of its script). `re:` terms are searched separately, one
regular expression each, and only in texts that contain a piece of text every match needs.

pyahocorasick looks a node's children up one by one, so what the automata read is chosen to
keep those lists short where a text's characters go:
  - Terms without Korean, Chinese or Japanese characters (English): the automaton reads a view
    of the text in which characters no such term holds are a filler (letters, digits) or a
    boundary mark (anything else), and a term that starts a whole word is a key once for each
    character that may stand before a word. Its root has a handful of children, and it goes
    into the terms only where words start.
  - Terms with Korean, Chinese or Japanese characters: the automata read the text's UTF-8
    bytes, in which every Hangul syllable starts with one of four bytes; the terms that start
    with a Hangul syllable and the others are in two automata, and each only runs on texts
    holding a byte that one of its terms starts with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import ahocorasick

from alerts.topics import LATIN, Term, TopicConfig, normalize, parse_term, script

__all__ = ["Matcher", "TermHit", "TopicScore"]

_TITLE, _TEXT = 0, 1
_WHERE = ("title", "text")
_MASK = -1

# A kept hit of one topic while collecting: (start, -end, group, label); sorting puts the hits
# in text order, the longest first among those starting together.
_Hit = tuple[int, int, int, str]
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


def _text_normalizer() -> Any:
    """`normalize`, with a shortcut for ASCII text that gives the same result in a fraction of
    the time; the shortcut is checked against `normalize` on every ASCII character and left
    out if the two ever disagree."""
    table = bytearray(range(256))
    for code in range(ord("A"), ord("Z") + 1):
        table[code] = code + 32
    table[ord("-")] = ord(" ")
    for code in [*range(32), 127]:
        table[code] = ord(" ") if chr(code) in "\t\n\r" else 0
    fold = bytes(table)

    def normalized(text: str) -> str:
        if not text.isascii():
            return normalize(text)
        folded = text.encode("ascii").translate(fold)
        if b"\x00" in folded:  # control characters: the general rules apply
            return normalize(text)
        while b"  " in folded:
            folded = folded.replace(b"  ", b" ")
        return folded.strip(b" ").decode("ascii")

    probes = [chr(code) for code in range(128)]
    probes += [f" A{c}b-{c}\t-C{c}{c} " for c in probes] + ["", " ", "  - -\r\n", "A  B"]
    if all(normalized(probe) == normalize(probe) for probe in probes):
        return normalized
    return normalize


_normalized = _text_normalizer()


def _glued(char: str, need: int) -> bool:
    """True when `char`, next to a hit, makes it part of a longer word of script `need`."""
    if not char.isalnum():
        return False
    if need == LATIN:
        return char < "\u1100"
    return char.isdigit() or script(char) == need  # a `word:` term: digits glue too (20日)


_ASCII_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
# 1 for each byte that starts a character in UTF-8.
_UTF8_STARTS = bytes(0 if 0x80 <= b < 0xC0 else 1 for b in range(256))


def _required_text(regex: re.Pattern[str]) -> str | None:
    """A piece of text that every match of `regex` contains in a normalised text, to test for
    before searching; None when none can be read off the expression.

    Only ASCII characters other than i are used: in normalised text (lower case, NFKC) the only
    character other than c.lower() that such a c matches while ignoring case would be the
    dotless ı for i."""
    try:
        from re import _constants, _parser  # type: ignore[attr-defined]

        items = list(_parser.parse(regex.pattern, regex.flags))
        literal, lookahead = _constants.LITERAL, _constants.ASSERT
    except Exception:  # another Python's internals: search every text
        return None

    def longest(items: Any) -> str:
        """The longest run of plain characters in sequence, here or in a lookahead that every
        match must pass (its text must be there too)."""
        best = run = ""
        for op, value in items:
            char = chr(value) if op == literal else ""
            if " " <= char <= "~" and char not in "iI":
                run += char.lower()
                continue
            best = max(best, run, key=len)
            run = ""
            if op == lookahead and value[0] == 1:  # (?=...), not a lookbehind
                best = max(best, longest(value[1]), key=len)
        return max(best, run, key=len)

    return longest(items) or None


# Characters by how often they occur in news text: English letters and marks, and the bytes
# that start Hangul syllables in UTF-8. pyahocorasick tries a node's children in the order they
# were added, so keys are added in this order, and in the Korean, Chinese and Japanese terms'
# automata a few never-matching keys are added first to give frequent bytes that start no term
# (the space) an early place at the root.
_LATIN_ORDER = " etaniorshldcupmgfykwbv.,j'0x2\u20191()z:\"q"
_UTF8_ORDER = "\xec\xeb\xea\xed "
_NEVER = "\uffff"


def _rank(order: str) -> Any:
    positions = {c: i for i, c in enumerate(order)}
    return lambda key: [positions.get(c, len(order) + ord(c)) for c in key[1]]


def _build(
    keys: list[tuple[_KeyInfo, str]], order: str, never: str | None
) -> ahocorasick.Automaton | None:
    """An automaton of `keys`, each (what it stands for, the key)."""
    if not keys:
        return None
    automaton = ahocorasick.Automaton(ahocorasick.STORE_ANY)
    starts = {key[0] for _, key in keys}
    for char in order if never else "":
        if char not in starts:
            automaton.add_word(char + never, _NOTHING)
    for info, key in sorted(keys, key=_rank(order)):
        automaton.add_word(key, info)
    automaton.make_automaton()
    return automaton


def _blocks(char: str) -> bool:
    """True for a character that makes an English term next to it part of a longer word."""
    return char.isalnum() and char < "\u1100"


class _ViewMap(dict[int, int]):
    """`str.translate` table from characters to what the automaton of the other terms reads:
    characters of its terms as they are, other letters and digits as `filler`, anything else as
    `boundary`; filled in as characters turn up."""

    def __init__(self, chars: set[str], boundary: str, filler: str) -> None:
        super().__init__()
        self.chars, self.boundary, self.filler = chars, ord(boundary), ord(filler)

    def __missing__(self, code: int) -> int:
        char = chr(code)
        value = code if char in self.chars else self.filler if _blocks(char) else self.boundary
        self[code] = value
        return value


def _utf8(text: str) -> str:
    """The UTF-8 bytes of `text`, as a str of code points 0-255."""
    return text.encode("utf-8").decode("latin-1")


_Target = tuple[int, int, str]
_Variants = tuple[tuple[int, int, tuple[_Target, ...]], ...]
# What an automaton value stands for: (length in characters, and either the boundaries to check
# on the left and right and the one (topic, group, label) of a key that has only one, with None
# for the variants, or 0, 0, None and the variants).
_KeyInfo = tuple[int, int, int, _Target | None, _Variants | None]


def _key_info(length: int, variants: _Variants) -> _KeyInfo:
    if len(variants) == 1 and len(variants[0][2]) == 1:
        left, right, (target,) = variants[0]
        return length, left, right, target, None
    return length, 0, 0, None, variants


_NOTHING = _key_info(0, ())  # what the never-matching keys stand for


def _sides(info: _KeyInfo) -> list[tuple[int, int]]:
    """The (left, right) boundaries a key's hits are checked for, one pair per variant."""
    _, left, right, _, variants = info
    if variants is None:
        return [(left, right)]
    return [(left, right) for left, right, _ in variants]


class Matcher:
    """Scores stories against topics; build once, call `score` for every story."""

    def __init__(self, topics: Mapping[str, TopicConfig]) -> None:
        if not topics:
            raise ValueError("at least one topic is needed")
        self._topics: list[_Topic] = []
        table: dict[str, _Key] = {}
        regexes: list[tuple[int, int, Term]] = []

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
                        regexes.append((t_index, g_index, term))
                        continue
                    for pattern in term.patterns:
                        add(pattern, *_boundaries(term, pattern), (t_index, g_index, term.label))
            for phrase in config.ignore:
                term = parse_term(phrase)
                if term.kind == "regex":
                    regexes.append((t_index, _MASK, term))
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

        latin: list[tuple[_KeyInfo, str]] = []
        wide: list[tuple[_KeyInfo, str]] = []
        variants: list[_Variants] = []
        for pattern, key in table.items():
            length, key_variants = key.frozen()
            variants.append(key_variants)
            if _CJK_CHAR.search(pattern) is None:
                latin.append((_key_info(length, key_variants), pattern))
            else:
                wide.append((_key_info(length, key_variants), _utf8(pattern)))
        # The other terms' automaton reads a view of the text: the characters of those terms
        # as they are, every other letter or digit as a filler, every other character (what
        # may stand before a whole word) as a boundary character, and one boundary character
        # in front. A term that must start a word is looked for as "x" + term for every x that
        # may stand before it, so that the automaton only goes into such terms where words
        # start; its root has a handful of children.
        chars = {c for _, p in latin for c in p}
        boundary, filler = [c for c in map(chr, range(1, 32)) if c not in chars][:2]
        anchors = sorted({c for c in chars if not _blocks(c)} | {boundary})
        anchored: list[tuple[_KeyInfo, str]] = []
        for info, pattern in latin:
            if all(left == LATIN for left, _ in _sides(info)):
                anchored += [(info, anchor + pattern) for anchor in anchors]
            else:
                anchored.append((info, pattern))
        if anchored:
            # Boundary characters and spaces in a row (a Korean text's view) stay among a few
            # nodes that have them as first children.
            pairs = (boundary + boundary, boundary + " ", " " + boundary)
            anchored += [(_NOTHING, pair + _NEVER) for pair in pairs]
        self._latin = _build(anchored, " " + boundary + _LATIN_ORDER, None)
        self._boundary = boundary.encode("latin-1")
        self._view_table = bytes(
            b if c in chars else ord(filler) if _blocks(c) else ord(boundary)
            for b, c in enumerate(map(chr, range(256)))
        )
        self._view_map = _ViewMap(chars, boundary, filler)
        # Terms that start with a Hangul syllable (in UTF-8, with one of four bytes) and the
        # others (Chinese, Japanese) in two automata, each with few children at the root, each
        # run only on texts that hold a byte that starts one of its terms.
        self._cjk: list[tuple[ahocorasick.Automaton, tuple[bytes, ...]]] = []
        for part in (
            [w for w in wide if w[1][0] in _UTF8_ORDER],
            [w for w in wide if w[1][0] not in _UTF8_ORDER],
        ):
            automaton = _build(part, _UTF8_ORDER, _utf8(_NEVER))
            if automaton is not None:
                firsts = sorted({p[0] for _, p in part}, key=lambda c: (c not in _UTF8_ORDER, c))
                self._cjk.append((automaton, tuple(c.encode("latin-1") for c in firsts)))
        # Boundaries of the other terms are all "no letter or digit next to it" (or none);
        # otherwise their hits take the general check.
        self._latin_words = all(
            need in (0, LATIN) for info, _ in latin for side in _sides(info) for need in side
        )
        # When the other terms are all Latin-1 without `?`, a text's view is made from its
        # Latin-1 bytes, with `?` for every other character (a boundary then); otherwise
        # character by character (slower).
        self._latin_view = all(max(p) < "\u0100" and "?" not in p for _, p in latin)
        # Bytes that start no term: a text made of them only holds no hit.
        firsts = {ord(p[0]) for _, p in latin if p[0] < "\u0100"}
        self._latin_skip = bytes(b for b in range(256) if b not in firsts)
        self._regexes = [
            (t_index, g_index, term.label, term.regex, _required_text(term.regex))
            for t_index, g_index, term in regexes
            if term.regex is not None
        ]
        self._masked = [bool(config.ignore) for config in topics.values()]
        self._display = {
            label: display_term(label)
            for key_variants in variants
            for _, _, targets in key_variants
            for _, _, label in targets
        }
        self._display.update((label, display_term(label)) for _, _, label, _, _ in self._regexes)
        self._near = [
            tuple((rule.first, rule.second, rule.within, rule.bonus) for rule in t.near)
            for t in self._topics
        ]
        self._empty = [
            TopicScore(t.name, 0.0, t.threshold, (), t.require_names) for t in self._topics
        ]

    @property
    def topics(self) -> list[str]:
        return [t.name for t in self._topics]

    # -- scanning ---------------------------------------------------------------------------

    def _scan(self, text: str) -> list[list[_Hit]]:
        """Every hit in normalised `text` that passes its boundary check, per topic."""
        buckets: list[list[_Hit]] = [[] for _ in self._topics]
        if not text:
            return buckets
        add = [bucket.append for bucket in buckets]
        if text.isascii():
            if self._latin is not None:
                view = (self._boundary + text.encode("ascii")).translate(self._view_table)
                if self._latin_words:
                    self._scan_words(text, view.decode("latin-1"), add)
                else:
                    self._scan_latin(text, view.decode("latin-1"), add)
        else:
            if self._latin is not None:
                if not self._latin_view:
                    view = self._boundary.decode() + text.translate(self._view_map)
                    self._scan_latin(text, view, add)
                else:
                    # Characters beyond Latin-1 become `?`, and then boundaries (the left
                    # neighbour of a hit is checked in `text`).
                    raw = text.encode("latin-1", "replace")
                    if raw.translate(None, self._latin_skip):
                        view = (self._boundary + raw).translate(self._view_table)
                        self._scan_latin(text, view.decode("latin-1"), add)
            if self._cjk:
                self._scan_cjk(text, add)
        for t_index, g_index, label, regex, required in self._regexes:
            if required is None or required in text:
                for match in regex.finditer(text):
                    start, end = match.span()
                    if end > start:
                        add[t_index]((start, -end, g_index, label))
        return buckets

    def _scan_words(self, text: str, view: str, add: list[Any]) -> None:
        """The other terms' hits in ASCII `text`, when every boundary is a word boundary."""
        alnum = _ASCII_ALNUM
        size = len(text)
        found = self._latin.iter(view)  # type: ignore[union-attr]
        for end, (length, _, right, target, variants) in found:
            # `view` has one character more in front: `end` is where the hit stops in `text`.
            start = end - length
            if variants is None:
                # A key of one variant that must start a word is only found after a character
                # that may stand before one (see __init__): only the right end is checked.
                if right and end < size and text[end] in alnum:
                    continue
                t_index, g_index, label = target  # type: ignore[misc]
                add[t_index]((start, -end, g_index, label))
                continue
            glued_left = start > 0 and text[start - 1] in alnum
            glued_right = end < size and text[end] in alnum
            for left, right, targets in variants:
                if (left and glued_left) or (right and glued_right):
                    continue
                for t_index, g_index, label in targets:
                    add[t_index]((start, -end, g_index, label))

    def _scan_latin(self, text: str, view: str, add: list[Any]) -> None:
        """The other terms' hits, found in `view` and checked against `text`."""
        size = len(text)
        found = self._latin.iter(view)  # type: ignore[union-attr]
        for end, (length, left, right, target, variants) in found:
            start = end - length
            before = text[start - 1] if start > 0 else " "
            after = text[end] if end < size else " "
            if variants is None:
                if (left and _glued(before, left)) or (right and _glued(after, right)):
                    continue
                t_index, g_index, label = target  # type: ignore[misc]
                add[t_index]((start, -end, g_index, label))
                continue
            for left, right, targets in variants:
                if (left and _glued(before, left)) or (right and _glued(after, right)):
                    continue
                for t_index, g_index, label in targets:
                    add[t_index]((start, -end, g_index, label))

    def _scan_cjk(self, text: str, add: list[Any]) -> None:
        """The Korean, Chinese and Japanese terms' hits, found in the UTF-8 bytes of `text`."""
        raw = text.encode("utf-8")
        wide = ""
        found: list[tuple[int, _KeyInfo]] = []
        for automaton, firsts in self._cjk:
            for first in firsts:
                if first in raw:
                    wide = wide or raw.decode("latin-1")
                    found += automaton.iter(wide)
                    break
        if not found:
            return
        if len(self._cjk) > 1:
            found.sort(key=itemgetter(0))  # by where they end; each part is in that order already
        starts = raw.translate(_UTF8_STARTS).count
        size = len(text)
        offset = chars = 0  # bytes and characters up to the end of the last hit
        for end, (length, left, right, target, variants) in found:
            end += 1
            chars += starts(1, offset, end)
            offset = end
            start = chars - length
            if variants is None:
                if (left and start > 0 and _glued(text[start - 1], left)) or (
                    right and chars < size and _glued(text[chars], right)
                ):
                    continue
                t_index, g_index, label = target  # type: ignore[misc]
                add[t_index]((start, -chars, g_index, label))
                continue
            for left, right, targets in variants:
                if left and start > 0 and _glued(text[start - 1], left):
                    continue
                if right and chars < size and _glued(text[chars], right):
                    continue
                for t_index, g_index, label in targets:
                    add[t_index]((start, -chars, g_index, label))

    def _collect(self, title: str, text: str) -> list[dict[int, tuple[list[_Span], list[_Span]]]]:
        """Per topic: group -> (title spans, text spans); hits inside longer hits dropped."""
        per_topic: list[dict[int, tuple[list[_Span], list[_Span]]]] = [
            {} for _ in self._topics
        ]
        masked = self._masked
        for where, field in ((_TITLE, title), (_TEXT, text)):
            for t_index, hits in enumerate(self._scan(_normalized(field))):
                if not hits:
                    continue
                if masked[t_index]:
                    hits = _apply_masks(hits)
                hits.sort()
                found = per_topic[t_index]
                last_group = cover_start = cover_end = -1
                for start, neg_end, g_index, label in hits:
                    end = -neg_end
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
        return score, group_points, near_points, self._missing(topic, found)

    def score(self, title: str, text: str) -> list[TopicScore]:
        """One `TopicScore` per topic, in configuration order."""
        results = []
        display = self._display
        for topic, found, empty, rules in zip(
            self._topics, self._collect(title, text), self._empty, self._near
        ):
            if not found:
                results.append(empty)
                continue
            # The same sums in the same order as `_score_topic`.
            weights, saturation, title_weight = topic.weights, topic.saturation, topic.title_weight
            last = len(saturation) - 1
            score = 0.0
            terms: dict[str, None] = {}
            for g_index, (in_title, in_text) in found.items():
                weight = weights[g_index]
                points = 0.0
                if in_title:
                    points = weight * title_weight
                if in_text:
                    count = len(in_text)
                    points += weight * saturation[count if count < last else last]
                score += points
                if weight > 0:
                    for _, _, label in in_title:
                        terms[display[label]] = None
                    for _, _, label in in_text:
                        terms[display[label]] = None
            for first_group, second_group, within, bonus in rules:
                first = found.get(first_group)
                if first is None:
                    continue
                second = found.get(second_group)
                if second is None:
                    continue
                if (first[0] and second[0]) or _close(first[1], second[1], within):
                    score += bonus
            missing: tuple[str, ...] = ()
            if topic.require:
                missing = self._missing(topic, found)
            results.append(
                TopicScore(topic.name, round(score, 4), topic.threshold, tuple(terms), missing)
            )
        return results

    @staticmethod
    def _missing(topic: _Topic, found: dict[int, Any]) -> tuple[str, ...]:
        """The requirements of `topic` that no group found meets."""
        missing = []
        for groups, name in zip(topic.require, topic.require_names, strict=True):
            for g_index in groups:
                if g_index in found:
                    break
            else:
                missing.append(name)
        return tuple(missing)

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
    """Drop the hits of one topic that lie inside one of its `ignore:` phrases, and the
    phrases."""
    masks = [(s, -e) for s, e, g, _ in hits if g == _MASK]
    if not masks:
        return hits
    return [
        hit
        for hit in hits
        if hit[2] != _MASK and not any(s <= hit[0] and -hit[1] <= e for s, e in masks)
    ]


def _close(first: list[_Span], second: list[_Span], within: int) -> bool:
    """True when a span of `first` and one of `second` (both in text order) are at most
    `within` characters apart."""
    if not first or not second:
        return False
    last_first, last_second = len(first) - 1, len(second) - 1
    i = j = 0
    a_start, a_end, _ = first[0]
    b_start, b_end, _ = second[0]
    while True:
        # max(a_start, b_start) - min(a_end, b_end)
        gap = (a_start if a_start > b_start else b_start) - (a_end if a_end < b_end else b_end)
        if gap <= within:
            return True
        if a_end < b_end:
            if i == last_first:
                return False
            i += 1
            a_start, a_end, _ = first[i]
        else:
            if j == last_second:
                return False
            j += 1
            b_start, b_end, _ = second[j]
