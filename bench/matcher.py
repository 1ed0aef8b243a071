"""`python -m bench matcher`: matcher stories/s on one core, from `bench.matcher_bench`.

The process is pinned to one CPU; stories and topics are those of `bench.matcher_bench`
(2,000-character stories, English, Korean and mixed; the shipped topics, then the shipped
topics plus 500 generated terms). `python -m bench.matcher_bench` prints the same rates
next to a per-keyword regex baseline.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.harness import ROOT, markdown


def main(args) -> int:
    from newswatch.alerts.match.matcher import Matcher
    from bench.matcher_bench import (
        STORY_CHARS,
        extra_topic,
        load_topics,
        make_stories,
        rate,
        real_stories,
        repeated,
    )

    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        pinned = f"pinned to CPU {cpu}"
    except (AttributeError, OSError):
        pinned = "not pinned"
    shipped = load_topics(ROOT / "config" / "newswatch.yaml")
    rows = []
    for label, topics in (("shipped topics", shipped), ("shipped + 500 terms", {**shipped, "generated": extra_topic(500)})):
        matcher = Matcher(topics)
        for mix, share in (("English", 0.0), ("Korean", 1.0), ("mixed 80/20", 0.2)):
            stories = make_stories(args.stories, share, seed=args.seed)
            rows.append([label, mix, f"{rate(matcher.score, stories, args.rounds):,.0f}"])
    text = (f"### Matcher: stories of {STORY_CHARS:,} characters per CPU second, one core ({pinned}), "
            f"best of {args.rounds} passes over {args.stories:,}\n\n"
            + markdown(["topics", "stories", "stories/s"], rows) + "\n")
    real = real_stories()
    if real:
        matcher = Matcher(shipped)
        real_rows = [
            [label, f"{len(stories):,}",
             f"{sum(len(t) + len(x) for t, x in stories) / len(stories):,.0f}",
             f"{rate(matcher.score, repeated(stories), args.rounds):,.0f}"]
            for label, stories in real
        ]
        text += ("\n### Matcher: real stories from ../shared, shipped topics\n\n"
                 + markdown(["stories", "count", "characters/story", "stories/s"], real_rows) + "\n")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "matcher.md").write_text(text)
    print(text)
    return 0
