"""`python -m bench cycle`: one full poll of N sources, the daemon against two baselines.

For each N (default 1,000, 5,000 and 10,000), on a fresh farm, Bot API and database:

1. cold: `newswatch crawl --once` on an empty database (every feed is new: all 200s, every
   item stored); CPU exact (rusage of the process and its descendants), peak RSS (VmHWM).
2. the farm advances one cycle (`--changed` of the feeds, 5% by default, get 1-3 new items;
   a few new items match the topics), then `newswatch run` starts and its first round is
   the measured cycle: it starts at the farm's first request and ends when every source was
   answered, every story is dispatched, the outbox is drained and the daemon's process tree
   is idle. CPU is the tree's (daemon and any worker processes) over that window, sampled
   from /proc every 0.1 s; start-up before the first request is reported apart.
3. baseline (b), the aiohttp + feedparser script with conditional GET: a first round, the
   farm advances, the measured round. Baseline (a), sequential `feedparser.parse(url)`: the
   farm advances, one round. Each reports its own CPU (process_time) and wall time.

Bytes are response bodies as sent (gzipped when the client asks), counted by the farm;
"saved by 304" is what the 304-answered feeds would have sent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.harness import (ROOT, Database, DaemonRun, FarmProcess, _env, crawl_once, log, markdown, mb,
                           percentile, sends_by_url, start_bot_api, subscribe_chats, write_config)
from bench.profile import summarize_profile


def run_baseline(kind: str, farm: FarmProcess, feeds: int, args, *, log_dir: Path) -> dict:
    """Run a baseline script. `aiohttp` does a first round, then the farm advances and its
    second round is measured; `sequential` keeps nothing between rounds, so its one round is
    measured (the caller advances the farm before)."""
    rounds = 2 if kind == "aiohttp" else 1
    argv = [sys.executable, "-m", "bench.baselines", kind, "--base", farm.base, "--feeds", str(feeds),
            "--rounds", str(rounds), "--concurrency", str(args.concurrency), "--deadline", str(args.baseline_deadline),
            "--wait"]
    err = open(log_dir / f"baseline-{kind}.err", "w")
    proc = subprocess.Popen(argv, cwd=ROOT, env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    result: dict = {}
    try:
        for index in range(1, rounds + 1):
            if index > 1:
                farm.reset()
                farm.advance(args.changed, args.matching)
                proc.stdin.write("go\n")
                proc.stdin.flush()
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"baseline {kind} ended early; see {err.name}")
            result = json.loads(line)
        result["farm"] = farm.stats()
    finally:
        proc.stdin.close()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        err.close()
    return result


def measure(feeds: int, args, out_dir: Path) -> dict:
    work = out_dir / f"n{feeds}"
    work.mkdir(parents=True, exist_ok=True)
    log(f"N={feeds}: starting the farm")
    farm = FarmProcess(feeds, seed=args.seed, slow=args.slow, failing=args.failing, log_dir=work).start()
    bot = start_bot_api()
    result: dict = {"sources": feeds, "farm": farm.info}
    try:
        config = write_config(work, farm.base, feeds, api_url=bot.api_base, interval=args.interval,
                              concurrency=args.concurrency)
        subscribe_chats(config, args.chats)
        db = Database(work / "newswatch.db")

        log(f"N={feeds}: cold crawl --once")
        farm.reset()
        cold = crawl_once(config, bot.token, work, "cold")
        result["cold"] = {"wall": cold.wall, "cpu": cold.cpu, "hwm": cold.hwm, "exit": cold.exit_code,
                          "farm": farm.stats(), "stories": db.stories()}
        log(f"N={feeds}: cold {cold.wall:.1f}s wall, {cold.cpu:.1f}s CPU, {db.stories()} stories")

        farm.reset()
        advanced = farm.advance(args.changed, args.matching)
        backing_off = db.backing_off()
        expected = feeds - backing_off
        sends_before = len(bot.sent)
        log(f"N={feeds}: measured cycle ({advanced['changed']} feeds changed, {advanced['matching']} matching items, "
            f"{backing_off} sources backing off)")
        daemon = DaemonRun(config, bot.token, work, "run").start()
        try:
            done = daemon.wait_round(farm, db, expected, timeout=args.cycle_timeout)
            sampler = daemon.sampler
            assert sampler is not None
            first, end = done["first"], done["end"]
            sends = [e for e in bot.sent[sends_before:]]
            end = max(end, max((e["time"] for e in sends), default=end))
            cpu = sampler.cpu_at(end) - sampler.cpu_at(first)
            status = daemon.status()
            tracked = farm.call("tracked")
            by_url = sends_by_url(bot)
            poll_to_send = []
            for item in tracked.values():
                if item["first_served"] is None:
                    continue
                for when, _chat in by_url.get(item["url"], []):
                    if when >= item["first_served"]:
                        poll_to_send.append(when - item["first_served"])
            result["cycle"] = {
                "wall": end - first, "cpu": cpu, "startup_wall": first - daemon.started,
                "startup_cpu": sampler.cpu_at(first), "hwm": max(sampler.peak_hwm, status.get("VmHWM", 0)),
                "tree_rss_peak": sampler.peak_tree_rss, "rss_end": status.get("VmRSS", 0),
                "farm": done["stats"], "timed_out": done["timed_out"], "expected": expected,
                "advanced": advanced, "sends": len(sends), "poll_to_send": poll_to_send,
            }
        finally:
            daemon.stop()
        log(f"N={feeds}: cycle {result['cycle']['wall']:.1f}s wall, {result['cycle']['cpu']:.1f}s CPU")

        if args.profile:
            result["profile"] = profile_cycle(farm, db, config, bot, work, feeds, args)

        if "b" in args.baselines:
            log(f"N={feeds}: baseline (b) aiohttp + feedparser, conditional GET")
            result["baseline_b"] = run_baseline("aiohttp", farm, feeds, args, log_dir=work)
        if "a" in args.baselines:
            log(f"N={feeds}: baseline (a) sequential feedparser.parse(url)")
            farm.reset()
            farm.advance(args.changed, args.matching)
            sample = args.baseline_a_sample if 0 < args.baseline_a_sample < feeds else feeds
            a = run_baseline("sequential", farm, sample, args, log_dir=work)
            if sample < feeds:  # one feed after the other: the cost is the sample's times N / sample
                a.update(measured_wall=a["wall"], measured_cpu=a["cpu"], extrapolated_from=sample,
                         wall=a["wall"] * feeds / sample, cpu=a["cpu"] * feeds / sample)
            result["baseline_a"] = a
    finally:
        bot.stop()
        farm.stop()
    (work / "result.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def profile_cycle(farm, db, config, bot, work: Path, feeds: int, args) -> dict:
    """One more 5% cycle under a profiler (not used for any number above: profilers slow it).
    py-spy is attached once start-up is over, so its samples are the cycle's; cProfile covers
    the whole run, start-up included, of the main process only."""
    farm.reset()
    farm.advance(args.changed, args.matching)
    expected = feeds - db.backing_off()
    suffix = "prof" if args.profile == "cprofile" else "txt"
    out = work / f"profile-{args.profile}.{suffix}"
    log(f"N={feeds}: profiling one cycle with {args.profile} -> {out}")
    daemon = DaemonRun(config, bot.token, work, "profile", profile=args.profile, profile_out=out).start(bot)
    try:
        if args.profile == "py-spy":
            daemon.attach_profiler(bot)
        done = daemon.wait_round(farm, db, expected, timeout=args.cycle_timeout * 3)
        window = (done["first"], done["end"])
    finally:
        daemon.detach_profiler()
        daemon.stop()
    return {"file": str(out), "window": window, "top": summarize_profile(args.profile, out, args.profile_top)}


def _ratio(ours: float, theirs: float | None) -> str:
    if not theirs:
        return "–"
    return f"{ours / theirs:.2f}x"


def report(results: list[dict], args) -> str:
    parts = []
    rows = []
    for r in results:
        c = r["cycle"]
        farm = c["farm"]
        crawl_wall = max(1e-9, (farm["last_response"] or 0) - (farm["first_request"] or 0))
        ok, not_modified = farm["by_status"].get("200", 0), farm["by_status"].get("304", 0)
        p2s = c["poll_to_send"]
        rows.append([
            f"{r['sources']:,}", f"{c['wall']:.1f}", f"{c['cpu']:.1f}", f"{c['startup_cpu']:.1f}",
            mb(c["hwm"]), mb(c["tree_rss_peak"]), f"{farm['requests'] / crawl_wall:,.0f}",
            f"{ok}/{not_modified}/{farm['requests'] - ok - not_modified}",
            mb(farm["bytes_sent"]), mb(farm["bytes_saved_304"]),
            f"{c['sends']}", f"{percentile(p2s, 0.5):.2f} / {percentile(p2s, 0.95):.2f}" if p2s else "–",
            f"{farm['concurrency']['mean']:.1f} / {farm['concurrency']['max']}",
            "yes" if c["timed_out"] else "",
        ])
    parts.append(f"### Cycle: one full poll, {args.changed:.0%} of feeds changed (newswatch run, first round)\n")
    parts.append(markdown(
        ["sources", "wall s", "CPU s", "start-up CPU s", "peak RSS MB", "tree peak RSS MB", "req/s",
         "200/304/other", "MB sent", "MB saved by 304", "alerts sent", "poll→send p50/p95 s",
         "farm concurrency mean / max", "timed out"], rows))

    rows = []
    for r in results:
        c = r["cycle"]
        row = [f"{r['sources']:,}", f"{c['wall']:.1f}", f"{c['cpu']:.1f}"]
        for key in ("baseline_b", "baseline_a"):
            b = r.get(key)
            if b is None:
                row += ["–", "–", "–", "–"]
                continue
            note = "" if b.get("finished", True) else f" (stopped after {b['requests']:,} requests)"
            if b.get("extrapolated_from"):
                note += f" (from {b['extrapolated_from']:,} feeds)"
            row += [f"{b['wall']:.1f}{note}", f"{b['cpu']:.1f}", _ratio(c["wall"], b["wall"]), _ratio(c["cpu"], b["cpu"])]
        rows.append(row)
    parts.append("\n### Against the baselines (same farm, same change rate, run one after the other)\n")
    parts.append(markdown(
        ["sources", "ours wall s", "ours CPU s", "(b) wall s", "(b) CPU s", "wall vs (b)", "CPU vs (b)",
         "(a) wall s", "(a) CPU s", "wall vs (a)", "CPU vs (a)"], rows))

    rows = []
    for r in results:
        cold = r["cold"]
        b = r.get("baseline_b", {})
        a = r.get("baseline_a", {})
        rows.append([f"{r['sources']:,}", f"{cold['wall']:.1f}", f"{cold['cpu']:.1f}", mb(cold["hwm"]),
                     f"{cold['stories']:,}", mb(cold["farm"]["bytes_sent"]),
                     mb(b.get("hwm", 0)) if b else "–", mb(a.get("hwm", 0)) if a else "–"])
    parts.append("\n### Cold first poll (empty database, every feed new) and baselines' peak RSS\n")
    parts.append(markdown(["sources", "crawl --once wall s", "CPU s (incl. start-up)", "peak RSS MB",
                           "stories stored", "MB sent", "(b) peak RSS MB", "(a) peak RSS MB"], rows))

    if len(results) > 1:
        base = results[0]
        rows = []
        for r in results:
            k = r["sources"] / base["sources"]
            cpu_ratio = r["cycle"]["cpu"] / max(1e-9, base["cycle"]["cpu"])
            rss_ratio = r["cycle"]["hwm"] / max(1, base["cycle"]["hwm"])
            added = r["sources"] - base["sources"]
            per_added = (r["cycle"]["hwm"] - base["cycle"]["hwm"]) / added / 1e3 if added else None
            rows.append([f"{r['sources']:,}", f"{k:.0f}x", f"{r['cycle']['cpu'] / r['sources'] * 1000:.2f}",
                         f"{cpu_ratio:.2f}x", f"{per_added:.1f}" if per_added is not None else "–", f"{rss_ratio:.2f}x",
                         f"{(cpu_ratio / k - 1):+.0%} vs linear"])
        parts.append("\n### Scaling (cycle CPU and the daemon's peak RSS against the smallest N)\n")
        parts.append(markdown(["sources", "sources ratio", "CPU ms per source", "CPU ratio", "KB RSS per added source",
                               "peak RSS ratio", "CPU against linear growth"], rows))

    targets = []
    for r in results:
        if r["sources"] >= 10000:
            c = r["cycle"]
            b = r.get("baseline_b")
            p2s = c["poll_to_send"]
            targets += [
                ["10,000 sources: cycle wall ≤ 60 s", f"{c['wall']:.1f} s", "met" if c["wall"] <= 60 else "missed"],
                ["10,000 sources: cycle CPU ≤ 30 s", f"{c['cpu']:.1f} s", "met" if c["cpu"] <= 30 else "missed"],
                ["CPU ≤ 1.5x baseline (b)", _ratio(c["cpu"], b["cpu"]) if b else "–",
                 ("met" if c["cpu"] <= 1.5 * b["cpu"] else "missed") if b else "–"],
                ["peak RSS ≤ 250 MB (daemon and its parse workers)", f"{mb(c['tree_rss_peak'])} MB "
                 f"(daemon process alone {mb(c['hwm'])} MB)", "met" if c["tree_rss_peak"] <= 250e6 else "missed"],
                ["p95 poll→send ≤ 2 s (this cycle's alerts)", f"{percentile(p2s, 0.95):.2f} s" if p2s else "–",
                 ("met" if percentile(p2s, 0.95) <= 2 else "missed") if p2s else "–"],
            ]
    if targets:
        parts.append("\n### Targets\n")
        parts.append(markdown(["target", "measured", ""], targets))

    for r in results:
        if r.get("profile"):
            parts.append(f"\n### Profile of one {r['sources']:,}-source cycle ({args.profile}; {r['profile']['file']})\n")
            parts.append(r["profile"]["top"])
    return "\n".join(parts) + "\n"


def main(args) -> int:
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.from_results:
        results = [json.loads((out_dir / f"n{n}" / "result.json").read_text()) for n in args.sources]
        for r in results:
            if r.get("profile"):
                r["profile"]["top"] = summarize_profile(args.profile or "py-spy", Path(r["profile"]["file"]),
                                                        args.profile_top)
    else:
        results = [measure(n, args, out_dir) for n in args.sources]
    text = report(results, args)
    (out_dir / "cycle.md").write_text(text)
    print(text)
    return 0
