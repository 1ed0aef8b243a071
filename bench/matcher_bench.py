"""Matcher throughput: stories per second on one core, against a per-keyword regex loop.

    python -m bench.matcher_bench [--stories 2000] [--config config/newswatch.yaml]
    python -m bench.matcher_bench --against OTHER/alerts/match/matcher.py   # another revision's
    python -m bench.matcher_bench --instructions [--against OTHER/alerts/match/matcher.py]

`--against` loads the matcher module of another revision (for instance from
`git worktree add /tmp/old REV`) and times it against this one on the same stories and topics,
alternating the two in one process, best of `--rounds`. That module imports this revision's
`newswatch.alerts.match.topics` (normalisation and term syntax); `--instructions` runs each revision whole.

`--instructions` counts the CPU instructions per story instead of timing (valgrind's
callgrind, which must be installed): the count is the same from run to run whatever else the
machine does, so a change of a few per cent shows. Each story set is written to a file and
scored by a child process, under callgrind, that imports the revision's own `alerts` package
(this one, or the one `--against` names); the shipped config of this revision is used for
both. Slow: about a minute per set and revision.

Both contenders see the same generated 2,000-character stories (English and Korean, with
topic terms sprinkled in) and the same terms: the shipped topics, then the shipped topics plus
a topic of 500 extra generated terms. The baseline is what a simple filter does: one compiled
regular expression per keyword (word boundaries for English), run one after the other.
Both include normalising the text (NFKC, lower case).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import yaml

from newswatch.alerts.match.matcher import Matcher
from newswatch.alerts.match.topics import TopicConfig, normalize, parse_term

ROOT = Path(__file__).resolve().parents[1]
STORY_CHARS = 2000

_ENGLISH = (
    "the government said on tuesday that officials would meet again next week to discuss "
    "economic cooperation trade energy security and the regional situation while analysts "
    "warned that markets remain volatile after the central bank raised interest rates and "
    "ministers from several countries arrived for a conference on climate technology and "
    "supply chains according to people familiar with the matter who asked not to be named"
).split()
_KOREAN = (
    "정부는 이날 관계 부처 회의를 열고 경제 협력과 공급망 안정 방안을 논의했다고 밝혔다 "
    "전문가들은 금리 인상 이후 시장 변동성이 커질 수 있다고 지적했으며 여야는 예산안 처리를 "
    "두고 협상을 이어갔다 기자 서울 연합뉴스 관계자는 추가 발표가 있을 것이라고 말했다"
).split()
_SPRINKLE_EN = [
    "summit", "North Korea", "sanctions", "Kim Jong Un", "talks", "Pyongyang", "Xi Jinping",
    "Security Council", "ship-to-ship", "visit", "president", "Seoul",
]
_SPRINKLE_KO = ["정상회담", "북한", "대북제재", "김정은", "안보리", "회담", "대통령", "시진핑"]


def make_stories(count: int, korean_share: float, seed: int = 1) -> list[tuple[str, str]]:
    """`count` stories, `korean_share` of them in Korean, with about 2% topic terms."""
    rnd = random.Random(seed)
    stories = []
    for _ in range(count):
        korean = rnd.random() < korean_share
        vocabulary, sprinkle = (_KOREAN, _SPRINKLE_KO) if korean else (_ENGLISH, _SPRINKLE_EN)
        words: list[str] = []
        length = 0
        while length < STORY_CHARS:
            word = rnd.choice(sprinkle) if rnd.random() < 0.02 else rnd.choice(vocabulary)
            words.append(word)
            length += len(word) + 1
        text = " ".join(words)[:STORY_CHARS]
        title = " ".join(rnd.choice(vocabulary) for _ in range(8)).capitalize()
        stories.append((title, text))
    return stories


def extra_topic(terms: int, seed: int = 2) -> TopicConfig:
    """A topic of `terms` made-up English words, phrases and Korean words."""
    rnd = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    syllables = "가나다라마바사아자차카타파하거너더러머버서어저처"
    made: list[str] = []
    while len(made) < terms:
        kind = rnd.random()
        if kind < 0.5:
            term = "".join(rnd.choice(letters) for _ in range(rnd.randint(5, 10)))
        elif kind < 0.7:
            term = " ".join(
                "".join(rnd.choice(letters) for _ in range(rnd.randint(3, 7))) for _ in range(2)
            )
        else:
            term = "".join(rnd.choice(syllables) for _ in range(rnd.randint(2, 4)))
        if term not in made:
            made.append(term)
    return TopicConfig.model_validate(
        {
            "description": "generated terms for the benchmark",
            "threshold": 1,
            "groups": {"generated": {"weight": 1, "terms": made}},
        }
    )


def load_topics(path: Path) -> dict[str, TopicConfig]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))["topics"]
    return {name: TopicConfig.model_validate(body) for name, body in raw.items()}


class RegexBaseline:
    """One regular expression per literal keyword, searched one after the other, in as much
    of the text as the topics read (`text_chars`)."""

    def __init__(self, topics: Mapping[str, TopicConfig]) -> None:
        lengths = {config.text_chars for config in topics.values()}
        self.text_chars = 0 if 0 in lengths else max(lengths)
        self.patterns: list[re.Pattern[str]] = []
        for config in topics.values():
            for group in config.groups.values():
                for raw in group.terms:
                    term = parse_term(raw)
                    if term.regex is not None:
                        self.patterns.append(term.regex)
                        continue
                    for pattern in term.patterns:
                        body = re.escape(pattern)
                        if term.kind == "word":
                            body = rf"\b{body}\b"
                        elif term.kind == "prefix":
                            body = rf"\b{body}"
                        self.patterns.append(re.compile(body))

    def score(self, title: str, text: str) -> int:
        if self.text_chars:
            text = text[: self.text_chars]
        hits = 0
        for field in (normalize(title), normalize(text)):
            for pattern in self.patterns:
                hits += len(pattern.findall(field))
        return hits


SHARED = ROOT.parent / "shared"


def real_stories() -> list[tuple[str, list[tuple[str, str]]]]:
    """Real stories from `../shared`, when it is there: the labelled feed items of
    `eval/dev.jsonl` (titles and summaries, as feeds carry them; several languages) and the
    full articles of `corpus/extra/g5w-*.json`."""
    import json

    sets = []
    labels = SHARED / "eval" / "dev.jsonl"
    if labels.is_file():
        rows = [json.loads(line) for line in labels.read_text(encoding="utf-8").splitlines()]
        sets.append(("feed items", [(r["title"], r["text"]) for r in rows]))
    articles = sorted((SHARED / "corpus" / "extra").glob("g5w-*.json"))
    if articles:
        docs = [json.loads(path.read_text(encoding="utf-8")) for path in articles]
        sets.append(("full articles", [(d.get("title") or "", d.get("text") or "") for d in docs]))
    return sets


def repeated(stories: list[tuple[str, str]], at_least: int = 1000) -> list[tuple[str, str]]:
    """`stories` repeated until there are `at_least`: a small set timed over enough work."""
    return stories * max(1, at_least // len(stories))


def rate(fn: Callable[[str, str], object], stories: list[tuple[str, str]], rounds: int) -> float:
    """Stories per CPU second, the best of `rounds` passes (the least disturbed by other work)."""
    fn(*stories[0])
    best = 0.0
    for _ in range(rounds):
        start = time.process_time()
        for title, text in stories:
            fn(title, text)
        best = max(best, len(stories) / (time.process_time() - start))
    return best


def compare(path: Path, shipped: dict[str, TopicConfig], args: argparse.Namespace) -> None:
    """This matcher against the one in `path`, alternating on the same stories."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("other_matcher", path)
    assert spec is not None and spec.loader is not None
    other = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = other  # dataclasses look their module up there
    spec.loader.exec_module(other)
    sets = [
        ("English", make_stories(args.stories, 0.0)),
        ("Korean", make_stories(args.stories, 1.0)),
        ("mixed 80/20", make_stories(args.stories, 0.2)),
        *real_stories(),
    ]
    contenders = {"other": other.Matcher(shipped), "this": Matcher(shipped)}
    print(f"shipped topics, one core, best of {args.rounds}; other: {path}")
    print(f"{'stories':<15}{'other/s':>10}{'this/s':>10}{'ratio':>8}")
    for label, stories in sets:
        stories = repeated(stories)
        best = dict.fromkeys(contenders, 0.0)
        for _ in range(args.rounds):
            for name, matcher in contenders.items():
                best[name] = max(best[name], rate(matcher.score, stories, 1))
        print(
            f"{label:<15}{best['other']:>10,.0f}{best['this']:>10,.0f}"
            f"{best['this'] / best['other']:>7.2f}x"
        )


