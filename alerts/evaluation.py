"""Measuring the matcher on hand-labelled stories, and printing what it decided and why.

Labels are JSON Lines, one story per line:

    {"id": "...", "title": "...", "text": "...", "summit": 1, "sanctions": 0, "unsure": false}

A story needs `title` (and may have `text`); every topic of the matcher that has a 0/1 field
in the file is scored, topics without one are left out; stories marked `"unsure": true` are
skipped. Used by `newswatch eval` and `newswatch explain`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from alerts.format import plural
from alerts.matcher import Matcher

__all__ = [
    "LabelFileError",
    "evaluate",
    "format_eval_report",
    "format_explanation",
    "load_labels",
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
    counts = {t: {"tp": 0, "fp": 0, "fn": 0, "tn": 0} for t in matcher.topics}
    labelled = {t: False for t in matcher.topics}
    false_pos: dict[str, list[dict[str, Any]]] = {t: [] for t in matcher.topics}
    false_neg: dict[str, list[dict[str, Any]]] = {t: [] for t in matcher.topics}
    scored = skipped = 0
    for row in rows:
        if row.get("unsure"):
            skipped += 1
            continue
        scored += 1
        title = row.get("title") or ""
        text = row.get("text") or ""
        for result in matcher.score(title, text):
            gold = _label(row, result.topic)
            if gold is None:
                continue
            labelled[result.topic] = True
            guess = result.passed
            entry = {"id": row.get("id", ""), "title": title, "score": result.score}
            if guess and gold:
                counts[result.topic]["tp"] += 1
            elif guess:
                counts[result.topic]["fp"] += 1
                false_pos[result.topic].append(entry)
            elif gold:
                counts[result.topic]["fn"] += 1
                false_neg[result.topic].append({**entry, "missing": list(result.missing)})
            else:
                counts[result.topic]["tn"] += 1

    topics: dict[str, dict[str, Any]] = {}
    for topic, c in counts.items():
        if not labelled[topic]:
            continue
        tp, fp, fn = c["tp"], c["fp"], c["fn"]
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        topics[topic] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "positives": tp + fn,
        }
    return {
        "stories": scored,
        "skipped_unsure": skipped,
        "topics": topics,
        "false_positives": {t: false_pos[t] for t in topics},
        "false_negatives": {t: false_neg[t] for t in topics},
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
    """`Matcher.explain` as text: per topic the verdict, each term's share and what is missing."""
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
        if 0 < info.get("text_chars", 0) < explanation.get("text_length", 0):
            lines.append(
                f"    only the first {info['text_chars']:,} of the text's"
                f" {explanation['text_length']:,} characters count (text_chars)"
            )
    return "\n".join(lines)
