"""`python -m bench latency`: how long a matching story takes from publication to Telegram.

The daemon (`newswatch run`) polls `--sources` farm feeds every `--interval` seconds after a
cold `crawl --once` has filled its database. During `--duration` seconds the harness
publishes `--items` matching stories, each into a random feed at a random moment (uniform
over the window), while the rest of the farm keeps changing (`--changed` of the feeds per
interval). For each story it records:

- published: when the farm added it;
- polled: when the farm first sent a feed document containing it (the poll that fetched it);
- sent: when the fake Bot API received the `sendMessage` carrying its link.

poll -> send is the daemon's own delay (parse, store, dispatch, outbox, Telegram client);
publication -> send adds the wait for the next poll, up to one interval (about half on
average). The harness waits at most `interval + 60` s after the window for the last sends;
a story not delivered by then is reported as merged when the daemon stored it in the same
story cluster as one that did alert (the farm writes its matching stories from a few
templates, so some are near-duplicates of earlier ones: one event, one alert), and as
missing otherwise.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from bench.harness import (Database, DaemonRun, FarmProcess, crawl_once, log, markdown, percentile, sends_by_url,
                           start_bot_api, subscribe_chats, write_config)


def main(args) -> int:
    work = Path(args.out).resolve() / f"latency-n{args.sources}"
    work.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(args.seed)
    farm = FarmProcess(args.sources, seed=args.seed, slow=0.0, failing=0.0, log_dir=work).start()
    bot = start_bot_api()
    try:
        config = write_config(work, farm.base, args.sources, api_url=bot.api_base, interval=args.interval,
                              concurrency=args.concurrency)
        subscribe_chats(config, args.chats)
        db = Database(work / "newswatch.db")
        log("latency: cold crawl --once")
        crawl_once(config, bot.token, work, "cold")
        daemon = DaemonRun(config, bot.token, work, "run").start()
        try:
            farm.reset()
            daemon.wait_round(farm, db, args.sources, timeout=600)
            log(f"latency: publishing {args.items} stories over {args.duration:.0f}s")
            moments = sorted(rnd.uniform(0, args.duration) for _ in range(args.items))
            feeds = [rnd.randrange(args.sources) for _ in moments]
            start = time.monotonic()
            next_advance = start + args.interval
            published: list[dict] = []
            for moment, feed in zip(moments, feeds):
                target = start + moment
                while (now := time.monotonic()) < target:
                    if now >= next_advance:
                        farm.advance(args.changed, 0.0)
                        next_advance += args.interval
                    if not daemon.alive():
                        raise RuntimeError("the daemon exited during the latency run")
                    time.sleep(min(max(min(target, next_advance) - now, 0.01), 1.0))
                published.append(farm.call("publish", {"feed": feed, "count": 1}))
            expected = len(published) * args.chats
            deadline = time.monotonic() + args.interval + 60
            while time.monotonic() < deadline:
                if sum(len(v) for v in sends_by_url(bot).values()) >= expected:
                    break
                time.sleep(0.5)
        finally:
            daemon.stop()
        tracked = farm.call("tracked")
        by_url = sends_by_url(bot)
        rows = []
        poll_to_send: list[float] = []
        pub_to_send: list[float] = []
        pub_to_poll: list[float] = []
        missing = merged = 0
        keys = {k for p in published for k in p["keys"]}
        for key in keys:
            item = tracked[key]
            sends = [t for t, _chat in by_url.get(item["url"], []) if t >= item["published"]]
            if not sends or item["first_served"] is None:
                if not sends and db.merged_into_alert(item["url"]):
                    merged += 1
                elif not sends:
                    missing += args.chats
                continue
            pub_to_poll.append(item["first_served"] - item["published"])
            for when in sends:
                poll_to_send.append(when - item["first_served"])
                pub_to_send.append(when - item["published"])
        for label, values in (("publication → poll", pub_to_poll), ("poll → sendMessage", poll_to_send),
                              ("publication → sendMessage", pub_to_send)):
            rows.append([label, len(values), f"{percentile(values, 0.5):.2f}", f"{percentile(values, 0.95):.2f}",
                         f"{max(values):.2f}" if values else "–"])
    finally:
        bot.stop()
        farm.stop()
    text = (f"### Latency: {args.items} matching stories published at random moments over {args.duration:.0f} s, "
            f"{args.sources:,} sources polled every {args.interval} s, {args.chats} chat(s)\n\n"
            + markdown(["span", "alerts", "p50 s", "p95 s", "max s"], rows)
            + f"\n\nmerged into an earlier alert of the same event (story clusters): {merged}; "
            + f"missing (neither delivered within interval + 60 s nor merged): {missing}\n")
    (work / "latency.md").write_text(text)
    (work / "latency.json").write_text(json.dumps({"poll_to_send": poll_to_send, "pub_to_send": pub_to_send,
                                                   "pub_to_poll": pub_to_poll, "missing": missing,
                                                   "merged": merged}))
    print(text)
    return 0
