"""What one `/watch` costs when many watches are stored: the time to store a rule and bring
the watch matcher up to date, and what scoring a story against every watch costs after.

    python -m bench.watch_rules [--watches 10000] [--repeat 5] [--stories 300]
    python -m bench.watch_rules --against /tmp/old     # the same, run in another revision

Rules are generated from a fixed seed (words, phrases, OR, `word*`, `visit(s|ed)`, exclusions,
Korean words), spread over chats of 20 watches each, and stored in a fresh SQLite file
through `Watches.add`. Then `--repeat` times: one `/unwatch` (remove a watch and bring the
matcher up to date) and one `/watch` (add one and bring it up to date), each timed in CPU
seconds with `Watches.matcher()`, which does in the calling thread what the daemon does in a
worker thread. `--against DIR` runs this file with DIR's `alerts` package first on the path
(a checkout of another revision, e.g. from `git worktree add /tmp/old main`).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PER_CHAT = 20
LETTERS = "abcdefghijklmnopqrstuvwxyz"
SYLLABLES = "가나다라마바사아자차카타파하거너더러머버서어저처"


def _word(rnd: random.Random) -> str:
    return "".join(rnd.choice(LETTERS) for _ in range(rnd.randint(4, 9)))


def make_rule(rnd: random.Random) -> str:
    """One watch rule of the kinds people write."""
    kind = rnd.random()
    if kind < 0.3:
        return f"{_word(rnd)} {_word(rnd)}"
    if kind < 0.45:
        return f'"{_word(rnd)} {_word(rnd)}"'
    if kind < 0.6:
        return f"{_word(rnd)} OR {_word(rnd)} {_word(rnd)}"
    if kind < 0.7:
        return f"{_word(rnd)}* -{_word(rnd)}"
    if kind < 0.8:
        return f"{_word(rnd)}(s|ed) {_word(rnd)}"
    if kind < 0.9:
        return "".join(rnd.choice(SYLLABLES) for _ in range(rnd.randint(2, 4)))
    return _word(rnd)


def run(args: argparse.Namespace) -> None:
    from newswatch.alerts.subscriptions import Subscriptions
    from newswatch.alerts.match.watches import Watches
    from bench.matcher_bench import make_stories

    now = datetime(2026, 1, 1, tzinfo=UTC)
    rnd = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        try:
            from newswatch.storage import open_storage

            rows = open_storage(Path(folder) / "watches.db").alerts
        except ImportError:  # a revision before the storage layer: the classes take the connection
            from newswatch.crawler.store import open_database

            rows = open_database(Path(folder) / "watches.db")
        subscriptions = Subscriptions(rows)
        chats = (args.watches + PER_CHAT - 1) // PER_CHAT + args.repeat
        for chat in range(1, chats + 1):
            subscriptions.start(chat, [], now=now)
        try:
            watches = Watches(rows, max_watches=args.watches + args.repeat)
        except TypeError:  # a revision without the setting
            watches = Watches(rows)
        added = 0
        while added < args.watches:
            try:
                watches.add(1 + added // PER_CHAT, make_rule(rnd), now)
            except ValueError:  # the same rule twice in a chat
                continue
            added += 1
        start = time.process_time()
        watches.matcher()
        first = time.process_time() - start
        unwatch, watch = [], []
        for round_ in range(args.repeat):
            chat = 1 + rnd.randrange(args.watches // PER_CHAT)
            start = time.process_time()
            watches.remove(chat, 1)
            watches.matcher()
            unwatch.append(time.process_time() - start)
            start = time.process_time()
            watches.add(chats - round_, make_rule(rnd), now)
            watches.matcher()
            watch.append(time.process_time() - start)
        matcher = watches.matcher()
        stories = make_stories(args.stories, 0.2)
        start = time.process_time()
        for title, text in stories:
            matcher.score(title, text)
        per_story = (time.process_time() - start) / len(stories)
    print(f"{args.watches:,} watches; CPU seconds, median of {args.repeat} (max)")
    print(f"  all stored watches compiled (start-up): {first:.3f}")
    print(f"  one /unwatch, matcher up to date:       {statistics.median(unwatch):.3f} ({max(unwatch):.3f})")
    print(f"  one /watch, matcher up to date:         {statistics.median(watch):.3f} ({max(watch):.3f})")
    print(f"  scoring one 2,000-character story against every watch: {per_story * 1e6:,.0f} µs "
          f"(80% English, 20% Korean)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.watch_rules", description=__doc__.splitlines()[0])
    parser.add_argument("--watches", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--stories", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--against", type=Path, default=None, help="a checkout of another revision to run in")
    args = parser.parse_args(argv)
    if args.against is None:
        run(args)
        return
    other = args.against.resolve()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(other), str(ROOT)])}
    forwarded = [f"--{name}={getattr(args, name)}" for name in ("watches", "repeat", "stories", "seed")]
    print(f"== {other}")
    subprocess.run([sys.executable, str(Path(__file__).resolve()), *forwarded], cwd=other, env=env, check=True)


if __name__ == "__main__":
    main()
