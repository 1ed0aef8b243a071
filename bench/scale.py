"""`python -m bench scale`: one poll cycle of N feeds on SQLite, on PostgreSQL, and with 1, 2, 4 workers.

The farm serves its feeds from `--hosts` loopback addresses (500 by default, 40 feeds each at
20,000), which the daemon treats as hosts: a worker leases a host with its due sources, so
workers share the work host by host, as they would on real sources.

Every configuration starts from the same cold state, made once (`prepare`): `--chats` chats
subscribed to every topic, and `newswatch crawl --once` on SQLite storing every feed's items;
on PostgreSQL (`--postgres`) that file is copied by `newswatch store copy` into a template
database. Then each configuration gets a fresh feed farm (same seed, port and validators: the
same feeds, answering the stored ETags, and the same changes), a fresh fake Bot API and its own
copy of the cold database (the file, or CREATE DATABASE ... TEMPLATE):

1. the farm changes `--changed` of the feeds (5% by default), then the processes start and
   their first round is the measured cycle, from the farm's first request until every source
   was answered, every story dispatched, nothing is due in the outbox and every process has
   been idle for a second. Wall time, and CPU of all the processes (their trees, sampled from
   /proc), over that window; and the time until every source was answered and every story
   dispatched (the alerts' delivery is paced as Telegram requires, 30 messages a second).

The cycle's new items are real stories (`--texts`, by default ../shared/eval/dev.jsonl when
it is there: a third of them about the Koreas), syndicated as wire copy spreads: about half
the events in one feed, the others in 2-6 feeds, each copy under its own link, some retitled
or edited (`bench.stories.syndicate`). Without them the items are synthetic and `--matching`
of them match.

The configurations: `newswatch run` on SQLite, `newswatch run` on PostgreSQL, and on
PostgreSQL `newswatch worker` x1, x2, x4 beside one `dispatch` and one `bot`. The alerts must
be the same in every one: every matching story reaches every chat, sent or as a copy of an
event already sent (`coverage`), and the (chat, event) pairs reached are the same set in
every configuration; the bench says so, or names the differences and exits 1.
"""

from __future__ import annotations

import json
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.harness import (
    ROOT,
    DaemonRun,
    Database,
    FarmProcess,
    crawl_once,
    log,
    markdown,
    _env,
    start_bot_api,
    subscribe_chats,
)
from bench.harness import write_config as write_farm_config
from bench.stories import DEV

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
FARM_INSTANCE = 1  # every farm of a run answers the validators the cold crawl stored
CONFIGURATIONS = [  # label, database, processes
    ("run, SQLite", "sqlite", ["run"]),
    ("run, PostgreSQL", "postgresql", ["run"]),
    ("1 worker, PostgreSQL", "postgresql", ["worker", "dispatch", "bot"]),
    ("2 workers, PostgreSQL", "postgresql", ["worker", "worker", "dispatch", "bot"]),
    ("4 workers, PostgreSQL", "postgresql", ["worker", "worker", "worker", "worker", "dispatch", "bot"]),
]


class PostgresDatabase(Database):
    """`Database`'s looks at the daemon's progress, on a PostgreSQL schema."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        import psycopg
        from newswatch.crawler.postgres import translate

        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                return [tuple(r) for r in conn.execute(translate(sql, with_params=bool(args)), args or None)]
        except psycopg.Error as exc:  # the tables are not made yet: as sqlite3's error for the callers
            import sqlite3

            raise sqlite3.Error(str(exc)) from None


def database_url(server: str, name: str) -> str:
    """The URL of database `name` on the server of `server`."""
    return urlunsplit(urlsplit(server)._replace(path=f"/{name}"))


def create_database(server: str, name: str, template: str | None = None) -> str:
    """A new database on `server` (a file-level copy of `template` when given); its URL."""
    import psycopg

    with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    url = database_url(server, name)
    if not template:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    return url


def drop_database(server: str, name: str) -> None:
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass
class Cold:
    """The state every configuration starts from: the farm's feeds crawled once (`crawl --once`
    on SQLite), and on PostgreSQL a database made from it by `newswatch store copy`, which each
    PostgreSQL configuration clones (CREATE DATABASE ... TEMPLATE)."""

    file: Path
    port: int
    crawl_wall: float
    stories: int
    template: str | None = None
    copy_wall: float = 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(args, work: Path, prefix: str, postgres: bool) -> Cold:
    """Crawl the farm once into an SQLite file and, with `postgres`, copy it into a template
    database (the farm listens on one port throughout, so the sources are the same)."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    farm = FarmProcess(args.feeds, seed=args.seed, slow=0.0, failing=0.0, log_dir=work, texts=args.texts,
                       instance=FARM_INSTANCE, port=port, hosts=args.hosts).start()
    bot = start_bot_api()
    try:
        config = write_farm_config(work, farm.base, args.feeds, api_url=bot.api_base, interval=args.interval,
                                   concurrency=args.concurrency, hosts=args.hosts)
        subscribe_chats(config, args.chats)
        log(f"cold: crawl --once of {args.feeds} feeds on SQLite")
        crawled = crawl_once(config, bot.token, work, "cold")
    finally:
        bot.stop()
        farm.stop()
    cold = Cold(work / "newswatch.db", port, crawled.wall, Database(work / "newswatch.db").stories())
    log(f"cold: {cold.stories} stories in {cold.crawl_wall:.0f}s")
    if postgres:
        cold.template = f"{prefix}_cold"
        target = create_database(args.postgres, cold.template)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "newswatch.cli", "store", "copy", "--from", str(cold.file), "--to", target],
                       cwd=ROOT, env=_env(), check=True, stdout=subprocess.DEVNULL)
        cold.copy_wall = time.perf_counter() - started
        log(f"cold: store copy to PostgreSQL in {cold.copy_wall:.0f}s")
    return cold


