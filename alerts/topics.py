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
    straight ones: `Workers' Party` covers "Workers’ Party". Soft hyphens and zero-width
    spaces inside words are ignored.
  - A trailing `*` matches any ending: `sanction*` covers sanction, sanctions, sanctioned.
    A leading `*` matches any beginning, both match anywhere: `*Kim Jong Il*` also finds the
    name in text whose spaces were lost ("ChairmanKim Jong Ilvisited").
  - Parentheses mark an optional part, `|` separates choices: `summit(s)` is summit and
    summits, `visit(s|ed|ing)` four words, `North Korea(n)` both forms.
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
    "NearRule",
    "Term",
    "TermGroup",
    "TopicConfig",
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

# Typographic dashes and quotes, read as the ASCII characters writers and feeds use for them
# just as often: "Trump–Kim" is "Trump-Kim", "Workers’ Party" is "Workers' Party". Invisible
# characters that pages leave inside words (a soft hyphen in "Pyong\xadyang", a zero-width
# space, a byte-order mark) are dropped.
_TYPOGRAPHIC = {
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u02bc", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f", '"'),
    **dict.fromkeys("\u00ad\u200b\u2060\ufeff", ""),
}


def unify_characters(text: str) -> str:
    """The first half of `normalize`, for text that is not ASCII: NFKC, typographic dashes and
    quotes as ASCII, invisible characters dropped, and characters beyond the Basic Multilingual
    Plane (emoji) and lone surrogates as U+FFFD, so that every character is one UTF-16 unit and
    the text can be encoded. Often gives ASCII text (English with curly quotes)."""
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    for char, plain in _TYPOGRAPHIC.items():
        if char in text:
            text = text.replace(char, plain)
    if text.isascii():
        return text
    try:
        wide = len(text.encode("utf-16-le")) != 2 * len(text)
    except UnicodeEncodeError:  # a lone surrogate, from bytes decoded with an escape
        wide = True
    if wide:
        text = _ASTRAL_OR_SURROGATE.sub("\ufffd", text)
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


def expand_optional(text: str) -> list[str]:
    """`visit(s|ed)` -> ["visit", "visits", "visited"]; several optional parts multiply."""
    match = _OPTIONAL.search(text)
    if match is None:
        if "(" in text or ")" in text:
            raise ValueError(f"unbalanced parentheses in {text!r}")
        return [text]
    options = match.group(1).split("|")
    if any(not option.strip() for option in options):
        raise ValueError(f"empty alternative inside parentheses in {text!r}")
    head, tail = text[: match.start()], text[match.end() :]
    out: list[str] = []
    for option in ["", *options]:
        for form in expand_optional(head + option + tail):
            if form not in out:
                out.append(form)
    return out


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
    forms = [normalize(form) for form in expand_optional(core)]
    if any(not form for form in forms):
        raise ValueError(f"term {label!r} can match nothing at all")
    cjk = any(is_cjk(c) for c in normalize(core))
    kind: Literal["word", "prefix", "suffix", "anywhere", "substr", "standalone"]
    if standalone and not cjk:
        raise ValueError(f"term {label!r}: English terms are whole words already; drop the 'word:'")
    if open_start or open_end:
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
        kind = "anywhere" if open_start and open_end else "prefix" if open_end else "suffix"
    elif standalone:
        kind = "standalone"
    else:
        kind = "substr" if cjk else "word"

    patterns = tuple(dict.fromkeys(form for form in forms if form))
    if not patterns:
        raise ValueError(f"term {label!r} has nothing to match")
    return Term(label=label, kind=kind, patterns=patterns)


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
