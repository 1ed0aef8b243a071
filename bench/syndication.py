"""`python -m bench syndication`: story clustering by the number of recent stories, and a cold
poll of syndicated real stories against the aiohttp + feedparser baseline.

Both parts use real story texts: the titles and texts of `../shared/eval/dev.jsonl` (1,016
stories, a third of them about the Koreas, so many match the shipped topics).

1. Clustering rate. A SQLite database holds N recent alerting stories (N = 1,000, 10,000,
   100,000 by default): N / `--copies` distinct real stories (the labelled ones, the KCNA
   archive, NYT April 2018, world headlines), each in `--copies` versions as outlets send
   them (the same text, retitled with the outlet's name, 12% of the words dropped). Then
   `--probe` new stories (more copies of those events, so each has a cluster to find) go through what
   the dispatcher does for an alerting story (`join_cluster`: a word-for-word copy by its content
   key, anything else by sketch, candidate look-up by keys, ranking; then the insert). Reported: stories clustered per second at each N. Side by side at the smaller
   sizes, the same stories compared with every recent story (the look-up this replaced).
2. Cold poll. A farm on 127.0.0.1 serves `--feeds` RSS feeds of `--per-feed` items each,
   every text in about `feeds * per_feed / 1016` feeds (syndicated wire copy: each outlet its
   own link; one feed in five an aggregator whose items are "TITLE - Outlet" with a link-only
   description), all published within the last 20 hours, so they may alert. `newswatch crawl
   --once` runs on an empty database with one subscribed chat and the fake Bot API; then the
   aiohttp + feedparser baseline (`bench.baselines aiohttp`, one round) polls the same farm.
   CPU is rusage of each process tree. `--profile` also runs the crawl under cProfile and
   prints where its time goes.
"""

from __future__ import annotations

import argparse
import json
import pstats
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import yaml

from bench.harness import ROOT, _env, crawl_once, log, start_bot_api, subscribe_chats, write_config
from bench.proc import ChildCPU
from bench.stories import copy_of, distinct_texts, labelled_texts