def wait_cycle(runs: list[DaemonRun], farm: FarmProcess, db: Database, expected: int, timeout: float) -> dict:
    """Until every source was answered, every story dispatched, nothing is due and every
    process was idle for a second; the window of the work (`wait_round` of several processes)."""
    deadline = time.monotonic() + timeout
    timed_out = False
    dispatched = None
    while True:
        for run in runs:
            if not run.alive():
                raise RuntimeError(f"{run.label} exited; see {run.log_dir / (run.label + '.err')}")
        stats = farm.stats()
        fetched = stats["requests"] >= expected and stats["in_flight"] == 0
        if dispatched is None and fetched and db.dispatched():
            dispatched = time.time()
        if fetched and db.settled() and all(run.sampler.idle_for(1.0) for run in runs):
            break
        if time.monotonic() > deadline:
            timed_out = True
            break
        time.sleep(0.25)
    first = stats["first_request"] or min(run.started for run in runs)
    end = max([stats["last_response"] or first] + [run.sampler.last_busy(first) for run in runs])
    return {"stats": stats, "first": first, "end": end, "dispatched": min(dispatched or end, end),
            "timed_out": timed_out}


def measure(label: str, kind: str, commands: list[str], args, work: Path, cold: Cold, database: str) -> dict:
    """One configuration's cycle, from a copy of the cold state (`database`: the PostgreSQL
    database to make from the template, for a PostgreSQL configuration)."""
    work.mkdir(parents=True, exist_ok=True)
    farm = FarmProcess(args.feeds, seed=args.seed, slow=0.0, failing=0.0, log_dir=work, texts=args.texts,
                       instance=FARM_INSTANCE, port=cold.port, hosts=args.hosts).start()
    bot = start_bot_api()
    try:
        extra = None
        if kind == "postgresql":
            url = create_database(args.postgres, database, template=cold.template)
            extra = {"storage": {"url": url}}
        config = write_farm_config(work, farm.base, args.feeds, api_url=bot.api_base, interval=args.interval,
                                   concurrency=args.concurrency, extra=extra, hosts=args.hosts)
        if kind == "sqlite":
            source, copy = sqlite3.connect(cold.file), sqlite3.connect(work / "newswatch.db")
            source.backup(copy)
            source.close(), copy.close()
        db: Database = PostgresDatabase(url) if kind == "postgresql" else Database(work / "newswatch.db")
        farm.reset()
        advanced = farm.advance(args.changed, args.matching)
        expected = args.feeds - db.backing_off()
        sends_before = len(bot.sent)
        runs = [DaemonRun(config, bot.token, work, f"{command}{i}", command=command)
                for i, command in enumerate(commands, 1)]
        for run in runs:
            run.start(bot)
        try:
            done = wait_cycle(runs, farm, db, expected, args.cycle_timeout)
            sends = bot.sent[sends_before:]
            first, end = done["first"], max([done["end"]] + [e["time"] for e in sends])
            cpu = {run.label: run.sampler.cpu_at(end) - run.sampler.cpu_at(first) for run in runs}
        finally:
            for run in runs:
                run.stop()
        reach = coverage(db.reach(), farm.call("events"))
        result = {"label": label, "wall": end - first, "dispatched": done["dispatched"] - first,
                  "cpu": sum(cpu.values()), "cpu_by_process": cpu, "requests": done["stats"]["requests"],
                  "advanced": advanced, "sends": len(sends), "timed_out": done["timed_out"],
                  "workers": commands.count("worker") or None, **reach}
        log(f"{label}: cycle {result['wall']:.1f}s wall, {result['cpu']:.1f}s CPU, {len(sends)} sends, "
            f"{len(reach['matched_events'])} matching events, {reach['lost']} (chat, story) lost")
        return result
    finally:
        bot.stop()
        farm.stop()
        if kind == "postgresql":
            drop_database(args.postgres, database)


