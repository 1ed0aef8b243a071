"""Real story texts for the benches, and the copies outlets make of them.

The texts come from `../shared` (read at run time, never copied into the project): the
labelled stories of `eval/dev.jsonl` (1,016, a third of them about the Koreas, so many match
the shipped topics), and for larger pools the corpus datasets (KCNA archive, NYT April 2018,
world headlines). `syndicate()` spreads them over a cycle's new feed items the way wire
stories spread: about half the events in one outlet, the others in 2-6, each outlet's copy
its own link, retitled or lightly edited.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEV = SHARED / "eval" / "dev.jsonl"
DATASETS = SHARED / "corpus" / "datasets"
SINGLE_OUTLET = 0.5  # share of events carried by one outlet only
MAX_OUTLETS = 6  # the others are carried by 2..MAX_OUTLETS outlets


def labelled_texts(path: Path = DEV) -> list[tuple[str, str]]:
    """(title, text) of every labelled story with a title."""
    if not path.is_file():
        raise SystemExit(f"{path} is needed (the labelled stories' texts)")
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    return [(r["title"], r["text"]) for r in rows if r.get("title")]


def distinct_texts() -> list[tuple[str, str]]:
    """Every distinct real story of the corpus: the labelled ones, KCNA articles, NYT April 2018
    headlines with their snippets, and world headlines (title only), shuffled once."""
    import csv

    texts = labelled_texts()
    kcna = DATASETS / "kcna-headlines-archive-20231224-20241110-stiles.json"
    if kcna.is_file():
        texts += [(r["headline"], r.get("story_text") or "") for r in json.loads(kcna.read_text("utf-8"))]
    nyt = DATASETS / "nytimes-articles-april2018.csv"
    if nyt.is_file():
        with nyt.open(encoding="utf-8", newline="") as f:
            texts += [(r["headline"], r["snippet"]) for r in csv.DictReader(f)]
    world = DATASETS / "world-headlines-2021-11-to-2022-07-fwd.json"
    if world.is_file():
        texts += [(r["title"], "") for r in json.loads(world.read_text("utf-8"))]
    unique = list(dict.fromkeys((t.strip(), x) for t, x in texts if t.strip()))
    random.Random(1).shuffle(unique)
    return unique


def copy_of(title: str, text: str, rnd: random.Random, outlet: int) -> tuple[str, str]:
    """Another outlet's copy: the same, retitled with its name, or lightly edited."""
    kind = rnd.random()
    if kind < 0.4:
        return title, text
    if kind < 0.7:
        return f"{title} - Outlet {outlet}", text
    return title, " ".join(w for w in text.split() if rnd.random() > 0.12)


def outlets(rnd: random.Random) -> int:
    """How many outlets carry one event."""
    return 1 if rnd.random() < SINGLE_OUTLET else rnd.randint(2, MAX_OUTLETS)


def syndicate(texts: list[tuple[str, str]], outlet_of_slot: list[int], first_event: int,
              rnd: random.Random) -> list[tuple[int, str, str]]:
    """(event, title, text) for each of a cycle's new items, whose outlets (feeds) are
    `outlet_of_slot`: events are taken in turn from `texts` starting at `first_event` (a cycle
    carries distinct events); an event's copies land in distinct slots, shuffled over the
    feeds, the first as the original and the rest as `copy_of` it."""
    order = list(range(len(outlet_of_slot)))
    rnd.shuffle(order)
    out: list[tuple[int, str, str]] = [(0, "", "")] * len(order)
    event, at = first_event, 0
    while at < len(order):
        title, text = texts[event % len(texts)]
        copies = order[at : at + outlets(rnd)]
        for n, slot in enumerate(copies):
            out[slot] = (event, title, text) if n == 0 else (event, *copy_of(title, text, rnd, outlet_of_slot[slot]))
        at += len(copies)
        event += 1
    return out