# -- 1. clustering rate ---------------------------------------------------------------------------
def clustering_rate(size: int, probe: int, copies: int, work: Path, *, linear: bool) -> dict:
    """N recent stories: N / copies distinct real stories, each as `copies` outlets sent it
    (so the copies of one event stay the same at every N, as they do in the news)."""
    from newswatch.alerts.match.clustering import StoryClusterer
    from newswatch.daemon import DISPATCH_STEP
    from newswatch.alerts.story_clusters import StoryClusters, join_cluster
    from newswatch.storage import open_storage

    pool = distinct_texts()
    events = max(1, size // copies)
    if events > len(pool):
        raise SystemExit(f"{size:,} stories at {copies} copies need {events:,} distinct stories; the corpus has "
                         f"{len(pool):,} (raise --copies)")
    rnd = random.Random(size)
    path = work / f"clusters-{size}.db"
    for stale in work.glob(path.name + "*"):
        stale.unlink()
    storage = open_storage(path)
    clusters = StoryClusters(storage.alerts)
    clusterer = StoryClusterer()
    now = datetime.now(UTC)
    recent: list[tuple[str, object, datetime]] = []
    with storage.alerts.transaction():
        for i in range(size):
            event = i % events
            title, text = pool[event] if i < events else copy_of(*pool[event], rnd, i)
            sketch = clusterer.sketch(title, text)
            seen = now - timedelta(seconds=rnd.uniform(0, 30 * 3600))
            clusters.add(f"s{i}", f"c{event}", f"outlet-{i % 97}", sketch, seen)
            if linear:
                recent.append((f"c{event}", sketch, seen))
    probes = [copy_of(*pool[rnd.randrange(events)], rnd, 10_000 + j) for j in range(probe)]
    found = 0
    started = time.process_time()
    for first in range(0, len(probes), DISPATCH_STEP):  # one transaction per step, as the daemon commits
        with storage.alerts.transaction():
            for j in range(first, min(first + DISPATCH_STEP, len(probes))):
                title, text = probes[j]
                found += join_cluster(clusters, clusterer, f"p{j}", "probe", title, text, now) is not None
    indexed = time.process_time() - started
    result = {"size": size, "copies": copies, "probe": probe, "found": found, "indexed_per_s": probe / indexed}
    if linear:
        sample = probes[: max(1, min(probe, 200_000 // max(size, 1)))]
        started = time.process_time()
        for title, text in sample:
            clusterer.match_cluster(clusterer.sketch(title, text), now, recent)
        result["linear_per_s"] = len(sample) / (time.process_time() - started)
    storage.close()
    return result


# -- 2. cold poll ---------------------------------------------------------------------------------
def render_feeds(feeds: int, per_feed: int, seed: int) -> list[bytes]:
    """RSS documents: slot s of the farm carries text s % len(texts), so every text is in
    about feeds * per_feed / len(texts) feeds; one feed in five is an aggregator."""
    texts = labelled_texts()
    rnd = random.Random(seed)
    now = datetime.now(UTC)
    docs = []
    for f in range(feeds):
        aggregator = f % 5 == 4
        items = []
        for k in range(per_feed):
            slot = f * per_feed + k
            title, text = texts[slot % len(texts)]
            if aggregator:
                title, text = f"{title} - Outlet {slot % 37}", f"{title}\u00a0\u00a0Outlet {slot % 37}"
            else:
                title, text = copy_of(title, text, rnd, f)
            published = now - timedelta(seconds=rnd.uniform(60, 20 * 3600))
            link = f"https://outlet{f}.example.com/news/{slot}"
            items.append(f"<item><title>{escape(title)}</title><link>{link}</link><guid>{link}</guid>"
                         f"<description>{escape(text)}</description>"
                         f"<pubDate>{format_datetime(published, usegmt=True)}</pubDate></item>")
        docs.append(('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
                     f"<title>Outlet {f}</title><link>https://outlet{f}.example.com/</link>"
                     f"<description>news</description>{''.join(items)}</channel></rss>").encode())
    return docs


def serve(feeds: int, per_feed: int, seed: int, max_seconds: float) -> None:
    """The farm: `GET /feed/<n>.xml`; prints {"port": P} when ready; stops after max_seconds."""
    import asyncio

    from aiohttp import web

    docs = render_feeds(feeds, per_feed, seed)

    async def feed(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if not 0 <= n < len(docs):
            raise web.HTTPNotFound()
        return web.Response(body=docs[n], content_type="application/rss+xml", charset="utf-8")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/feed/{n}.xml", feed)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(json.dumps({"port": site._server.sockets[0].getsockname()[1]}), flush=True)
        await asyncio.sleep(max_seconds)
        await runner.cleanup()

    asyncio.run(main())


def cold_poll(args, work: Path) -> dict:
    farm = subprocess.Popen([sys.executable, "-m", "bench.syndication", "serve", "--feeds", str(args.feeds),
                             "--per-feed", str(args.per_feed), "--seed", str(args.seed)],
                            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert farm.stdout is not None
        base = f"http://127.0.0.1:{json.loads(farm.stdout.readline())['port']}"
        bot = start_bot_api()
        try:
            config = write_config(work, base, args.feeds, api_url=f"{bot.api_base}", interval=3600,
                                  concurrency=args.concurrency)
            # the fake Bot API has no flood limit: sends are not held back, so the run ends when the work does
            data = yaml.safe_load(config.read_text("utf-8"))
            data["telegram"]["overall_per_second"] = 1000
            config.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
            subscribe_chats(config, 1)
            log(f"cold poll: {args.feeds} feeds x {args.per_feed} items")
            ours = crawl_once(config, bot.token, work, "cold-poll")
            sent = len(bot.sent)
        finally:
            bot.stop()
        from newswatch.storage import open_storage

        conn = open_storage(work / "newswatch.db").stories.conn
        stored = conn.execute("SELECT COUNT(*) FROM stories").fetchone()[0]
        clustered = conn.execute("SELECT COUNT(*) FROM story_clusters").fetchone()[0]
        clusters = conn.execute("SELECT COUNT(DISTINCT cluster_id) FROM story_clusters").fetchone()[0]
        conn.close()
        with ChildCPU() as usage:
            started = time.perf_counter()
            baseline = subprocess.run([sys.executable, "-m", "bench.baselines", "aiohttp", "--base", base, "--feeds",
                                       str(args.feeds), "--rounds", "1", "--concurrency", str(args.concurrency)],
                                      cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=3600)
            wall = time.perf_counter() - started
        round_ = json.loads(baseline.stdout.strip().splitlines()[-1])
        result = {"feeds": args.feeds, "items": args.feeds * args.per_feed, "ours_cpu": ours.cpu, "ours_wall": ours.wall,
                  "ours_exit": ours.exit_code, "stored": stored, "indexed_for_clustering": clustered,
                  "clusters": clusters, "alerts_sent": sent, "baseline_cpu": usage.seconds, "baseline_wall": wall,
                  "baseline_round_cpu": round_["cpu"], "baseline_entries": round_["entries"]}
        if args.profile:
            result["profile"] = profile_crawl(config, work, args.profile_top)
        return result
    finally:
        farm.kill()
        farm.wait(10)


def profile_crawl(config: Path, work: Path, top: int) -> str:
    """The same cold poll under cProfile (console mode, a fresh database): the top functions."""
    for stale in work.glob("newswatch.db*"):
        stale.unlink()
    out = work / "cold-poll.prof"
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "newswatch.cli", "crawl", "--once",
                    "-c", str(config)], cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=3600)
    text = tempfile.SpooledTemporaryFile(mode="w+")
    pstats.Stats(str(out), stream=text).sort_stats("cumulative").print_stats(top)
    text.seek(0)
    return text.read()


def report(rates: list[dict], poll: dict | None) -> str:
    lines = ["| recent stories | clustered/s (key look-up) | clustered/s (compare with every recent) | found |",
             "|---:|---:|---:|---:|"]
    for r in rates:
        linear = f"{r['linear_per_s']:,.0f}" if "linear_per_s" in r else "-"
        lines.append(f"| {r['size']:,} | {r['indexed_per_s']:,.0f} | {linear} | {r['found']}/{r['probe']} |")
    if poll:
        ratio = poll["ours_cpu"] / poll["baseline_cpu"] if poll["baseline_cpu"] else float("nan")
        lines += ["", "| cold poll | CPU s | wall s | notes |", "|---|---:|---:|---|",
                  f"| newswatch crawl --once | {poll['ours_cpu']:.1f} | {poll['ours_wall']:.1f} | "
                  f"{poll['stored']:,} stored, {poll['indexed_for_clustering']:,} clustered into "
                  f"{poll['clusters']:,} events, {poll['alerts_sent']:,} alerts sent |",
                  f"| aiohttp + feedparser | {poll['baseline_cpu']:.1f} | {poll['baseline_wall']:.1f} | "
                  f"{poll['baseline_entries']:,} entries parsed (round CPU {poll['baseline_round_cpu']:.1f} s) |",
                  "", f"CPU ratio: {ratio:.2f}x the baseline ({poll['feeds']:,} feeds, {poll['items']:,} items)"]
        if poll.get("profile"):
            lines += ["", "```", poll["profile"], "```"]
    return "\n".join(lines)


def main(args) -> int:
    work = Path(args.out)
    rates = []
    for size in args.sizes:
        log(f"clustering with {size:,} recent stories")
        rates.append(clustering_rate(size, args.probe, args.copies, work, linear=size <= args.linear_up_to))
    poll = cold_poll(args, work) if args.feeds else None
    (work / "syndication.json").write_text(json.dumps({"rates": rates, "poll": poll}, indent=2))
    print(report(rates, poll))
    return 0


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "serve":
    parser = argparse.ArgumentParser()
    parser.add_argument("serve")
    parser.add_argument("--feeds", type=int, required=True)
    parser.add_argument("--per-feed", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=3600)
    a = parser.parse_args()
    serve(a.feeds, a.per_feed, a.seed, a.max_seconds)