def coverage(reach: dict, events: dict[str, int]) -> dict:
    """Whether every matching story reached every chat, and as which event.

    A chat is reached by a matching story when the story was sent to it, or when the story joined
    the cluster of a story sent to it (another outlet's report of an event already alerted).
    Which outlet's copy leads a cluster depends on the order the processes fetched the feeds in,
    so configurations are compared by event: the (chat, event) pairs reached, which must be the
    same everywhere, and none lost. `events` maps a real story's link to its event (the farm's);
    a synthetic story is its own event."""
    matched: dict[str, str] = reach["matched"]
    cluster_of: dict[str, str] = reach["clusters"]
    sent_to: dict[int, set[str]] = {int(chat): set() for chat in reach["chats"]}
    for chat, story in reach["sent"]:
        sent_to.setdefault(int(chat), set()).add(story)
    reached: set[tuple[int, str]] = set()
    lost = repeats = 0
    for chat, stories in sent_to.items():
        clusters = [cluster_of.get(story, story) for story in stories]
        repeats += len(clusters) - len(set(clusters))
        alerted = set(clusters)
        for story, url in matched.items():
            if story in stories or cluster_of.get(story) in alerted:
                reached.add((chat, str(events.get(url, url))))
            else:
                lost += 1
    return {"matched_stories": len(matched), "matched_events": sorted({str(events.get(u, u)) for u in matched.values()}),
            "reached": sorted(reached), "lost": lost, "repeats": repeats,
            "alerted_events": len({str(events.get(matched.get(s, s), s)) for ss in sent_to.values() for s in ss})}


def report(results: list[dict], args, cold: Cold | None = None) -> str:
    rows = []
    for r in results:
        per_worker = f"{r['requests'] / r['wall'] / r['workers']:.0f}" if r["workers"] else ""
        cpu = ", ".join(f"{name} {seconds:.1f}" for name, seconds in r["cpu_by_process"].items())
        rows.append([r["label"], f"{r['dispatched']:.1f}", f"{r['wall']:.1f}", f"{r['cpu']:.1f}", cpu,
                     f"{r['requests'] / r['wall']:.0f}", per_worker, r["matched_stories"], r["sends"],
                     r["repeats"], r["lost"], "timed out" if r["timed_out"] else ""])
    table = markdown(["configuration", "fetched and dispatched (s)", "cycle wall (s)", "CPU (s)",
                      "CPU by process (s)", "feeds/s", "feeds/s per worker", "matching stories", "alerts sent",
                      "repeats", "lost", ""], rows)
    sets = {r["label"]: set(map(tuple, r["reached"])) for r in results}
    first = results[0]["label"]
    differences = [f"{label}: {len(found - sets[first])} more, {len(sets[first] - found)} fewer than {first}"
                   for label, found in sets.items() if found != sets[first]]
    lost = [f"{r['label']}: {r['lost']} lost" for r in results if r["lost"]]
    if differences or lost:
        verdict = "DIFFERENT alerts: " + "; ".join(differences + lost)
    else:
        verdict = (f"the same alerts in every configuration: each of the {len(results[0]['matched_events'])} "
                   f"matching events reached every chat ({len(sets[first])} (chat, event) pairs), none lost")
    advanced = results[0].get("advanced", {})
    mix = (f", {advanced['new_items']} new items carrying {advanced['events']} real stories"
           if "events" in advanced else "")
    start = ""
    if cold is not None:
        start = (f"Every configuration started from one cold crawl ({cold.stories:,} stories stored by `crawl --once` "
                 f"on SQLite in {cold.crawl_wall:.0f} s" + (f"; `store copy` to PostgreSQL took {cold.copy_wall:.0f} s"
                                                          if cold.template else "") + ").\n\n")
    return (f"{args.feeds} feeds on {args.hosts} hosts, {args.changed:.0%} changed per cycle{mix}, "
            f"{args.chats} chats\n\n{start}{table}\n\n{verdict}\n")


def postgres_unavailable(server: str) -> str:
    """Why the PostgreSQL server does not serve the bench ('' when it does)."""
    import psycopg

    try:
        psycopg.connect(server, connect_timeout=5).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at {server} does not answer ({str(exc).strip().splitlines()[-1]}): SQLite only"
    return ""


def main(args) -> int:
    out = Path(args.out)
    why = postgres_unavailable(args.postgres)
    if why:
        print(why, flush=True)
    if args.texts is None and DEV.is_file():
        args.texts = DEV
    if args.texts is None:
        print(f"{DEV} is not there: the new items are synthetic, {args.matching:.0%} of them matching", flush=True)
    wanted = [c for c in CONFIGURATIONS if c[1] == "sqlite" or not why]
    prefix = f"bench_{secrets.token_hex(4)}"
    cold = prepare(args, out / "cold", prefix, postgres=not why)
    try:
        results = [measure(label, kind, commands, args, out / f"c{i}", cold, f"{prefix}_c{i}")
                   for i, (label, kind, commands) in enumerate(wanted)]
    finally:
        if cold.template:
            drop_database(args.postgres, cold.template)
    (out / "results.json").write_text(json.dumps({"cold": vars(cold), "results": results}, indent=1, default=str))
    text = report(results, args, cold)
    print(text, flush=True)
    return 1 if "DIFFERENT" in text or any(r["timed_out"] for r in results) else 0
