"""Topics: what makes a story alert-worthy, as the editor writes it in the `topics:` section.

A topic is a small scoring model. Its terms sit in named *groups*; each group has a weight.
A story's score for the topic is the sum of what its groups contribute, plus proximity
bonuses. The story *passes* when the score reaches `threshold` and every `require:` group
occurs in it.

    topics:
      sanctions:
        description: Sanctions on North Korea, their enforcement and evasion.
        threshold: 4
        groups:
          sanction:
            weight: 3
            terms: [sanction*, embargo, 제재, 制裁]
          evasion:
            weight: 2.5
            terms: [ship-to-ship, illicit oil, Lazarus, 瀬取り]
          korea:
            weight: 1
            terms: [North Korea, DPRK, Pyongyang, 북한, 대북, 朝鲜, 北朝鮮]
          other-country:                 # a negative weight lowers the score
            weight: -2
            terms: [Russia*, Iran*]
        require: [korea]                 # a group name, or [a, b] for "a or b"
        near:
          - groups: [sanction, korea]
            within: 60                   # characters
            bonus: 2
        ignore: [조선일보]                # phrases whose words never count

Writing terms
  - Matching ignores case and Unicode width (NFKC): "DPRK", "dprk" and "ＤＰＲＫ" are one term.
  - English (and other Latin-script) terms match whole words: `summit` does not match
    "summitry", `Kim` does not match "Kimchi". Several words form a phrase. A hyphen (or a
    dash) reads as a space, in terms and in stories: `Kim Jong Un` covers "Kim Jong-un",
    `ship-to-ship` covers "ship to ship", `Trump-Kim` covers "Trump–Kim". Curly quotes read as
    straight ones: `Workers' Party` covers "Workers’ Party". Invisible characters inside
    words are ignored (soft hyphens, zero-width spaces and joiners, direction marks,
    variation selectors, fillers: every format character and default-ignorable code point);
    a braille blank (U+2800), which shows as a blank, reads as a space.
  - A trailing `*` matches any ending: `sanction*` covers sanction, sanctions, sanctioned.
    A leading `*` matches any beginning, both match anywhere: `*Kim Jong Il*` also finds the
    name in text whose spaces were lost ("ChairmanKim Jong Ilvisited").
  - Parentheses mark an optional part, `|` separates choices: `summit(s)` is summit and
    summits, `visit(s|ed|ing)` four words, `North Korea(n)` both forms. Optional parts
    multiply: a term may stand for at most 256 forms (`MAX_TERM_FORMS`).
  - Korean, Chinese and Japanese terms match anywhere, inside longer words too: `제재` matches
    "대북제재", `北朝鮮` matches "北朝鮮による".
  - `word:` makes a Korean, Chinese or Japanese term a whole word of its script:
    `word:北` matches 北 standing alone, as Korean headlines write North Korea, but not inside
    北京 or 東北 (nor in 20北, a digit is part of the word too); `word:북` matches
    "북, 미사일 발사" but not 강북. With a `*` at one end, only the other end must stand
    alone: `word:이 대통령*` (President Lee) matches "이 대통령은" but not "북한이 대통령 …".
  - `re:` starts a regular expression for the rare term the other forms cannot say:
    `re:\\bsix party\\b`. It sees the text as terms do: lower case, hyphens as spaces,
    single spaces. Each regular expression is one more pass over the story; prefer plain terms.
  - `ignore:` lists terms (same syntax) inside which nothing counts for this topic: the
    newspaper name 조선일보 is not 조선 (North Korea); `re:pyongyang, \\w+ \\d+ \\(kcna\\)`
    keeps a news agency's dateline from counting as a mention of Pyongyang.

How a story is scored
  - Each group counts its hits in the title and in the text. A hit inside a longer hit of the
    same topic does not count: the longer term wins ("정상회담" is not also "회담",
    "North Korea" is not also "Korea").
  - A group found in the title adds `weight × title_weight` (default 2) once.
  - Hits in the text saturate: the first adds `weight`, each further hit half the previous one,
    so repetition never adds more than `weight × 2` (set by `repeat_decay`, default 0.5).
  - A `near:` rule adds `bonus` once when hits of its two groups occur within `within`
    characters of each other in the text, or both in the title.
  - Negative weights work the same way and lower the score.
  - Only the first `text_chars` characters of the text count (default 2000, cut at a space;
    0 for all of it): a story's lead says what it is about, while the later paragraphs of a
    long article mention much else. Feeds that carry whole articles and `kind: site` sources
    would otherwise pass a topic on words scattered over pages.

Every mistake is an error when the configuration loads: an unknown key, a threshold that is
not above zero, a regular expression that does not compile or matches the empty string, a `*`
inside a term, a `require:` or `near:` naming a group that does not exist.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "MAX_TERM_FORMS",
    "NearRule",
    "Term",
    "TermGroup",
    "TooManyForms",
    "TopicConfig",
    "INVISIBLE_RANGES",
    "count_forms",
    "expand_optional",
    "fold_text",
    "is_cjk",
    "normalize",
    "parse_term",
    "script",
    "unify_characters",
]

_CJK_RANGES = (
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x2E80, 0x2FDF),  # CJK radicals
    (0x3000, 0x30FF),  # CJK punctuation, Hiragana, Katakana
    (0x3130, 0x318F),  # Hangul compatibility Jamo
    (0x31F0, 0x31FF),  # Katakana extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA960, 0xA97F),  # Hangul Jamo extended A
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width Katakana
    (0x20000, 0x2FA1F),  # CJK extensions B and later
)


def is_cjk(char: str) -> bool:
    """True for a Hangul, Han or Kana character: such text matches as substrings."""
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


LATIN, HANGUL, HAN = 1, 2, 3


def script(char: str) -> int:
    """The script class a boundary check compares: LATIN (any non-CJK letter or digit),
    HANGUL, HAN (Han and Kana together), or 0 for spaces and punctuation."""
    if not char.isalnum():
        return 0
    if char < "\u1100":
        return LATIN
    code = ord(char)
    if 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F:
        return HANGUL
    if is_cjk(char):
        return HAN
    return LATIN


_ASTRAL_OR_SURROGATE = re.compile("[\ud800-\udfff\U00010000-\U0010ffff]")

# Characters that are not seen, and that pages and feeds leave inside words (a soft hyphen in
# "Pyong\xadyang", a zero-width joiner or non-joiner, a direction mark, an invisible separator,
# a variation selector after a letter): every format character (category Cf) and every other
# default-ignorable code point (Unicode's DerivedCoreProperties.txt), as inclusive ranges. They
# are dropped, so that the words they sit in match. A test checks the table against the
# `unicodedata` of the running Python.
INVISIBLE_RANGES = (
    (0x00AD, 0x00AD),  # soft hyphen
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x0600, 0x0605), (0x061C, 0x061C), (0x06DD, 0x06DD), (0x070F, 0x070F),  # Arabic, Syriac
    (0x0890, 0x0891), (0x08E2, 0x08E2),
    (0x115F, 0x1160),  # Hangul choseong and jungseong fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian variation selectors and vowel separator
    (0x200B, 0x200F),  # zero-width space, non-joiner, joiner; left-to-right and right-to-left marks
    (0x202A, 0x202E),  # bidirectional embeddings and overrides
    (0x2060, 0x206F),  # word joiner, invisible operators and separator, isolates
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors (VS16 asks for an emoji's colour form)
    (0xFEFF, 0xFEFF),  # zero-width no-break space, byte-order mark
    (0xFFA0, 0xFFA0),  # half-width Hangul filler
    (0xFFF0, 0xFFFB),  # unassigned, interlinear annotation marks
    # beyond the Basic Multilingual Plane (`unify_characters` looks for these only in text
    # that has such characters)
    (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0x1D173, 0x1D17A),  # musical symbol formatting
    (0xE0000, 0xE0FFF),  # tags, variation selectors supplement, reserved
)


def _character_class(codes: list[int]) -> str:
    return "".join(re.escape(chr(code)) for code in codes)


# Typographic dashes and quotes, read as the ASCII characters writers and feeds use for them
# just as often: "Trump–Kim" is "Trump-Kim", "Workers’ Party" is "Workers' Party". The braille
# blank (U+2800), which shows as a blank and is used as one, reads as a space. One pass of a
# regular expression tells whether a text has anything to change (most have nothing); then the
# typographic characters are replaced, and text that is still not ASCII is searched for
# invisible ones (English with curly quotes needs no second search).
_TYPOGRAPHIC = {
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u02bc", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f", '"'),
}
_INVISIBLE_BMP = [
    code for low, high in INVISIBLE_RANGES if high < 0x10000 for code in range(low, high + 1)
]
_BLANKS = {"\u2800": " "}
_TO_DROP = re.compile(f"[{_character_class([*_INVISIBLE_BMP, *map(ord, _BLANKS)])}]")
# Every character `unify_characters` changes, looked for in one pass: most texts have none.
_TO_UNIFY = re.compile(
    f"[{_character_class(sorted({*map(ord, _TYPOGRAPHIC), *_INVISIBLE_BMP, *map(ord, _BLANKS)}))}]"
)
_ASTRAL_INVISIBLE = re.compile(
    "[" + "".join(f"{chr(low)}-{chr(high)}" for low, high in INVISIBLE_RANGES if low >= 0x10000) + "]"
)


def unify_characters(text: str) -> str:
    """The first half of `normalize`, for text that is not ASCII: NFKC, typographic dashes and
    quotes as ASCII, invisible characters dropped (`INVISIBLE_RANGES`), the braille blank as a
    space, and characters beyond the Basic Multilingual Plane (emoji) and lone surrogates as
    U+FFFD, so that every character is one UTF-16 unit and the text can be encoded. Often gives
    ASCII text (English with curly quotes), which holds no invisible character."""
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    if _TO_UNIFY.search(text) is None:  # most texts: nothing to read otherwise
        return text if text.isascii() else _one_unit_each(text)
    for char, plain in _TYPOGRAPHIC.items():  # str.replace: str.translate is far slower
        if char in text:
            text = text.replace(char, plain)
    if text.isascii():
        return text
    if _TO_DROP.search(text) is not None:
        text = _TO_DROP.sub(lambda blank: _BLANKS.get(blank[0], ""), text)
        # a mark that followed a dropped character may now compose with the letter before it
        if not unicodedata.is_normalized("NFKC", text):
            text = unicodedata.normalize("NFKC", text)
        if text.isascii():
            return text
    return _one_unit_each(text)


def _one_unit_each(text: str) -> str:
    """`text` without invisible characters beyond the Basic Multilingual Plane, and its other
    characters there (emoji) and lone surrogates as U+FFFD: one UTF-16 unit each."""
    try:
        wide = len(text.encode("utf-16-le")) != 2 * len(text)
    except UnicodeEncodeError:  # a lone surrogate, from bytes decoded with an escape
        wide = True
    if wide:
        text = _ASTRAL_OR_SURROGATE.sub("\ufffd", _ASTRAL_INVISIBLE.sub("", text))
    return text


def fold_text(text: str) -> str:
    """The second half of `normalize`: lower case, a hyphen read as a space, single spaces."""
    text = text.lower().replace("-", " ")
    if not text.isprintable():
        text = text.replace("\n", " ").replace("\t", " ").replace("\r", " ")
        if not text.isprintable():
            text = " ".join(text.split())
    while "  " in text:
        text = text.replace("  ", " ")
    return text.strip(" ")


def normalize(text: str) -> str:
    """The form both terms and stories are matched in: NFKC, typographic dashes and quotes as
    ASCII, no invisible characters, lower case, a hyphen read as a space, single spaces; emoji
    and lone surrogates as U+FFFD (see `unify_characters`)."""
    if not text:
        return ""
    if not text.isascii():
        text = unify_characters(text)
    return fold_text(text)


_OPTIONAL = re.compile(r"\(([^()]*)\)")

# The most forms one term may stand for. Each optional part multiplies them (ten parts of two
# choices are 3^10 = 59,049 forms), so the count is worked out before anything is expanded.
# The shipped topics' terms have at most five.
MAX_TERM_FORMS = 256


class TooManyForms(ValueError):
    """A term whose optional parts stand for more forms than allowed; names the term, the
    count and the limit."""

    def __init__(self, text: str, forms: int, limit: int) -> None:
        super().__init__(
            f"term {text!r} stands for {forms:,} forms (each (...) multiplies them); "
            f"at most {limit:,} are allowed"
        )
        self.forms = forms
        self.limit = limit


def count_forms(text: str) -> int:
    """How many forms `expand_optional` can give for `text`, without expanding it: the product,
    over every pair of parentheses, of its choices plus one (leaving it out). An upper bound
    (forms that come out equal are counted apart). Raise ValueError for unbalanced parentheses."""
    forms = 1
    choices: list[int] = []  # per open parenthesis, the choices seen so far
    for char in text:
        if char == "(":
            choices.append(1)
        elif char == "|" and choices:
            choices[-1] += 1
        elif char == ")":
            if not choices:
                raise ValueError(f"unbalanced parentheses in {text!r}")
            forms *= choices.pop() + 1
    if choices:
        raise ValueError(f"unbalanced parentheses in {text!r}")
    return forms


def expand_optional(text: str, limit: int = MAX_TERM_FORMS) -> list[str]:
    """`visit(s|ed)` -> ["visit", "visits", "visited"]; several optional parts multiply. Raise
    `TooManyForms` before expanding when `text` stands for more than `limit` forms."""
    forms = count_forms(text)
    if forms > limit:
        raise TooManyForms(text, forms, limit)
    out: dict[str, None] = {}
    _expand(text, out)
    return list(out)


def _expand(text: str, out: dict[str, None]) -> None:
    """Add the forms of `text` to `out` (in order, each once), innermost parentheses first."""
    match = _OPTIONAL.search(text)
    if match is None:
        out[text] = None
        return
    options = match.group(1).split("|")
    if any(not option.strip() for option in options):
        raise ValueError(f"empty alternative inside parentheses in {text!r}")
    head, tail = text[: match.start()], text[match.end() :]
    for option in ["", *options]:
        _expand(head + option + tail, out)


@dataclass(frozen=True)
class Term:
    """One term as written, compiled to the literal patterns the automaton looks for.

    kind: "word" (whole words), "prefix" (`term*`, or `word:` CJK `term*`: any ending),
    "suffix" (`*term`: any beginning), "anywhere" (`*term*`), "substr" (CJK, anywhere),
    "standalone" (a `word:` CJK term: not part of a longer word of its script), "regex" (a
    `re:` term; `regex` holds the pattern and `patterns` is empty).
    """

    label: str
    kind: Literal["word", "prefix", "suffix", "anywhere", "substr", "standalone", "regex"]
    patterns: tuple[str, ...]
    regex: re.Pattern[str] | None = None


def parse_term(raw: Any) -> Term:
    """Parse one written term; raise ValueError with a message an editor understands."""
    if not isinstance(raw, str):
        raise ValueError(f"a term must be text, got {raw!r}")
    label = raw.strip()
    if not label:
        raise ValueError("empty term")
    if label.startswith("re:"):
        return _regex_term(label)
    standalone = label.startswith("word:")
    body = label[5:].strip() if standalone else label
    if not body:
        raise ValueError("empty term after 'word:'")
    open_start, open_end = body.startswith("*"), body.endswith("*")
    core = body.strip("*").strip()
    if "*" in core:
        raise ValueError(f"term {label!r}: '*' goes only at the start or the end of a term")
    if "|" in _OPTIONAL.sub("", core):
        raise ValueError(f"term {label!r}: '|' separates choices inside parentheses only")
    if not core:
        raise ValueError(f"term {label!r} can match nothing at all")
    try:
        forms = [normalize(form) for form in expand_optional(core)]
    except TooManyForms as exc:
        raise TooManyForms(label, exc.forms, exc.limit) from None
    if any(not form for form in forms):
        raise ValueError(f"term {label!r} can match nothing at all")
    cjk = any(is_cjk(c) for c in normalize(core))
    kind = _term_kind(
        label, forms, cjk=cjk, standalone=standalone, open_ends=(open_start, open_end)
    )
    patterns = tuple(dict.fromkeys(form for form in forms if form))
    if not patterns:
        raise ValueError(f"term {label!r} has nothing to match")
    return Term(label=label, kind=kind, patterns=patterns)


def _regex_term(label: str) -> Term:
    """A `re:` term: its expression, compiled to ignore case, must not match empty text."""
    source = label[3:].strip()
    if not source:
        raise ValueError("empty regular expression after 're:'")
    try:
        compiled = re.compile(source, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"regular expression {source!r} does not compile: {exc}") from None
    if compiled.search("") is not None:
        raise ValueError(f"regular expression {source!r} matches the empty string")
    return Term(label=label, kind="regex", patterns=(), regex=compiled)


def _term_kind(
    label: str, forms: list[str], *, cjk: bool, standalone: bool, open_ends: tuple[bool, bool]
) -> Literal["word", "prefix", "suffix", "anywhere", "substr", "standalone"]:
    """How a literal term meets its neighbours, from its script, its `word:` and its `*`s;
    ValueError for the combinations that make no sense."""
    open_start, open_end = open_ends
    if standalone and not cjk:
        raise ValueError(f"term {label!r}: English terms are whole words already; drop the 'word:'")
    if not (open_start or open_end):
        return "standalone" if standalone else "substr" if cjk else "word"
    if cjk and not standalone:
        raise ValueError(
            f"term {label!r}: Korean, Chinese and Japanese terms already match inside "
            "longer words; drop the '*' (or write 'word:' before the term to make its "
            "other end stand alone)"
        )
    if standalone and open_start and open_end:
        raise ValueError(f"term {label!r}: with a '*' at both ends, 'word:' has no end to keep")
    if not cjk and any(len(form) < 3 for form in forms):
        raise ValueError(f"term {label!r}: a '*' term needs at least three letters")
    return "anywhere" if open_start and open_end else "prefix" if open_end else "suffix"


def _check_term(raw: str) -> str:
    parse_term(raw)
    return raw.strip()


TermText = Annotated[str, AfterValidator(_check_term)]


class TermGroup(BaseModel):
    """Terms that mean the same thing for the topic, with one weight (negative lowers)."""

    model_config = ConfigDict(extra="forbid")

    weight: float = 1.0
    terms: list[TermText] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _list_shorthand(cls, data: Any) -> Any:
        if isinstance(data, list):
            return {"terms": data}
        return data

    @field_validator("weight", mode="before")
    @classmethod
    def _weight_is_number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"weight must be a number, got {value!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("weight must be a finite number")
        return value

    @field_validator("terms")
    @classmethod
    def _no_duplicates(cls, terms: list[str]) -> list[str]:
        first: dict[str, int] = {}
        for index, term in enumerate(terms):
            if term in first:
                raise ValueError(f"{term!r} is listed twice (items {first[term]} and {index})")
            first[term] = index
        return terms

    def parsed(self) -> list[Term]:
        return [parse_term(raw) for raw in self.terms]


class NearRule(BaseModel):
    """A bonus when hits of two groups occur close together."""

    model_config = ConfigDict(extra="forbid")

    groups: tuple[str, str]
    within: int = Field(default=80, gt=0, le=10_000)
    bonus: float = Field(gt=0)


_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class TopicConfig(BaseModel):
    """One topic: a one-line description, term groups, a threshold and the rules around them."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(min_length=1)
    threshold: float = Field(gt=0)
    groups: dict[str, TermGroup] = Field(min_length=1)
    require: list[str | list[str]] = Field(default_factory=list)
    near: list[NearRule] = Field(default_factory=list)
    ignore: list[TermText] = Field(default_factory=list)
    title_weight: float = Field(default=2.0, ge=0, le=10)
    repeat_decay: float = Field(default=0.5, ge=0, lt=1)
    text_chars: int = Field(default=2000, ge=0, strict=True)  # 0: all of the text

    @field_validator("threshold", "title_weight", "repeat_decay", mode="before")
    @classmethod
    def _is_number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number, got {value!r}")
        return value

    @field_validator("groups")
    @classmethod
    def _group_names(cls, groups: dict[str, TermGroup]) -> dict[str, TermGroup]:
        for name in groups:
            if not _NAME.match(name):
                raise ValueError(
                    f"group name {name!r}: use lower-case letters, digits, '-' or '_'"
                )
        return groups

    @field_validator("require")
    @classmethod
    def _require_known(
        cls, require: list[str | list[str]], info: ValidationInfo
    ) -> list[str | list[str]]:
        groups: dict[str, TermGroup] = info.data.get("groups") or {}
        for index, entry in enumerate(require):
            names = [entry] if isinstance(entry, str) else entry
            if not names:
                raise ValueError(f"item {index}: empty list of groups")
            for name in names:
                if groups and name not in groups:
                    raise ValueError(
                        f"item {index}: no group named {name!r} (groups: {', '.join(groups)})"
                    )
                if groups and groups[name].weight < 0:
                    raise ValueError(f"item {index}: group {name!r} has a negative weight")
        return require

    @field_validator("near")
    @classmethod
    def _near_known(cls, near: list[NearRule], info: ValidationInfo) -> list[NearRule]:
        groups: dict[str, TermGroup] = info.data.get("groups") or {}
        for index, rule in enumerate(near):
            for name in rule.groups:
                if groups and name not in groups:
                    raise ValueError(
                        f"item {index}: no group named {name!r} (groups: {', '.join(groups)})"
                    )
        return near

    def required_groups(self) -> list[tuple[str, ...]]:
        """Each requirement as a tuple of group names, any one of which satisfies it."""
        return [(entry,) if isinstance(entry, str) else tuple(entry) for entry in self.require]
