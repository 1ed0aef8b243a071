"""newswatch benchmarks: `python -m bench MODE [options]`; each mode prints markdown tables.

    python -m bench cycle   --sources 1000,5000,10000   full polls vs baselines, scaling
    python -m bench latency --sources 500               publication -> poll -> sendMessage
    python -m bench matcher                             stories/s on one core
    python -m bench store   --stories 100000,1000000    inserts and dedup look-ups vs store size
    python -m bench soak                                1 h of simulated time: RSS, fds, tasks
    python -m bench syndication                         clustering vs recent stories; cold poll of copies
    python -m bench replay                              labelled stories as a stream: learning from votes
    python -m bench scale   --feeds 20000               run on SQLite and PostgreSQL, 1/2/4 workers
    python -m bench all                                 cycle, latency, matcher and store

Everything runs on 127.0.0.1: a feed farm process, the test suite's fake Bot API, and the
daemon as a subprocess. docs/benchmarks.md says what each number means.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def _sizes(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None, help="folder for configs, databases, logs and results "
                        "(default: a new temporary folder)")
    parser.add_argument("--seed", type=int, default=1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0],
                                     epilog="\n".join(__doc__.splitlines()[2:11]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True, metavar="MODE")

    def cycle_options(p: argparse.ArgumentParser, sizes: str) -> None:
        p.add_argument("--sources", type=_sizes, default=_sizes(sizes), help=f"comma-separated N (default {sizes})")
        p.add_argument("--changed", type=float, default=0.05, help="share of feeds changed per cycle (0.05)")
        p.add_argument("--matching", type=float, default=0.02, help="chance that a new item matches a topic (0.02)")
        p.add_argument("--slow", type=float, default=0.01, help="share of feeds answering after 1-5 s (0.01)")
        p.add_argument("--failing", type=float, default=0.01, help="share of feeds that always fail (0.01)")
        p.add_argument("--chats", type=int, default=1, help="chats subscribed to every topic (1)")
        p.add_argument("--concurrency", type=int, default=32, help="requests at once, daemon and baseline (b) (32)")
        p.add_argument("--interval", type=int, default=3600, help="source interval in the config, s (3600: one round per run)")
        p.add_argument("--cycle-timeout", type=float, default=900.0, help="longest wait for one cycle, s")
        p.add_argument("--baseline-a-sample", type=int, default=2000,
                       help="baseline (a) polls at most this many feeds and is scaled to N (0: all) (2000)")

    p = sub.add_parser("cycle", help="one full poll of N sources against the baselines; scaling")
    _common(p)
    cycle_options(p, "1000,5000,10000")
    p.add_argument("--baselines", default="ab", help="which baselines to run: a, b, ab or none (ab)")
    p.add_argument("--baseline-deadline", type=float, default=900.0, help="longest baseline round, s")
    p.add_argument("--profile", choices=["", "py-spy", "cprofile"], default="",
                   help="also profile one extra cycle per N (py-spy must be installed for py-spy)")
    p.add_argument("--profile-top", type=int, default=20)
    p.add_argument("--from-results", action="store_true",
                   help="print the tables again from the results saved under --out, measuring nothing")

    p = sub.add_parser("latency", help="publication -> poll -> sendMessage, for items published at random moments")
    _common(p)
    p.add_argument("--sources", type=int, default=500)
    p.add_argument("--interval", type=int, default=30, help="source interval, s (30)")
    p.add_argument("--items", type=int, default=40, help="matching items published (40)")
    p.add_argument("--duration", type=float, default=240.0, help="publishing window, s (240)")
    p.add_argument("--changed", type=float, default=0.05, help="background change per interval (0.05)")
    p.add_argument("--chats", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=32)

    p = sub.add_parser("matcher", help="matcher stories/s on one core (reuses bench.matcher_bench)")
    _common(p)
    p.add_argument("--stories", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)

    p = sub.add_parser("store", help="story store: inserts and dedup look-ups at 100k vs 1M stored stories")
    _common(p)
    p.add_argument("--stories", type=_sizes, default=_sizes("100000,1000000"))
    p.add_argument("--ops", type=int, default=300, help="measured operations of each kind (300)")

    p = sub.add_parser("soak", help="1 h of simulated time, compressed: RSS, fds, tasks per cycle")
    _common(p)
    p.add_argument("--sources", type=int, default=2000)
    p.add_argument("--chats", type=int, default=50)
    p.add_argument("--simulated", type=float, default=3600.0, help="simulated time, s (3600)")
    p.add_argument("--simulated-interval", type=float, default=300.0,
                   help="the poll interval being simulated, s (300: every source every 5 minutes)")
    p.add_argument("--interval", type=int, default=30, help="the real interval in the daemon's config, s (30)")
    p.add_argument("--changed", type=float, default=0.05)
    p.add_argument("--matching", type=float, default=0.02)
    p.add_argument("--slow", type=float, default=0.05, help="share of slow feeds (1-12 s), some beyond the timeout (0.05)")
    p.add_argument("--failing", type=float, default=0.10, help="share of broken feeds (0.10)")
    p.add_argument("--timeout", type=int, default=10, help="the daemon's request timeout, s (10)")
    p.add_argument("--concurrency", type=int, default=32)

    p = sub.add_parser("syndication", help="clustering rate vs recent stories; cold poll of syndicated real stories")
    _common(p)
    p.add_argument("--sizes", type=_sizes, default=_sizes("1000,10000,100000"), help="recent stories (1000,10000,100000)")
    p.add_argument("--probe", type=int, default=2000, help="new stories clustered at each size (2000)")
    p.add_argument("--copies", type=int, default=8, help="versions of each event among the recent stories (8)")
    p.add_argument("--linear-up-to", type=int, default=10000,
                   help="also compare with every recent story up to this size (10000)")
    p.add_argument("--feeds", type=int, default=1000, help="feeds in the cold poll; 0 skips it (1000)")
    p.add_argument("--per-feed", type=int, default=20, help="items per feed (20)")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--profile", action="store_true", help="also profile the cold poll with cProfile")
    p.add_argument("--profile-top", type=int, default=25)

    p = sub.add_parser("replay", help="labelled stories as a stream: alerts' precision/recall with and without learning")
    _common(p)
    from bench.replay import DEFAULT_LABELS

    p.add_argument("--labels", default=str(DEFAULT_LABELS), help=f"labelled stories (default {DEFAULT_LABELS})")
    p.add_argument("--config", default=None, help="the topics (default: the shipped config)")
    p.add_argument("--blend", type=float, default=0.5, help="model.blend (0.5)")
    p.add_argument("--every", type=int, default=25, help="retrain after this many new votes (25)")
    p.add_argument("--flags", type=lambda t: [float(x) for x in t.split(",")], default=[0.0, 0.2],
                   help="shares of the stories that alerted nobody that arrive labelled, one run each (0,0.2)")

    p = sub.add_parser("scale", help="one cycle of N feeds: run on SQLite, run on PostgreSQL, 1/2/4 workers on PostgreSQL")
    _common(p)
    p.add_argument("--feeds", type=int, default=20000, help="feeds (20,000)")
    p.add_argument("--changed", type=float, default=0.05, help="share of feeds changed per cycle (0.05)")
    p.add_argument("--matching", type=float, default=0.02,
                   help="chance that a new synthetic item matches a topic (0.02; without --texts)")
    p.add_argument("--texts", type=Path, default=None, help="JSON lines of real stories for the new items "
                   "(default: ../shared/eval/dev.jsonl when it is there)")
    p.add_argument("--chats", type=int, default=2, help="chats subscribed to every topic (2)")
    p.add_argument("--hosts", type=int, default=500, help="loopback addresses the farm's feeds are spread over (500)")
    p.add_argument("--concurrency", type=int, default=32, help="requests at once per process (32)")
    p.add_argument("--interval", type=int, default=3600, help="source interval, s (3600: one round per run)")
    p.add_argument("--cycle-timeout", type=float, default=900.0, help="longest wait for one cycle, s")
    from bench.scale import DEFAULT_POSTGRES

    p.add_argument("--postgres", default=DEFAULT_POSTGRES, help=f"the server, a schema per run ({DEFAULT_POSTGRES})")

    p = sub.add_parser("all", help="cycle, latency, matcher and store with their defaults")
    _common(p)
    cycle_options(p, "1000,5000,10000")
    p.add_argument("--baselines", default="ab")
    p.add_argument("--baseline-deadline", type=float, default=900.0)
    p.add_argument("--profile", choices=["", "py-spy", "cprofile"], default="")
    p.add_argument("--profile-top", type=int, default=20)
    p.set_defaults(from_results=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.out is None:
        args.out = tempfile.mkdtemp(prefix=f"newswatch-bench-{args.mode}-")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    print(f"<!-- results and logs in {args.out} -->", flush=True)
    from bench.proc import become_subreaper

    become_subreaper()
    if args.mode == "cycle":
        from bench import cycle

        return cycle.main(args)
    if args.mode == "latency":
        from bench import latency

        return latency.main(args)
    if args.mode == "matcher":
        from bench import matcher

        return matcher.main(args)
    if args.mode == "store":
        from bench import storage

        return storage.main(args)
    if args.mode == "soak":
        from bench import soak

        return soak.main(args)
    if args.mode == "syndication":
        from bench import syndication

        return syndication.main(args)
    if args.mode == "replay":
        from bench import replay

        return replay.main(args)
    if args.mode == "scale":
        from bench import scale

        return scale.main(args)
    if args.mode == "all":
        from bench import cycle, latency, matcher, storage

        base = Path(args.out)
        code = cycle.main(argparse.Namespace(**{**vars(args), "out": str(base / "cycle")}))
        lat = build_parser().parse_args(["latency", "--out", str(base / "latency"), "--seed", str(args.seed)])
        code |= latency.main(lat)
        code |= matcher.main(build_parser().parse_args(["matcher", "--out", str(base / "matcher")]))
        code |= storage.main(build_parser().parse_args(["store", "--out", str(base / "store")]))
        return code
    return 2


if __name__ == "__main__":
    sys.exit(main())
