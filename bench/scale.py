"""`python -m bench scale`: one poll cycle of N feeds on SQLite, on PostgreSQL, and with 1, 2, 4 workers.

Each configuration gets a fresh feed farm (same seed, so the same feeds and the same changes),
a fresh fake Bot API and a fresh database (a SQLite file, or a new schema on the PostgreSQL
server of `--postgres`), with `--chats` chats subscribed to every topic:

1. cold: `newswatch crawl --once` stores every feed's items;
2. the farm changes `--changed` of the feeds (5% by default), then the processes start and
   their first round is the measured cycle, from the farm's first request until every source
   was answered, every story dispatched, nothing is due in the outbox and every process has
   been idle for a second. Wall time, and CPU of all the processes (their trees, sampled from
   /proc), over that window.

The configurations: `newswatch run` on SQLite, `newswatch run` on PostgreSQL, and on
PostgreSQL `newswatch worker` x1, x2, x4 beside one `dispatch` and one `bot`. The alerts sent
(chat, story link) over the whole configuration must be the same set in every one; the bench
says so, or names the differences and exits 1.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

from bench.harness import (
    DaemonRun,
    Database,
    FarmProcess,
    crawl_once,
    log,
    markdown,
    sends_by_url,
    start_bot_api,
)
from bench.harness import write_config as write_farm_config

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
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


def new_schema(server: str) -> tuple[str, str]:
    """(schema, URL whose search_path is a new, empty schema on `server`)."""
    import psycopg

    schema = f"bench_{secrets.token_hex(5)}"
    with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in server else "?"
    return schema, f"{server}{separator}options=-csearch_path%3D{schema},public"


def drop_schema(server: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def subscribe(config_path: Path, chats: int) -> None:
    """Chats subscribed to every topic, as /start would leave them, in the config's database."""
    from newswatch.alerts.config import load_config
    from newswatch.alerts.subscriptions import Subscriptions

    from newswatch.storage import open_storage

    config = load_config(config_path)
    storage = open_storage(config.database)
    for chat_id in range(100, 100 + chats):
        Subscriptions(storage.alerts).start(chat_id, list(config.topics), kind="private", title=f"bench chat {chat_id}")
    storage.close()


def wait_cycle(runs: list[DaemonRun], farm: FarmProcess, db: Database, expected: int, timeout: float) -> dict:
    """Until every source was answered, every story dispatched, nothing is due and every
    process was idle for a second; the window of the work (`wait_round` of several processes)."""
    deadline = time.monotonic() + timeout
    timed_out = False
    while True:
        for run in runs:
            if not run.alive():
                raise RuntimeError(f"{run.label} exited; see {run.log_dir / (run.label + '.err')}")
        stats = farm.stats()
        fetched = stats["requests"] >= expected and stats["in_flight"] == 0
        if fetched and db.settled() and all(run.sampler.idle_for(1.0) for run in runs):
            break
        if time.monotonic() > deadline:
            timed_out = True
            break
        time.sleep(0.25)
    first = stats["first_request"] or min(run.started for run in runs)
    end = max([stats["last_response"] or first] + [run.sampler.last_busy(first) for run in runs])
    return {"stats": stats, "first": first, "end": end, "timed_out": timed_out}


def measure(label: str, kind: str, commands: list[str], args, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    farm = FarmProcess(args.feeds, seed=args.seed, slow=0.0, failing=0.0, log_dir=work).start()
    bot = start_bot_api()
    schema = None
    try:
        extra = None
        if kind == "postgresql":
            schema, url = new_schema(args.postgres)
            extra = {"storage": {"url": url}}
        config = write_farm_config(work, farm.base, args.feeds, api_url=bot.api_base, interval=args.interval,
                                   concurrency=args.concurrency, extra=extra)
        db: Database = PostgresDatabase(url) if schema else Database(work / "newswatch.db")
        subscribe(config, args.chats)
        log(f"{label}: cold crawl --once of {args.feeds} feeds")
        farm.reset()
        cold = crawl_once(config, bot.token, work, "cold")
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
        alerts = sorted({(chat, url) for url, hits in sends_by_url(bot).items() for _, chat in hits})
        result = {"label": label, "cold_wall": cold.wall, "wall": end - first, "cpu": sum(cpu.values()),
                  "cpu_by_process": cpu, "requests": done["stats"]["requests"], "changed": advanced["changed"],
                  "sends": len(sends), "alerts": alerts, "timed_out": done["timed_out"],
                  "workers": commands.count("worker") or None}
        log(f"{label}: cycle {result['wall']:.1f}s wall, {result['cpu']:.1f}s CPU, {len(sends)} sends")
        return result
    finally:
        bot.stop()
        farm.stop()
        if schema:
            drop_schema(args.postgres, schema)


def report(results: list[dict], args) -> str:
    rows = []
    for r in results:
        per_worker = f"{r['requests'] / r['wall'] / r['workers']:.0f}" if r["workers"] else ""
        cpu = ", ".join(f"{name} {seconds:.1f}" for name, seconds in r["cpu_by_process"].items())
        rows.append([r["label"], f"{r['wall']:.1f}", f"{r['cpu']:.1f}", cpu, f"{r['requests'] / r['wall']:.0f}",
                     per_worker, r["sends"], "timed out" if r["timed_out"] else ""])
    table = markdown(["configuration", "cycle wall (s)", "CPU (s)", "CPU by process (s)", "feeds/s",
                      "feeds/s per worker", "alerts in the cycle", ""], rows)
    sets = {r["label"]: set(map(tuple, r["alerts"])) for r in results}
    first = results[0]["label"]
    differences = [f"{label}: {len(found - sets[first])} more, {len(sets[first] - found)} fewer than {first}"
                   for label, found in sets.items() if found != sets[first]]
    verdict = ("the same alerts (chat, story) in every configuration: "
               f"{len(sets[first])}" if not differences else "DIFFERENT alerts: " + "; ".join(differences))
    return (f"{args.feeds} feeds, {args.changed:.0%} changed per cycle, {args.chats} chats\n\n{table}\n\n{verdict}\n")


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
    wanted = [c for c in CONFIGURATIONS if c[1] == "sqlite" or not why]
    results = [measure(label, kind, commands, args, out / f"c{i}") for i, (label, kind, commands) in enumerate(wanted)]
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    text = report(results, args)
    print(text, flush=True)
    return 1 if "DIFFERENT" in text or any(r["timed_out"] for r in results) else 0
