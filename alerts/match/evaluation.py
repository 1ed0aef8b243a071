"""Measuring the matcher on hand-labelled stories, and printing what it decided and why.

Labels are JSON Lines, one story per line:

    {"id": "...", "title": "...", "text": "...", "summit": 1, "sanctions": 0, "unsure": false}

A story needs `title` (and may have `text`); every topic of the matcher that has a 0/1 field
in the file is scored, topics without one are left out; stories marked `"unsure": true` are
skipped. Used by `newswatch eval` and `newswatch explain`.

`cross_validate` scores the topics part by part, beside the keyword rules a desk would write
first (`KEYWORD_BASELINES`): per language (the `lang` field, or the script of the text when it
is empty or "mul"), per held-out source (`origin`, grouped by outlet or dataset) and per time
fold (`published`, oldest first). Rules learn nothing from the stories, so a held-out part
measures only what it should when the rules were written without looking at its stories: keep
a part aside, write rules while reading the others' mistakes, then read its figure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from newswatch.crawler.parse.dates import parse_date

from newswatch.alerts.deliver.format import plural
from newswatch.alerts.match.matcher import Matcher, TopicScore

__all__ = [
    "CV_SPLITS",
    "KEYWORD_BASELINES",
    "LabelFileError",
    "cross_validate",
    "evaluate",
    "format_cv_report",
    "format_eval_report",
    "format_explanation",
    "load_labels",
    "origin_group",
    "published_at",
    "story_language",
]


class LabelFileError(ValueError):
    """A labels file that cannot be read; the message names the file and line."""


def load_labels(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSON Lines labels file (UTF-8, a byte-order mark allowed); blank lines are
    allowed, anything else must be an object."""
    path = Path(path)
    rows: list[dict[str, Any]] = []
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LabelFileError(f"{path}: cannot open: {exc.strerror or exc}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.splitlines(), start=1):
        where = f"{path}:{number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LabelFileError(
                f"{where}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
            ) from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LabelFileError(f"{where}: not valid JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise LabelFileError(f"{where}: expected a JSON object")
        title = row.get("title")
        if not isinstance(title, str):
            raise LabelFileError(f"{where}: 'title' must be a string")
        if not isinstance(row.get("text", ""), (str, type(None))):
            raise LabelFileError(f"{where}: 'text' must be a string")
        row.setdefault("_where", where)
        rows.append(row)
    return rows


def _label(row: Mapping[str, Any], topic: str) -> int | None:
    value = row.get(topic)
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if value in (0, 1):
        return int(value)
    where = row.get("_where") or f"id {row.get('id', '?')}"
    raise LabelFileError(f"{where}: {topic!r} must be 0 or 1, got {value!r}")


def evaluate(matcher: Matcher, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Precision, recall and F1 per topic, with the stories the matcher got wrong.

    Returns {"stories": n_scored, "skipped_unsure": n,
             "topics": {topic: {"precision", "recall", "f1", "tp", "fp", "fn", "positives"}},
             "false_positives": {topic: [{"id", "title", "score"}]},
             "false_negatives": {topic: [{"id", "title", "score", "missing"}]}}
    Topics that no story labels are left out.
    """
    tally = _Tally(matcher.topics)
    for row in rows:
        if row.get("unsure"):
            tally.skipped += 1
            continue
        title = row.get("title") or ""
        tally.add(row, title, matcher.score(title, row.get("text") or ""))
    topics = {
        topic: _figures(counts["tp"], counts["fp"], counts["fn"])
        for topic, counts in tally.counts.items()
        if topic in tally.labelled
    }
    return {
        "stories": tally.scored,
        "skipped_unsure": tally.skipped,
        "topics": topics,
        "false_positives": {t: tally.false_positives[t] for t in topics},
        "false_negatives": {t: tally.false_negatives[t] for t in topics},
    }


class _Tally:
    """What `evaluate` counts: per topic the true and false positives and negatives, which
    topics some story labels, and the stories the matcher got wrong."""

    def __init__(self, topics: list[str]) -> None:
        self.scored = self.skipped = 0
        self.counts = {t: {"tp": 0, "fp": 0, "fn": 0} for t in topics}
        self.labelled: set[str] = set()
        self.false_positives: dict[str, list[dict[str, Any]]] = {t: [] for t in topics}
        self.false_negatives: dict[str, list[dict[str, Any]]] = {t: [] for t in topics}

    def add(self, row: Mapping[str, Any], title: str, results: Iterable[TopicScore]) -> None:
        """Count one labelled story against the matcher's verdicts on it."""
        self.scored += 1
        for result in results:
            gold = _label(row, result.topic)
            if gold is None:
                continue
            self.labelled.add(result.topic)
            counts = self.counts[result.topic]
            entry = {"id": row.get("id", ""), "title": title, "score": result.score}
            if result.passed and gold:
                counts["tp"] += 1
            elif result.passed:
                counts["fp"] += 1
                self.false_positives[result.topic].append(entry)
            elif gold:
                counts["fn"] += 1
                missing = list(result.missing)
                self.false_negatives[result.topic].append({**entry, "missing": missing})


def _figures(tp: int, fp: int, fn: int) -> dict[str, Any]:
    """A topic's line in `evaluate`: precision, recall and F1 (four decimals) and the counts."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "positives": tp + fn,
    }


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_eval_report(result: Mapping[str, Any], *, examples: int = 20) -> str:
    """A table of precision/recall/F1 per topic, then up to `examples` titles of the mistakes
    per topic and kind (0: the table only)."""
    lines = [
        f"{plural(result.get('stories', 0), 'story')} scored, "
        f"{result.get('skipped_unsure', 0)} marked unsure skipped",
        "",
        f"{'topic':<16}{'precision':>10}{'recall':>8}{'F1':>8}{'TP':>6}{'FP':>6}{'FN':>6}",
    ]
    for topic, m in result["topics"].items():
        lines.append(
            f"{topic:<16}{m['precision']:>10.3f}{m['recall']:>8.3f}{m['f1']:>8.3f}"
            f"{m['tp']:>6}{m['fp']:>6}{m['fn']:>6}"
        )
    for kind, label in (("false_positives", "alerted, should not"), ("false_negatives", "missed")):
        for topic, items in result.get(kind, {}).items():
            if not items or examples <= 0:
                continue
            lines.append("")
            lines.append(f"{topic}: {label} ({len(items)})")
            for item in items[:examples]:
                extra = f"  [needs {', '.join(item['missing'])}]" if item.get("missing") else ""
                lines.append(f"  {item['score']:6.2f}  {_shorten(item['title'], 90)}{extra}")
            if len(items) > examples:
                lines.append(f"  … {len(items) - examples} more")
    return "\n".join(lines)


def format_explanation(explanation: Mapping[str, Any]) -> str:
    """`Matcher.explain` as text: per topic the verdict, each term's share, what is missing and,
    when a trained model takes part, its probability and what it adds to the score."""
    lines = []
    if explanation.get("title"):
        lines.append(_shorten(explanation["title"], 100))
    for topic, info in explanation["topics"].items():
        verdict = "PASS" if info["passed"] else "no"
        lines.append(
            f"{topic}: {verdict}  score {info['score']:.2f} / threshold {info['threshold']:g}"
        )
        for c in info["contributions"]:
            lines.append(
                f"    {c['group']:<16} {c['term']:<24} {c['where']:<5} x{c['count']:<3}"
                f" weight {c['weight']:g}"
            )
        for group, points in info.get("groups", {}).items():
            lines.append(f"    = {group}: {points:+.2f}")
        for near in info.get("near", []):
            lines.append(f"    + near {' & '.join(near['groups'])}: {near['bonus']:+.2f}")
        if info.get("missing"):
            lines.append(f"    missing required: {', '.join(info['missing'])}")
        if info.get("model"):
            m = info["model"]
            lines.append(
                f"    model: probability {m['probability']:.2f}, blend {m['blend']:g}: rules"
                f" {m['rules']:.2f} x {1 - m['blend']:g} + {m['points']:.2f} = {info['score']:.2f}"
            )
        if 0 < info.get("text_chars", 0) < explanation.get("text_length", 0):
            lines.append(
                f"    only the first {info['text_chars']:,} of the text's"
                f" {explanation['text_length']:,} characters count (text_chars)"
            )
    return "\n".join(lines)


# -- keyword baselines, as a desk would first write them ------------------------------------

_KOREA = [
    "korea", "dprk", "pyongyang", "seoul", "kim jong", "한국", "북한", "한미", "남북", "北",
    "韓国", "韩国", "朝鲜", "北朝鮮", "김정은", "金正恩", "李", "윤석열", "이재명", "한중", "한일",
]  # fmt: skip
_SUMMIT_WORDS = ["summit", "정상회담", "정상 회담", "首脳会談", "首脑会谈", "峰会"]
_MEETING_WORDS = ["summit", "talks", "meet", "정상회담", "회담", "会談", "会谈"]
_SANCTION_WORDS = ["sanction", "제재", "制裁"]
_NK_TERMS = [
    "north korea", "n. korea", "dprk", "pyongyang", "kim jong", "kcna", "북한", "北", "김정은",
    "북측", "北朝鮮", "朝鲜", "金正恩", "평양", "북 ", "북,", "北韓", "平壌", "平壤", "조선중앙",
    "노동신문", "inter-korean", "two koreas", "the north", "김여정", "김정일", "kim il sung",
    "juche", "wpk", "workers' party of korea", "남북", "대북", "탈북", "통일부",
]  # fmt: skip


def _has(row: Mapping[str, Any], words: list[str]) -> bool:
    text = f"{row.get('title') or ''} {row.get('text') or ''}".lower()
    return any(w in text for w in words)


# A keyword rule: does a labelled story pass it?
_Rule = Callable[[Mapping[str, Any]], bool]

KEYWORD_BASELINES: dict[str, list[tuple[str, _Rule]]] = {
    "summit": [
        ("contains summit", lambda r: _has(r, _SUMMIT_WORDS)),
        ("summit/talks/meet AND Korea", lambda r: _has(r, _MEETING_WORDS) and _has(r, _KOREA)),
    ],
    "sanctions": [
        ("contains sanction/제재/制裁", lambda r: _has(r, _SANCTION_WORDS)),
        ("... AND Korea", lambda r: _has(r, _SANCTION_WORDS) and _has(r, _KOREA)),
    ],
    "north-korea": [("NK term list", lambda r: _has(r, _NK_TERMS))],
}
"""Per topic, (name, rule) pairs: substring tests on title and text, lower-cased."""


# -- the parts a labelled set is cut into ----------------------------------------------------

_LANGUAGE_NAMES = {"en": "en", "ko": "ko", "ja": "ja", "zh": "zh", "pt": "pt", "es": "es"}


def story_language(row: Mapping[str, Any]) -> str:
    """The story's language: the `lang` field's primary tag ("en-US" is "en"); when it is
    empty or "mul", the script of title and text decides: Hangul ko, Kana ja, other Han zh,
    Latin letters with Portuguese or Spanish marks pt or es, other Latin en, else "other"."""
    tag = str(row.get("lang") or "").strip().lower().replace("_", "-").partition("-")[0]
    if tag and tag != "mul":
        return _LANGUAGE_NAMES.get(tag, tag)
    text = f"{row.get('title') or ''} {row.get('text') or ''}"
    if re.search("[\uac00-\ud7af]", text):
        return "ko"
    if re.search("[\u3040-\u30ff]", text):
        return "ja"
    if re.search("[\u4e00-\u9fff]", text):
        return "zh"
    if re.search("[ãõç]", text.lower()):
        return "pt"
    if re.search("[ñ¿¡]", text.lower()):
        return "es"
    if re.search("[a-zA-Z]", text):
        return "en"
    return "other"


def origin_group(origin: str) -> str:
    """The outlet or dataset an `origin` names, so that a whole source is held out at once:
    for `feeds/…` the outlet, the file name's first word ("feeds/chosun-politics-knewsrss-
    20220723.xml" is "feeds/chosun"); otherwise the file name up to the first word that starts
    with a digit or is a hash ("datasets/world-headlines-2021-11-to-2022-07-fwd.json" is
    "datasets/world-headlines", "extra/baram-001_00158.txt" is "extra/baram")."""
    folder, _, name = origin.strip().rpartition("/")
    stem = re.sub(r"\.(xml|json|jsonl|csv|txt|rss|atom)$", "", name, flags=re.I)
    words = stem.split("-")
    if folder.endswith("feeds"):
        kept = words[:1]
    else:
        kept = []
        for word in words:
            if not word or word[0].isdigit() or "_" in word or re.fullmatch(r"[0-9a-f]{8,}", word):
                break
            kept.append(word)
    group = "-".join(kept) or stem
    return f"{folder}/{group}" if folder else group


_EPOCH = re.compile(r"\d{9,13}")
_LONG_DATES = ("%B %d, %Y %I:%M %p", "%B %d, %Y", "%b %d, %Y %I:%M %p", "%b %d, %Y")


def published_at(row: Mapping[str, Any]) -> datetime | None:
    """The story's `published` field as an aware datetime (ISO 8601, RFC 822, "June 27, 2022
    8:17 AM", seconds or milliseconds since 1970); None when missing or unreadable."""
    raw = str(row.get("published") or "").strip()
    if not raw:
        return None
    if _EPOCH.fullmatch(raw):
        seconds = int(raw) / (1000 if len(raw) > 11 else 1)
        return datetime.fromtimestamp(seconds, UTC)
    for form in _LONG_DATES:
        try:
            return datetime.strptime(raw, form).replace(tzinfo=UTC)
        except ValueError:
            continue
    return parse_date(raw)


# -- cross-validation ------------------------------------------------------------------------

CV_SPLITS = ("origin", "time")


def _counts(pairs: Iterable[tuple[bool, bool]]) -> dict[str, Any]:
    tp = fp = fn = n = 0
    for guess, gold in pairs:
        n += 1
        tp += guess and gold
        fp += guess and not gold
        fn += gold and not guess
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {
        "n": n, "positives": tp + fn, "tp": tp, "fp": fp, "fn": fn,
        "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
    }  # fmt: skip


def cross_validate(
    matcher: Matcher,
    rows: Iterable[Mapping[str, Any]],
    *,
    split: str = "origin",
    folds: int = 4,
    baselines: Mapping[str, list[tuple[str, _Rule]]] | None = None,
) -> dict[str, Any]:
    """Precision, recall and F1 per topic on the whole set, on each language, and on each
    held-out part: each origin group (`split="origin"`) or each of `folds` time slices of
    equal size, oldest first (`split="time"`; undated stories form a part of their own).
    Each part also carries the F1 of each keyword baseline of the topic.

    Returns {"split", "stories", "skipped_unsure", "topics": [...], "baselines": {topic:
    [names]}, "parts": [{"kind": "all"|"language"|"origin"|"time", "name", "first", "last",
    "topics": {topic: {"n", "positives", "tp", "fp", "fn", "precision", "recall", "f1",
    "baselines": [f1, ...]}}}]}  ("first"/"last": the time slice's dates, ISO, or None).
    """
    if split not in CV_SPLITS:
        raise ValueError(f"split must be one of {', '.join(CV_SPLITS)}, not {split!r}")
    if folds < 2:
        raise ValueError("folds must be at least 2")
    baselines = KEYWORD_BASELINES if baselines is None else baselines
    scored, skipped, labelled = _judged(matcher, rows, baselines)
    topics = [t for t in matcher.topics if t in labelled]

    def part(kind: str, name: str, items: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return _part(kind, name, items, topics, baselines, **extra)

    parts = [part("all", "all", scored)]
    for language, items in _largest_first(scored, lambda item: story_language(item["row"])):
        parts.append(part("language", language, items))
    if split == "origin":
        for name, items in _largest_first(scored, lambda item: _origin(item["row"])):
            parts.append(part("origin", name, items))
    else:
        parts += _time_parts(scored, folds, part)
    return {
        "split": split,
        "stories": len(scored),
        "skipped_unsure": skipped,
        "topics": topics,
        "baselines": {t: [name for name, _ in baselines.get(t, [])] for t in topics},
        "parts": parts,
    }


def _judged(
    matcher: Matcher,
    rows: Iterable[Mapping[str, Any]],
    baselines: Mapping[str, list[tuple[str, _Rule]]],
) -> tuple[list[dict[str, Any]], int, set[str]]:
    """(each labelled story with the matcher's verdicts, its labels and the baselines'
    verdicts; how many stories were marked unsure; the topics some story labels)."""
    scored: list[dict[str, Any]] = []
    skipped = 0
    labelled: set[str] = set()
    for row in rows:
        if row.get("unsure"):
            skipped += 1
            continue
        title, text = row.get("title") or "", row.get("text") or ""
        verdicts = {s.topic: s.passed for s in matcher.score(title, text)}
        gold = {}
        for topic in matcher.topics:
            value = _label(row, topic)
            if value is not None:
                gold[topic] = bool(value)
                labelled.add(topic)
        scored.append({
            "row": row, "verdicts": verdicts, "gold": gold,
            "baselines": {t: [rule(row) for _, rule in baselines.get(t, [])] for t in gold},
        })  # fmt: skip
    return scored, skipped, labelled


def _part(
    kind: str,
    name: str,
    items: list[dict[str, Any]],
    topics: list[str],
    baselines: Mapping[str, list[tuple[str, _Rule]]],
    **extra: Any,
) -> dict[str, Any]:
    """One part of `cross_validate`: the figures of each topic on the stories that label it,
    and the F1 of each of its baselines."""
    out: dict[str, Any] = {"kind": kind, "name": name, "first": None, "last": None, **extra}
    out["topics"] = {}
    for topic in topics:
        have = [i for i in items if topic in i["gold"]]
        m = _counts((i["verdicts"][topic], i["gold"][topic]) for i in have)
        m["baselines"] = [
            _counts((i["baselines"][topic][k], i["gold"][topic]) for i in have)["f1"]
            for k in range(len(baselines.get(topic, [])))
        ]
        out["topics"][topic] = m
    return out


def _origin(row: Mapping[str, Any]) -> str:
    return origin_group(str(row.get("origin") or ""))


def _largest_first(
    items: list[dict[str, Any]], key: Callable[[dict[str, Any]], str]
) -> list[tuple[str, list[dict[str, Any]]]]:
    """`items` grouped by `key`, the largest group first (then by name)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return [(name, groups[name]) for name in sorted(groups, key=lambda k: (-len(groups[k]), k))]


def _time_parts(
    scored: list[dict[str, Any]], folds: int, part: Callable[..., dict[str, Any]]
) -> list[dict[str, Any]]:
    """`folds` time slices of equal size, oldest first, then the undated stories."""
    dated = [(published_at(i["row"]), i) for i in scored]
    ordered = sorted(((d, i) for d, i in dated if d is not None), key=lambda p: p[0])
    undated = [i for d, i in dated if d is None]
    size = len(ordered) / folds
    parts = []
    for k in range(folds):
        chunk = ordered[round(k * size) : round((k + 1) * size)]
        if not chunk:
            continue
        parts.append(part(
            "time", f"{k + 1} of {folds}", [i for _, i in chunk],
            first=chunk[0][0].date().isoformat(), last=chunk[-1][0].date().isoformat(),
        ))  # fmt: skip
    if undated:
        parts.append(part("time", "undated", undated))
    return parts


def format_cv_report(result: Mapping[str, Any], *, min_positives: int = 0) -> str:
    """`cross_validate` as one table per topic: P, R, F1, stories and positives of each part,
    then the keyword baselines' F1. Held-out parts with fewer than `min_positives` positives
    are folded into one line ("smaller parts"), so that a table stays readable."""
    lines = [
        f"{plural(result['stories'], 'story')} scored, {result['skipped_unsure']} marked unsure"
        f" skipped; held out by {result['split']}"
    ]
    for topic in result["topics"]:
        names = result["baselines"].get(topic, [])
        lines.append("")
        lines.append(f"{topic}  (baselines: " + "; ".join(
            f"B{k + 1} = {name}" for k, name in enumerate(names)) + ")")
        head = f"  {'part':<40}{'n':>5}{'pos':>5}{'P':>7}{'R':>7}{'F1':>7}"
        head += "".join(f"{'B' + str(k + 1):>7}" for k in range(len(names)))
        lines.append(head)
        small: list[Mapping[str, Any]] = []
        for p in result["parts"]:
            m = p["topics"][topic]
            if p["kind"] in ("origin", "time") and m["positives"] < min_positives:
                small.append(m)
                continue
            label = {"all": "all", "language": f"lang {p['name']}"}.get(p["kind"], p["name"])
            if p["kind"] == "time" and p.get("first"):
                label = f"time {p['name']}: {p['first']}..{p['last']}"
            elif p["kind"] == "time":
                label = f"time {p['name']}"
            lines.append(_cv_line(label, m))
        if small:
            merged = {k: sum(m[k] for m in small) for k in ("n", "positives", "tp", "fp", "fn")}
            tp, fp, fn = merged["tp"], merged["fp"], merged["fn"]
            merged["precision"] = tp / (tp + fp) if tp + fp else 0.0
            merged["recall"] = tp / (tp + fn) if tp + fn else 0.0
            merged["f1"] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
            merged["baselines"] = []
            lines.append(_cv_line(f"{len(small)} smaller parts, pooled", merged))
    return "\n".join(lines)


def _cv_line(label: str, m: Mapping[str, Any]) -> str:
    def figure(value: float, defined: bool) -> str:
        return f"{value:>7.3f}" if defined else f"{'-':>7}"

    has_pos = m["positives"] > 0
    line = f"  {_shorten(label, 39):<40}{m['n']:>5}{m['positives']:>5}"
    line += figure(m["precision"], m["tp"] + m["fp"] > 0)
    line += figure(m["recall"], has_pos)
    line += figure(m["f1"], has_pos or m["fp"] > 0)
    line += "".join(figure(b, has_pos) for b in m.get("baselines", []))
    return line
