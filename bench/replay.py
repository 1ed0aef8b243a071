"""`python -m bench replay`: learning from votes, replayed on labelled stories as a stream.

The labelled stories (`../shared/eval/dev.jsonl` by default; stories marked unsure left out)
arrive in the order they were published, undated ones first. Each story is scored before
anything is learned from it (progressive validation): a topic it passes is an alert. The
label of an alert arrives as a vote, for the topics the alert carried, as a 👍 or 👎 under it
does; with `--flags`, that share of the stories that alerted nobody also arrives labelled for
every topic (a reader pointing at a missed story). Every `--every` votes the model is trained
again on all the votes so far (`newswatch.alerts.match.model.fit`, as `newswatch train` does)
and scores the stories that follow, blended at `--blend`.

Per topic the table gives precision and recall of the alerts sent over the whole stream,
by the rules alone and with learning, and over the stories that arrived after the 100th,
300th and 1,000th vote ("—" when the stream ends before). The rules were written while reading
these stories, so they are at their best here: what learning adds on unseen stories is larger
(see docs/benchmarks.md).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from bench.harness import ROOT, markdown

CHECKPOINTS = (0, 100, 300, 1000)
DEFAULT_LABELS = ROOT.parent / "shared" / "eval" / "dev.jsonl"


def stream(path: Path) -> list[dict[str, Any]]:
    """The labelled stories, undated first, then in publication order."""
    from datetime import UTC, datetime

    from newswatch.alerts.match.evaluation import published_at

    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if not r.get("unsure")]
    earliest = datetime.min.replace(tzinfo=UTC)
    return sorted(rows, key=lambda r: published_at(r) or earliest)  # stable: undated keep their order


def replay(rows: list[dict[str, Any]], topics: dict, *, blend: float, every: int, flags: float,
           seed: int) -> tuple[dict[str, list[tuple[int, bool, bool, bool]]], int, int]:
    """Per topic, per story: (votes before it, gold, alerted by rules, alerted with learning);
    and how many votes and retrainings the stream gave."""
    from newswatch.alerts.match.blended import BlendedMatcher
    from newswatch.alerts.match.matcher import Matcher
    from newswatch.alerts.match.model import fit

    rules = Matcher(topics)
    names = rules.topics
    matcher = BlendedMatcher(rules)
    rng = random.Random(seed)
    learned: list[dict[str, Any]] = []
    outcomes: dict[str, list[tuple[int, bool, bool, bool]]] = {t: [] for t in names}
    votes = trained_at = retrained = 0
    for row in rows:
        title, text = row.get("title") or "", row.get("text") or ""
        by_rules = {s.topic: s.passed for s in rules.score(title, text)}
        learning = {s.topic: s.passed for s in matcher.score(title, text)}
        for topic in names:
            if row.get(topic) in (0, 1):
                outcomes[topic].append((votes, bool(row[topic]), by_rules[topic], learning[topic]))
        alerted = [t for t in names if learning[t] and row.get(t) in (0, 1)]
        if alerted:
            learned.append({"title": title, "text": text, **{t: row[t] for t in alerted}})
            votes += 1
        elif flags and rng.random() < flags:
            learned.append({"title": title, "text": text, **{t: row[t] for t in names if row.get(t) in (0, 1)}})
            votes += 1
        if votes - trained_at >= every:
            model, _ = fit(learned, rules, blend=blend)
            matcher = BlendedMatcher(rules, model if model.topics else None, blend)
            trained_at, retrained = votes, retrained + 1
    return outcomes, votes, retrained


def _figures(outcomes: list[tuple[int, bool, bool, bool]], after: int, learning: bool) -> str:
    picked = [(gold, alert_l if learning else alert_r) for seen, gold, alert_r, alert_l in outcomes if seen >= after]
    if not picked:
        return "—"
    tp = sum(gold and alert for gold, alert in picked)
    alerts = sum(alert for _, alert in picked)
    positives = sum(gold for gold, _ in picked)
    precision = f"{tp / alerts:.3f}" if alerts else "—"
    recall = f"{tp / positives:.3f}" if positives else "—"
    return f"{precision} / {recall}"


def main(args) -> int:
    from newswatch.alerts.config import load_config

    path = Path(args.labels)
    if not path.is_file():
        print(f"no labelled stories at {path}: give --labels FILE")
        return 2
    topics = load_config(args.config).topics
    rows = stream(path)
    text = (f"### Replay: {len(rows):,} labelled stories of {path.name} in publication order, "
            f"blend {args.blend:g}, retrained every {args.every} votes\n\n"
            "precision / recall of the alerts sent; `after N` counts the stories that arrived after the N-th vote\n")
    for flags in args.flags:
        started = time.perf_counter()
        outcomes, votes, retrained = replay(rows, topics, blend=args.blend, every=args.every, flags=flags,
                                            seed=args.seed)
        table = []
        for topic, items in outcomes.items():
            for learning in (False, True):
                table.append([topic, "rules + votes" if learning else "rules alone",
                              *(_figures(items, after, learning) for after in CHECKPOINTS)])
        text += (f"\n#### {flags:.0%} of the stories that alerted nobody flagged: {votes:,} votes, "
                 f"{retrained} retrainings, {time.perf_counter() - started:.0f} s\n\n"
                 + markdown(["topic", "scoring", "whole stream", *(f"after {n:,}" for n in CHECKPOINTS[1:])],
                            table) + "\n")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "replay.md").write_text(text)
    print(text)
    return 0
