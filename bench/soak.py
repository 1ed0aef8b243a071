"""`python -m bench soak`: an hour of simulated time; does anything pile up?

Time is compressed: every source is polled every `--interval` real seconds (30) standing for
`--simulated-interval` (300: every five minutes), so one simulated hour is
`simulated / simulated-interval` polls of every source (12), done in
`polls x interval` real seconds (360 s, a compression of 10x). What is compressed is
only the wait between polls: each poll does the full real work (fetch, parse, store,
dispatch, deliver). Time-based behaviour inside the daemon (backoff of failing sources,
Retry-After, retries of alerts) runs on real time and so sees fewer hours than simulated.

The farm serves `--sources` feeds (2,000): `--slow` of them answer after 1-12 s, so some
exceed the daemon's `--timeout` (10 s), and `--failing` always fail (500, 404, 429 with
Retry-After, dropped connection, truncated XML). `--chats` (50) are subscribed to every
topic. At each simulated poll the farm advances (`--changed` of the feeds get new items,
some matching), and the harness records the daemon's RSS and peak RSS, open file
descriptors and threads (from /proc), asyncio tasks (from `bench.probe` inside the daemon),
alerts delivered and stories stored. The daemon starts on an empty database, so its first
poll stores every item; the simulated hour starts once every source has been polled and
every story dispatched, and "start" values are taken then.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench.harness import (Database, DaemonRun, FarmProcess, log, markdown, mb, start_bot_api, subscribe_chats,
                           write_config)
from bench.proc import fd_count


def _last_probe(path: Path) -> dict:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    return json.loads(lines[-1]) if lines else {}


def main(args) -> int:
    work = Path(args.out).resolve() / f"soak-n{args.sources}"
    work.mkdir(parents=True, exist_ok=True)
    polls = max(2, round(args.simulated / args.simulated_interval))
    compression = args.simulated_interval / args.interval
    farm = FarmProcess(args.sources, seed=args.seed, slow=args.slow, failing=args.failing, slow_delay=12.0,
                       log_dir=work).start()
    bot = start_bot_api()
    probe = work / "probe.jsonl"
    probe.unlink(missing_ok=True)
    rows: list[list[object]] = []
    samples: list[dict] = []
    try:
        config = write_config(work, farm.base, args.sources, api_url=bot.api_base, interval=args.interval,
                              concurrency=args.concurrency, timeout=args.timeout)
        subscribe_chats(config, args.chats)
        db = Database(work / "newswatch.db")
        log(f"soak: {polls} polls of {args.sources} sources every {args.interval}s "
            f"(simulating every {args.simulated_interval:.0f}s, {compression:.0f}x)")
        daemon = DaemonRun(config, bot.token, work, "soak", probe=probe).start()
        try:
            farm.reset()
            cold_started = time.monotonic()
            daemon.wait_round(farm, db, args.sources, timeout=1800, idle=False)
            log(f"soak: first (cold) poll done in {time.monotonic() - cold_started:.0f}s; simulated hour starts")
            started = time.monotonic()
            for k in range(polls + 1):
                target = started + k * args.interval
                while time.monotonic() < target:
                    if not daemon.alive():
                        raise RuntimeError("the daemon exited during the soak")
                    time.sleep(min(1.0, max(0.01, target - time.monotonic())))
                status = daemon.status()
                assert daemon.sampler is not None
                cpu = daemon.sampler.sample()
                inner = _last_probe(probe)
                stats = farm.stats()
                sample = {
                    "poll": k, "real_s": time.monotonic() - started, "simulated_min": k * args.simulated_interval / 60,
                    "rss": status.get("VmRSS", 0), "hwm": status.get("VmHWM", 0), "threads": status.get("Threads", 0),
                    "fds": fd_count(daemon.pid), "tasks": inner.get("tasks"), "cpu": cpu.cpu if cpu else None,
                    "sent": len(bot.sent), "requests": stats["requests"], "stories": db.stories(),
                }
                samples.append(sample)
                rows.append([k, f"{sample['simulated_min']:.0f}", f"{sample['real_s']:.0f}", mb(sample["rss"]),
                             mb(sample["hwm"]), sample["fds"], sample["tasks"] if sample["tasks"] is not None else "–",
                             sample["threads"], f"{sample['cpu']:.1f}" if sample["cpu"] is not None else "–",
                             f"{sample['requests']:,}", f"{sample['stories']:,}", sample["sent"]])
                log(f"soak: poll {k}/{polls}: RSS {mb(sample['rss'])} MB, fds {sample['fds']}, tasks {sample['tasks']}")
                if k < polls:
                    farm.advance(args.changed, args.matching)
            stop_started = time.monotonic()
        finally:
            code = daemon.stop()
        stop_seconds = time.monotonic() - stop_started
        stats = farm.stats()
    finally:
        bot.stop()
        farm.stop()
    first, last = samples[0], samples[-1]
    growth = (last["rss"] - first["rss"]) / 1e6
    hours = (last["simulated_min"] - first["simulated_min"]) / 60 or 1
    summary = [
        ["RSS at start (after the cold poll) → end", f"{mb(first['rss'])} → {mb(last['rss'])} MB",
         f"{growth:+.1f} MB ({growth / hours:+.1f} MB per simulated hour)"],
        ["peak RSS (VmHWM)", f"{mb(last['hwm'])} MB", ""],
        ["open file descriptors", f"{first['fds']} → {last['fds']}", f"{last['fds'] - first['fds']:+d}"],
        ["asyncio tasks", f"{first['tasks']} → {last['tasks']}",
         f"{(last['tasks'] or 0) - (first['tasks'] or 0):+d}" if first["tasks"] is not None else "–"],
        ["threads", f"{first['threads']} → {last['threads']}", f"{last['threads'] - first['threads']:+d}"],
        ["requests / alerts delivered", f"{stats['requests']:,} / {last['sent']:,}", ""],
        ["stop on SIGTERM", f"exit {code} in {stop_seconds:.1f} s", ""],
    ]
    text = (f"### Soak: {polls} polls of {args.sources:,} sources ({args.slow:.0%} slow, {args.failing:.0%} broken), "
            f"{args.chats} chats; one simulated hour at {compression:.0f}x "
            f"(interval {args.interval} s standing for {args.simulated_interval:.0f} s)\n\n"
            + markdown(["", "value", "change"], summary) + "\n\nPer simulated poll:\n\n"
            + markdown(["poll", "sim. min", "real s", "RSS MB", "peak RSS MB", "fds", "tasks", "threads", "CPU s",
                        "requests", "stories", "alerts sent"], rows) + "\n")
    (work / "soak.md").write_text(text)
    (work / "soak.json").write_text(json.dumps(samples, indent=1))
    print(text)
    return 0
