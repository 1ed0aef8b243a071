"""The matcher: scores a story's title and text against every configured topic.

Pure: no I/O, no clock, no globals. A `Matcher` is compiled once from the validated topics
(see `newswatch.alerts.match.topics` for the syntax and the scoring rules) and then only reads.

All literal terms of all topics go into two Aho-Corasick automata (ahocorasick_rs, compiled
DFAs) that each read a text once, so the cost of a story hardly depends on the number of terms.
`re:` terms are searched separately, one regular expression each, and only in texts that
contain a piece of text every match needs (the view automaton looks for that piece too).

  - Terms in Latin-1 script (English, French, German ...): the automaton reads a one-byte-per-
    character *view* of the text: spaces as they are, letters and digits of the terms as they
    are, other letters and digits as a filler byte, and every other character (punctuation,
    Korean, Chinese ...) as one mark byte; the view is framed by spaces. A term that must stand
    as a whole word is looked for with a space or the mark on each side, so every hit the
    automaton reports in an ASCII text is on word boundaries already. A term holding
    punctuation ("u.s.") is compared with the text itself; in other texts, a neighbour beyond
    Latin-1 (a letter of another script may glue to the term) is checked in the text.
    ASCII text that normalising would change only in case and in reading hyphens, tabs and
    line breaks as spaces (most English stories) is not normalised at all: its view is made
    from the text as it is, which gives the same view.
  - Other terms (Korean, Chinese, Japanese, other scripts): the automaton reads the text itself,
    and each hit's neighbours are checked against the term's script (`word:` terms).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, NamedTuple

import ahocorasick_rs

from newswatch.alerts.match.topics import (
    LATIN,
    Term,
    TopicConfig,
    fold_text,
    normalize,
    parse_term,
    script,
    unify_characters,
)

__all__ = ["TITLE_CHARS", "Matcher", "TopicScore"]

_TITLE, _TEXT = 0, 1
_SEPARATOR = "\n"
_WHERE = ("title", "text")
_MASK = -1  # the group of a topic's `ignore:` terms, below every other

# What a hit counts for: (topic, group, label, the label as `TopicScore.terms` shows it or
# None), in group order, `ignore:` terms (_MASK) first.
_Target = tuple[int, int, str, str | None]
_Targets = tuple[_Target, ...]
# pattern -> (left, right) boundaries -> the targets it counts for
_Table = dict[str, dict[tuple[int, int], list[_Target]]]
_Regexes = list[tuple[_Target, re.Pattern[str]]]
# A near rule, looked up by its first group: (rule index, second group, within, bonus).
_NearRule = tuple[int, int, int, float]
# A hit while collecting: (start, -end, targets); sorting puts the hits in text order, the
# longest first among those starting together.
_Hit = tuple[int, int, _Targets]
# A counted hit of one group: (start, end, label).
_Span = tuple[int, int, str]
# What counts for one topic: (topic index, group -> (title spans, text spans), the terms to name
# (those of groups that add to the score, title first, in the order they occur)).
_Found = tuple[int, dict[int, tuple[list[_Span], list[_Span]]], dict[str, None]]
# What each group and each near rule of a topic added to its score: ([(group, points)],
# [(near rule, bonus)]).
_Parts = tuple[list[tuple[int, float]], list[tuple[int, float]]]
_TOPIC_INDEX = itemgetter(0)
_END = itemgetter(1)


_EVERY = object()  # the groups an ignored term covers: all of them


class TopicScore(NamedTuple):
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
    groups: tuple[_Group, ...]
    require: tuple[tuple[frozenset[int], str], ...]  # (groups, e.g. "summit or talks")
    near: tuple[_Near, ...]
    text_chars: int  # how much of the text counts (0: all)
    title_points: tuple[float, ...]  # per group: weight × title_weight
    # per group, per number of hits in the text (the last for that many or more):
    # weight × _saturated(n, decay)
    text_points: tuple[tuple[float, ...], ...]


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


# Finds every two spaces in a row (three spaces are two pairs). With one key the automaton
# looks for it with SIMD instructions, in a tenth of the time `b"  " in text` takes in text
# full of single spaces.
_RUN_OF_SPACES = ahocorasick_rs.BytesAhoCorasick([b"  "])


def _ascii_folding() -> tuple[Any, bytes | None]:
    """`fold_text` for ASCII text (often English once `unify_characters` has read its curly
    quotes and dashes as ASCII), with the table it translates bytes by, giving the same result
    in a fraction of the time. The shortcut is checked against `normalize` on every ASCII
    character and left out (`fold_text` itself, and no table) if the two ever disagree. In the
    table, a control character that is not a space is a zero byte: such text takes the general
    rules."""
    table = bytearray(range(256))
    for code in range(ord("A"), ord("Z") + 1):
        table[code] = code + 32
    table[ord("-")] = ord(" ")
    for code in [*range(32), 127]:
        table[code] = ord(" ") if chr(code) in "\t\n\r" else 0
    fold = bytes(table)

    def folded(text: str) -> str:
        folded = text.encode("ascii").translate(fold)
        if b"\x00" in folded:  # control characters: the general rules apply
            return fold_text(text)
        runs = _RUN_OF_SPACES.find_matches_as_indexes(folded, overlapping=True)
        if runs:  # drop the first space of every pair: single spaces are left
            pieces, kept = [], 0
            for _, start, _ in runs:
                pieces.append(folded[kept:start])
                kept = start + 1
            pieces.append(folded[kept:])
            folded = b"".join(pieces)
        return folded.strip(b" ").decode("ascii")

    probes = [chr(code) for code in range(128)]
    probes += [f" A{c}b-{c}\t-C{c}{c} " for c in probes] + ["", " ", "  - -\r\n", "A  B"]
    probes += ["Kim's Summit - Trump-Kim", "Kim  Jong-un\t"]
    if all(folded(probe) == normalize(probe) for probe in probes):
        return folded, fold
    return fold_text, None


_fold_ascii, _ASCII_FOLD = _ascii_folding()


def _folded(text: str) -> str:
    """`fold_text`: the second half of `normalize`, for text `unify_characters` has read."""
    return _fold_ascii(text) if text.isascii() else fold_text(text)


def _glued(char: str, need: int) -> bool:
    """True when `char`, next to a hit, makes it part of a longer word of script `need`."""
    if not char.isalnum():
        return False
    if need == LATIN:
        return char < "\u1100"
    return char.isdigit() or script(char) == need  # a `word:` term: digits glue too (20日)


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


# What a view holds for a space, for any other character that is not a letter or digit (and
# for `?`, which stands for every character beyond Latin-1), and for a letter or digit that no
# term holds. The automaton's search looks for rare bytes of its keys first, and must not take
# the commonest bytes of a view for such.
_SPACE, _MARK, _FILLER = b" ", b".", b"\x01"
# A view is made as a bytearray: `bytearray.translate` does a third less work per byte than
# `bytes.translate` (which also tracks whether anything changed).
_VIEW_START = bytearray(_SPACE)
# Above this many keys the view automaton is a compact NFA (about 1.5 times slower) instead of
# a DFA: a DFA takes about 1.25 KB per key (25 MB for 20,000), the NFA a fifth of that. The
# shipped topics make about 1,500 keys.
_DFA_KEYS = 8_000
_NEVER_IN_VIEW = (b"\x02\x02", b"\x03\x03", b"\x04\x04")
# A view made from ASCII text as it is (see `Matcher._scan_ascii`) holds this byte for a
# control character: such text must be normalised first.
_CONTROL = b"\x05"

# One way a key counts: what to add to where the automaton found it to get the term's start
# and end, the pattern itself when the text must hold exactly it there (else None), the script
# the character before and after must not glue to (0: any), and what it counts for.
_Entry = tuple[int, int, str | None, int, int, _Targets]
# A key's hits that need no check: (shift_start, shift_end, targets).
_Plain = tuple[int, int, _Targets]


def _automaton(keys: list[Any], kind: Any = ahocorasick_rs.BytesAhoCorasick) -> Any:
    """A DFA of `keys` (bytes, or str for `ahocorasick_rs.AhoCorasick`), or a compact NFA
    when there are too many for a DFA (the library's own choice is an NFA, twice as slow)."""
    if len(keys) <= _DFA_KEYS:
        implementation = ahocorasick_rs.Implementation.DFA
    else:
        implementation = ahocorasick_rs.Implementation.ContiguousNFA
    return kind(keys, implementation=implementation)


def _viewable(pattern: str, sides: list[tuple[int, int]]) -> bool:
    """True when the view automaton can look for `pattern`: Latin-1 characters (no `?`, which
    stands for every other character in a view), at least one letter or digit, and English
    word boundaries."""
    return (
        max(pattern) < "\u0100"
        and "?" not in pattern
        and any(c.isalnum() for c in pattern)
        and all(need in (0, LATIN) for side in sides for need in side)
    )


def _compiled_topic(name: str, config: TopicConfig) -> _Topic:
    """A topic as the matcher scores it: groups, requirements and near rules by index, and
    the points of each group in a title and for each number of hits in a text."""
    group_names = list(config.groups)
    return _Topic(
        name=name,
        threshold=config.threshold,
        text_chars=config.text_chars,
        groups=tuple(_Group(g, config.groups[g].weight) for g in group_names),
        require=tuple(
            (frozenset(group_names.index(g) for g in req), " or ".join(req))
            for req in config.required_groups()
        ),
        near=tuple(
            _Near(
                group_names.index(rule.groups[0]),
                group_names.index(rule.groups[1]),
                rule.within,
                rule.bonus,
            )
            for rule in config.near
        ),
        title_points=tuple(config.groups[g].weight * config.title_weight for g in group_names),
        text_points=tuple(
            tuple(
                config.groups[g].weight * _saturated(n, config.repeat_decay)
                for n in range(_SATURATION_TABLE)
            )
            for g in group_names
        ),
    )


def _near_by_first_group(topic: _Topic) -> dict[int, list[_NearRule]]:
    """A topic's near rules by their first group."""
    near_from: dict[int, list[_NearRule]] = {}
    for r_index, rule in enumerate(topic.near):
        near_from.setdefault(rule.first, []).append((r_index, rule.second, rule.within, rule.bonus))
    return near_from


def _term_targets(t_index: int, config: TopicConfig) -> Iterator[tuple[Term, _Target]]:
    """Each term of a topic with what its hits count for: the groups' terms, then the
    `ignore:` phrases."""
    for g_index, group in enumerate(config.groups.values()):
        # Terms of groups that add to the score are named in `TopicScore.terms`.
        named = group.weight > 0
        for term in group.parsed():
            yield term, (t_index, g_index, term.label, display_term(term.label) if named else None)
    for phrase in config.ignore:
        yield parse_term(phrase), (t_index, _MASK, phrase, None)


def _term_table(topics: Mapping[str, TopicConfig]) -> tuple[_Table, _Regexes]:
    """Every literal pattern of the topics with what its hits count for, by the boundaries
    its neighbours must keep; and the regular expressions with theirs."""
    table: _Table = {}
    regexes: _Regexes = []
    for t_index, config in enumerate(topics.values()):
        for term, target in _term_targets(t_index, config):
            if term.regex is not None:
                regexes.append((target, term.regex))
                continue
            for pattern in term.patterns:
                sides = _boundaries(term, pattern)
                targets = table.setdefault(pattern, {}).setdefault(sides, [])
                if not any(t[:2] == target[:2] for t in targets):
                    targets.append(target)
    return table, regexes


class Matcher:
    """Scores stories against topics; build once, call `score` for every story."""

    def __init__(self, topics: Mapping[str, TopicConfig]) -> None:
        if not topics:
            raise ValueError("at least one topic is needed")
        # How much of a text counts. Topics that read different lengths are matched by one
        # matcher per length (each with the topic indexes it stands for); this one only scores.
        lengths = [config.text_chars for config in topics.values()]
        self._text_chars = lengths[0]
        self._parts: list[tuple[Matcher, list[int]]] = []
        if len(set(lengths)) > 1:
            names = list(topics)
            for length in sorted(set(lengths)):
                indexes = [i for i, n in enumerate(lengths) if n == length]
                self._parts.append((Matcher({names[i]: topics[names[i]] for i in indexes}), indexes))
        else:
            self._build_scanners(*_term_table(topics))
        self._topics = [_compiled_topic(name, config) for name, config in topics.items()]
        # Per topic, the near rules by their first group, so that only the rules of groups
        # found are looked at.
        self._near_from = [_near_by_first_group(t) for t in self._topics]
        self._empty = [
            TopicScore(t.name, 0.0, t.threshold, (), tuple(name for _, name in t.require))
            for t in self._topics
        ]

    @property
    def topics(self) -> list[str]:
        return [t.name for t in self._topics]

    # -- scanning ---------------------------------------------------------------------------

    def _build_scanners(
        self, table: _Table, regexes: _Regexes
    ) -> None:
        """The automata and regular expressions that find the hits of `table`'s patterns
        ((left, right) boundaries -> targets) and of `regexes`."""
        viewable = {p for p, sides in table.items() if _viewable(p, list(sides))}
        required = [(target, regex, _required_text(regex)) for target, regex in regexes]
        gates = self._build_view(viewable, table, {piece for _, _, piece in required})
        text_keys = {p: sides for p, sides in table.items() if p not in viewable}
        self._text = _automaton(list(text_keys), ahocorasick_rs.AhoCorasick) if text_keys else None
        self._text_entries = [
            _entries({(0, 0, None, left, right): targets for (left, right), targets in s.items()})
            for s in text_keys.values()
        ]
        self._text_unchecked = _plain_ways(self._text_entries, with_boundaries=False)
        # An ASCII text holds no hit of that automaton when each of its keys has a character
        # beyond ASCII.
        self._text_ascii = any(p.isascii() for p in text_keys)
        # The table that makes the view of ASCII text as it is (see `_scan_ascii`): lower case,
        # hyphens, tabs and line breaks read as `normalize` reads them. Not when ASCII text
        # must be read by the text automaton too, which needs it normalised.
        self._ascii_view_table: bytes | None = None
        if self._view is not None and _ASCII_FOLD is not None and not self._text_ascii:
            self._ascii_view_table = bytes(
                _CONTROL[0] if folded == 0 else self._view_table[folded] for folded in _ASCII_FOLD
            )
        # (targets, regex, a piece of text every match holds, the view key that finds it)
        self._regexes = [
            ((target,), regex, piece, gates.get(piece)) for target, regex, piece in required
        ]
        # Expressions searched whatever the view automaton finds.
        self._ungated = any(gate is None for *_, gate in self._regexes)

    def _build_view(
        self,
        viewable: set[str],
        table: _Table,
        pieces: set[str | None],
    ) -> dict[str | None, int]:
        """The view automaton, its keys' entries and the table that makes a text's view. Also
        a key for each piece of text that a regular expression's matches hold (where a view
        can show it): the expression is searched only when the automaton finds its piece.
        Returns the pieces' keys."""
        self._view: ahocorasick_rs.BytesAhoCorasick | None = None
        self._view_entries: list[tuple[_Entry, ...]] = []
        self._view_plain: list[_Plain | None] = []
        self._view_unchecked: list[_Plain | None] = []
        if not viewable:
            return {}
        chars = {c for p in viewable for c in p if c.isalnum()}
        self._view_table = bytes(
            _SPACE[0]
            if c == " "
            else b
            if c in chars
            else _FILLER[0]
            if _glued(c, LATIN)
            else _MARK[0]
            for b, c in enumerate(map(chr, range(256)))
        )
        keys: dict[bytes, dict[tuple[int, int, str | None, int, int], list[_Target]]] = {}
        for pattern in sorted(viewable):
            body = pattern.encode("latin-1").translate(self._view_table)
            # Punctuation is all one byte in a view: a term with punctuation ("u.s.") is
            # checked against the text itself.
            exact = None if pattern.replace(" ", "").isalnum() else pattern
            for (left, right), targets in table[pattern].items():
                for before in (_SPACE, _MARK) if left else (b"",):
                    for after in (_SPACE, _MARK) if right else (b"",):
                        # The view has one space more in front.
                        shifts = (len(before) - 1, len(after) + 1, exact, left, right)
                        key = before + body + after
                        keys.setdefault(key, {}).setdefault(shifts, []).extend(targets)
        # A piece's key has no entries, so that its hits add nothing. Where a view cannot show
        # the piece, or a term has the same key, the text is searched for the piece instead.
        gates: dict[str | None, int] = {}
        for piece in sorted(p for p in pieces if p and max(p) < "\u0100" and "?" not in p):
            key = piece.encode("latin-1").translate(self._view_table)
            if key not in keys:
                gates[piece] = len(keys)
                keys[key] = {}
        # When its keys start with at most three different bytes, the automaton first looks
        # for those with memchr; in a view they are the space and the mark, the commonest
        # bytes, and that search made every scan 1.6 times slower. Keys that start with bytes
        # no view holds (control characters are marks there) turn it off; they never match.
        self._view = _automaton([*keys, *_NEVER_IN_VIEW])
        self._view_entries = [_entries(entries) for entries in keys.values()]
        # In an ASCII text, all there is to do for most keys' hits: the view checked their
        # boundaries.
        self._view_plain = _plain_ways(self._view_entries, with_boundaries=True)
        self._view_unchecked = _plain_ways(self._view_entries, with_boundaries=False)
        return gates

    def _scan(self, text: str, separator: int) -> list[_Hit]:
        """Every hit in normalised `text` that passes its boundary checks, in text order (the
        longest first among hits that start together). `text` is a title and a text joined
        at `separator`; no hit may span it."""
        hits: list[_Hit] = []
        add = hits.append
        gated: list[int] = []  # the keys of regular expressions' pieces found
        ascii_text = text.isascii()
        if self._view is not None:
            if ascii_text:
                raw = text.encode("ascii")
            else:
                raw = text.encode("latin-1", "replace")  # `?` for other characters
            view = (_VIEW_START + raw + _SPACE).translate(self._view_table)
            found = self._view.find_matches_as_indexes(view, overlapping=True)
            # In an ASCII text the view has checked every boundary already: most keys' hits
            # need nothing more.
            unchecked = self._view_plain if ascii_text else self._view_unchecked
            _check_hits(text, found, self._view_entries, unchecked, add, gated, True)
        if self._text is not None and (self._text_ascii or not ascii_text):
            found = self._text.find_matches_as_indexes(text, overlapping=True)
            if found:
                _check_hits(
                    text, found, self._text_entries, self._text_unchecked, add, gated, False
                )
        self._search_regexes(text, separator, gated, add)
        hits.sort()
        return hits

    def _scan_ascii(self, title: str, text: str) -> list[_Hit] | None:
        """`_scan` of an ASCII title and text that normalising would only lower in case, with
        hyphens, tabs and line breaks read as spaces: no control characters, no runs of
        spaces, nothing to strip (else None). The view is made from the text as it is, with
        the same positions as normalised text; that text is made only if a hit or a regular
        expression needs it."""
        table, automaton = self._ascii_view_table, self._view
        if table is None or automaton is None:
            return None
        separator = len(title)
        raw = (title + _SEPARATOR + text).encode("ascii")
        view = (_VIEW_START + raw + _SPACE).translate(table)
        view[separator + 1] = _MARK[0]  # between title and text, as in a normalised text's view
        space = _SPACE[0]
        if (
            (title and view[separator] == space)
            or (text and view[separator + 2] == space)
            or _CONTROL[0] in view
            or _RUN_OF_SPACES.find_matches_as_indexes(view)  # also a space to strip at either end
        ):
            return None
        found = automaton.find_matches_as_indexes(view, overlapping=True)
        hits: list[_Hit] = []
        add = hits.append
        gated: list[int] = []
        entries, plain = self._view_entries, self._view_plain
        deferred = _check_hits(None, found, entries, plain, add, gated, True)
        if deferred or gated or self._ungated:  # the normalised text is needed after all
            folded = raw.translate(_ASCII_FOLD).decode("ascii")
            normalized = folded[:separator] + _SEPARATOR + folded[separator + 1 :]
            _check_hits(normalized, deferred, entries, plain, add, gated, True)
            self._search_regexes(normalized, separator, gated, add)
        hits.sort()
        return hits

    def _search_regexes(self, text: str, separator: int, gated: list[int], add: Any) -> None:
        """Add the hits of the `re:` terms in `text`: of those whose piece the view automaton
        found (`gated`), and of the others whose piece `text` holds."""
        for targets, regex, piece, gate in self._regexes:
            if gate is not None:
                if gate not in gated:
                    continue
            elif piece is not None and piece not in text:
                continue
            for match in regex.finditer(text):
                start, end = match.span()
                if end > start and not start <= separator < end:
                    add((start, -end, targets))

    def _collect(self, title: str, text: str) -> list[_Found]:
        """What counts, for each topic with a counted hit, in configuration order. A hit
        inside a longer hit of its topic, or inside one of the topic's `ignore:` terms, does
        not count; nor does one that covers the same words as a counted hit of its group.
        Only the first `text_chars` characters of `text` are read (see `_lead`), and the first
        `TITLE_CHARS` of `title`."""
        if self._parts:
            collected: list[_Found] = []
            for part, indexes in self._parts:
                for t_index, found, terms in part._collect(title, text):
                    collected.append((indexes[t_index], found, terms))
            collected.sort(key=_TOPIC_INDEX)
            return collected
        if 0 < self._text_chars < len(text):
            text = _lead(text, self._text_chars)
        if len(title) > TITLE_CHARS:
            title = _lead(title, TITLE_CHARS)
        # Title and text are read as one, with a line break (which normalised text never
        # holds, and which no term matches) between them.
        if not title.isascii():
            title = unify_characters(title)
        if not text.isascii():
            text = unify_characters(text)
        hits = None
        if title.isascii() and text.isascii():
            hits = self._scan_ascii(title, text)
        if hits is None:
            title = _folded(title)
            hits = self._scan(title + _SEPARATOR + _folded(text), len(title))
        return _counted(hits, len(title), len(self._topics)) if hits else []

    # -- scoring ----------------------------------------------------------------------------

    def score(self, title: str, text: str) -> list[TopicScore]:
        """One `TopicScore` per topic, in configuration order."""
        results = self._empty.copy()
        for t_index, score in self._scores(self._collect(title, text)):
            results[t_index] = score
        return results

    def matched(self, title: str, text: str) -> list[TopicScore]:
        """The `TopicScore`s of the topics the story has hits for, in configuration order (the
        others score 0 and cannot pass): for callers with many topics."""
        return [score for _, score in self._scores(self._collect(title, text))]

    def _scores(
        self, collected: list[_Found], parts: dict[int, _Parts] | None = None
    ) -> Iterator[tuple[int, TopicScore]]:
        """(topic index, score) for each topic found: the one place where scores are summed.
        With `parts`, also what each group and each near rule added, by topic index (for
        `explain`)."""
        last = _SATURATION_TABLE - 1
        for t_index, found, terms in collected:
            topic = self._topics[t_index]
            title_points, text_points = topic.title_points, topic.text_points
            near_from = self._near_from[t_index]
            group_points = near_points = None
            if parts is not None:
                group_points, near_points = parts[t_index] = ([], [])
            score = 0.0
            for g_index, (in_title, in_text) in found.items():
                points = title_points[g_index] if in_title else 0.0
                if in_text:
                    count = len(in_text)
                    points += text_points[g_index][count if count < last else last]
                score += points
                if group_points is not None:
                    group_points.append((g_index, points))
                rules = near_from.get(g_index)
                if rules is not None:
                    for r_index, second_group, within, bonus in rules:
                        second = found.get(second_group)
                        if second is not None and (
                            (in_title and second[0]) or _close(in_text, second[1], within)
                        ):
                            score += bonus
                            if near_points is not None:
                                near_points.append((r_index, bonus))
            missing = self._missing(topic, found)
            # As TopicScore(...) would make it, without the Python-level `__new__` of a named
            # tuple (a frame per topic and story, ~1.5% of an English story).
            fields = (topic.name, _rounded(score), topic.threshold, tuple(terms), missing)
            yield t_index, tuple.__new__(TopicScore, fields)

    @staticmethod
    def _missing(topic: _Topic, found: dict[int, Any]) -> tuple[str, ...]:
        """The requirements of `topic` that no group found meets."""
        missing: tuple[str, ...] = ()
        for groups, name in topic.require:
            if groups.isdisjoint(found):
                missing += (name,)
        return missing

    def explain(self, title: str, text: str) -> dict[str, Any]:
        """Why each topic scored what it did.

        {"title": ..., "text_length": characters, "topics": {topic: {"score", "threshold",
            "passed", "contributions": [{"term", "group", "weight", "where", "count"}],
            "groups": {group: points}, "near": [{"groups": [a, b], "bonus"}],
            "missing": [requirement, ...], "text_chars": how many count (0: all)}}}
        """
        out: dict[str, Any] = {"title": title, "text_length": len(text), "topics": {}}
        collected = self._collect(title, text)
        parts: dict[int, _Parts] = {}
        scores = dict(self._scores(collected, parts))
        by_topic = {t_index: found for t_index, found, _ in collected}
        for t_index, topic in enumerate(self._topics):
            result = scores.get(t_index, self._empty[t_index])
            group_points, near_points = parts.get(t_index, ([], []))
            out["topics"][topic.name] = {
                "score": result.score,
                "threshold": topic.threshold,
                "passed": result.passed,
                "contributions": _contributions(topic, by_topic.get(t_index, {})),
                "groups": {topic.groups[g].name: round(p, 4) for g, p in group_points},
                "near": [
                    {
                        "groups": [
                            topic.groups[topic.near[r].first].name,
                            topic.groups[topic.near[r].second].name,
                        ],
                        "bonus": bonus,
                    }
                    for r, bonus in sorted(near_points)
                ],
                "missing": list(result.missing),
                "text_chars": topic.text_chars,
            }
        return out


def _contributions(
    topic: _Topic, found: dict[int, tuple[list[_Span], list[_Span]]]
) -> list[dict[str, Any]]:
    """What `explain` lists for a topic: each term counted, per group and place, with its
    count."""
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
    return contributions


def _counted(hits: list[_Hit], separator: int, topics: int) -> list[_Found]:
    """What the hits of a title and text (joined at `separator`) count for, per topic with a
    counted hit, in configuration order (see `Matcher._collect` for the rules). Topics without
    hits cost nothing but their share of three lists."""
    by_topic: list[_Found | None] = [None] * topics
    collected: list[_Found] = []
    # Per topic: the span of the last counted hit or ignored term, and the group counted there
    # (a list of them when several count for the same words; _EVERY for an ignored term).
    cover_start, cover_end = [-1] * topics, [-1] * topics
    cover_groups: list[Any] = [None] * topics
    for start, neg_end, targets in hits:
        end = -neg_end
        where = _TITLE if start < separator else _TEXT
        for t_index, g_index, label, shown in targets:
            if end <= cover_end[t_index]:
                if start != cover_start[t_index] or end != cover_end[t_index]:
                    continue  # inside a longer hit of this topic, or an ignored term
                seen = cover_groups[t_index]
                if (
                    seen is _EVERY
                    or seen == g_index
                    or (seen.__class__ is list and g_index in seen)
                ):
                    continue  # the same words again, through another term of the group
                if g_index < 0:  # an ignored term: nothing counts here
                    cover_groups[t_index] = _EVERY
                    continue
                if seen.__class__ is not list:
                    seen = [seen]
                cover_groups[t_index] = [*seen, g_index]
            else:
                cover_start[t_index] = start
                cover_end[t_index] = end
                if g_index < 0:
                    cover_groups[t_index] = _EVERY
                    continue
                cover_groups[t_index] = g_index
            entry = by_topic[t_index]
            if entry is None:
                entry = by_topic[t_index] = (t_index, {}, {})
                collected.append(entry)
            found = entry[1]
            slots = found.get(g_index)
            if slots is None:
                slots = found[g_index] = ([], [])
            slots[where].append((start, end, label))
            if shown is not None:
                entry[2][shown] = None
    collected.sort(key=_TOPIC_INDEX)
    return collected


def _entries(
    ways: dict[tuple[int, int, str | None, int, int], list[_Target]],
) -> tuple[_Entry, ...]:
    """A key's entries, from its (shifts, exact text, boundaries) -> targets."""
    return tuple(
        (*way, tuple(sorted(targets, key=itemgetter(1, 2)))) for way, targets in ways.items()
    )


def _plain_ways(
    entries: list[tuple[_Entry, ...]], with_boundaries: bool
) -> list[_Plain | None]:
    """Per key, (shift_start, shift_end, targets) when its hits need no check: the key counts
    one way only, with no text to compare and (unless `with_boundaries`) no boundary to check;
    else None."""
    return [
        (ways[0][0], ways[0][1], ways[0][5])
        if len(ways) == 1 and ways[0][2] is None and (with_boundaries or ways[0][3:5] == (0, 0))
        else None
        for ways in entries
    ]


def _check_hits(
    text: str | None,
    found: list[tuple[int, int, int]],
    entries: list[tuple[_Entry, ...]],
    unchecked: list[_Plain | None],
    add: Any,
    gated: list[int],
    in_view: bool,
) -> list[tuple[int, int, int]]:
    """Add the hits whose neighbours in `text` do not glue to them. In a view, only a
    character beyond Latin-1 (a `?` there) needs the check. `unchecked` holds, per key, the
    hit's shifts and targets when there is nothing to check. Keys without entries (pieces of
    regular expressions) go to `gated`. Without `text`, the hits that need it are returned,
    for a second call with the text."""
    size = len(text) if text is not None else 0
    deferred = []
    for key, found_start, found_end in found:
        way = unchecked[key]
        if way is not None:  # a substring term: nothing to check
            add((found_start + way[0], way[1] - found_end, way[2]))
            continue
        ways = entries[key]
        if not ways:
            gated.append(key)
            continue
        if text is None:
            deferred.append((key, found_start, found_end))
            continue
        for shift_start, shift_end, exact, left, right, targets in ways:
            start, end = found_start + shift_start, found_end - shift_end
            if exact is not None and text[start:end] != exact:
                continue
            if left and start > 0:
                before = text[start - 1]
                if (not in_view or before >= "\u0100") and _glued(before, left):
                    continue
            if right and end < size:
                after = text[end]
                if (not in_view or after >= "\u0100") and _glued(after, right):
                    continue
            add((start, -end, targets))
    return deferred


# How far back from the limit a text is cut at a space or line break rather than in a word.
_CUT_WITHIN = 100
# How much of a title is read: a headline is a line, and a page or feed that puts a whole
# document in its title (the store keeps 1,000 characters) must not cost what the document does.
TITLE_CHARS = 1_000


def _lead(text: str, chars: int) -> str:
    """The first `chars` characters of `text`, ending before the last space or line break
    within `_CUT_WITHIN` of the limit, so that no word is cut in two."""
    start = max(0, chars - _CUT_WITHIN)
    cut = max(text.rfind(" ", start, chars + 1), text.rfind("\n", start, chars + 1))
    return text[: cut if cut > 0 else chars]


def _rounded(score: float) -> float:
    """`round(score, 4)`, without its cost (~1.5% of an English story) where it changes
    nothing: a multiple of 1/16, as sums of weights like 0.5 or 2.5 are, has four decimals at
    most."""
    return score if (score * 16).is_integer() else round(score, 4)


def _close(first: list[_Span], second: list[_Span], within: int) -> bool:
    """True when a span of `first` and one of `second` are at most `within` characters apart.

    Both lists hold counted hits of one topic in text order, so their ends increase too (a hit
    that ends inside an earlier one does not count). For each span of the shorter list, the
    one span of the other to look at is the first that ends at or after its start - `within`:
    it is near when it starts at or before its end + `within`."""
    if len(first) > len(second):
        first, second = second, first
    size = len(second)
    for start, end, _ in first:
        i = bisect_left(second, start - within, key=_END)
        if i < size and second[i][0] <= end + within:
            return True
    return False