_SCORE_SET = """
import json, sys, yaml
sys.path.insert(0, sys.argv[1])
from newswatch.alerts.match.matcher import Matcher
from newswatch.alerts.match.topics import TopicConfig
raw = yaml.safe_load(open(sys.argv[2], encoding="utf-8"))["topics"]
matcher = Matcher({name: TopicConfig.model_validate(body) for name, body in raw.items()})
stories = json.load(open(sys.argv[3], encoding="utf-8"))
matcher.score(*stories[0])
for _ in range(int(sys.argv[4])):
    for title, text in stories:
        matcher.score(title, text)
"""


def count_instructions(root: Path, config: Path, stories: Path, passes: int) -> int:
    """Instructions callgrind counts for a child that builds the matcher of the revision at
    `root` and scores `stories` `passes` times."""
    import os
    import subprocess

    proc = subprocess.run(
        [
            "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
            sys.executable, "-c", _SCORE_SET, str(root), str(config), str(stories), str(passes),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict and set orders every run
        check=True,
    )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no count: {proc.stderr[-500:]}")
    return int(found.group(1))


def instructions(args: argparse.Namespace) -> None:
    """Instructions per story: build and score once, minus build only, per pass and story."""
    import json
    import shutil
    import tempfile

    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian and Ubuntu: apt install valgrind)")

    sets = [
        ("English", make_stories(100, 0.0)),
        ("Korean", make_stories(100, 1.0)),
        ("mixed 80/20", make_stories(100, 0.2)),
        *((label, stories[:300]) for label, stories in real_stories()),
    ]
    roots = {"this": ROOT}
    if args.against:
        # the folder that holds the revision's `alerts` package
        roots["other"] = next(p for p in args.against.resolve().parents if p.name == "alerts").parent
    passes = 3
    print(f"instructions per story (callgrind), shipped topics of {args.config}")
    ratio = "    this/other" if args.against else ""
    print(f"{'stories':<15}" + "".join(f"{name:>14}" for name in roots) + ratio)
    with tempfile.TemporaryDirectory() as folder:
        for label, stories in sets:
            path = Path(folder) / "stories.json"
            path.write_text(json.dumps(stories), encoding="utf-8")
            counts = {
                name: (
                    count_instructions(root, args.config, path, passes)
                    - count_instructions(root, args.config, path, 0)
                )
                / (passes * len(stories))
                for name, root in roots.items()
            }
            line = f"{label:<15}" + "".join(f"{counts[name]:>14,.0f}" for name in roots)
            if args.against:
                line += f"{counts['this'] / counts['other']:>13.3f}"
            print(line, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=2000)
    parser.add_argument("--baseline-stories", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "newswatch.yaml")
    parser.add_argument("--against", type=Path, help="another revision's alerts/match/matcher.py")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions per story (callgrind)"
    )
    args = parser.parse_args(argv)
    if args.instructions:
        instructions(args)
        return

    shipped = load_topics(args.config)
    if args.against:
        compare(args.against, shipped, args)
        return
    with_extra = {**shipped, "generated": extra_topic(500)}
    mixes = (("English", 0.0), ("Korean", 1.0), ("mixed 80/20", 0.2))

    print(f"stories of {STORY_CHARS} characters, one core, best of {args.rounds} passes")
    print(
        f"{'terms':<22}{'patterns':>9}  {'stories':<12}{'matcher/s':>11}"
        f"{'regex loop/s':>14}{'ratio':>8}"
    )
    for label, topics in (("shipped topics", shipped), ("shipped + 500 terms", with_extra)):
        matcher = Matcher(topics)
        baseline = RegexBaseline(topics)
        for mix, share in mixes:
            stories = make_stories(args.stories, share)
            fast = rate(matcher.score, stories, args.rounds)
            slow = rate(baseline.score, stories[: args.baseline_stories], 1)
            print(
                f"{label:<22}{len(baseline.patterns):>9}  {mix:<12}{fast:>11,.0f}"
                f"{slow:>14,.0f}{fast / slow:>7.0f}x"
            )
    real = real_stories()
    if real:
        print(f"\nreal stories from {SHARED}, shipped topics, one core, best of {args.rounds} passes")
        print(f"{'stories':<15}{'count':>7}{'chars/story':>13}{'matcher/s':>11}{'regex loop/s':>14}")
        matcher, baseline = Matcher(shipped), RegexBaseline(shipped)
        for label, stories in real:
            chars = sum(len(t) + len(x) for t, x in stories) / len(stories)
            fast = rate(matcher.score, repeated(stories), args.rounds)
            slow = rate(baseline.score, stories[: args.baseline_stories], 1)
            print(f"{label:<15}{len(stories):>7}{chars:>13,.0f}{fast:>11,.0f}{slow:>14,.0f}")


if __name__ == "__main__":
    main()
