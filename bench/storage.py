"""`python -m bench store`: does the story store slow down as it grows?

For each size (100,000 and 1,000,000 stories by default) a database is filled through
`StoryStore.add_stories` (batches of 2,000 realistic stories: ~90-character titles,
300-3,000 characters of text, unique URLs and GUIDs over 1,000 sources), then each
operation the daemon does per poll is timed `--ops` times on the full store:

- poll with news: `record_success` for one source with 30 stories, 2 of them new (the
  insert path plus 28 duplicate look-ups by id, URL and GUID, in one transaction);
- poll, nothing new: `record_success` with 30 stories, all already stored (dedup only);
- 304: `record_success` with no stories (the fetch state update alone);
- `fetch_state` of a source (read before every request);
- `known_urls` of 50 URLs (articles already fetched; its `url != ''` lets SQLite use the
  partial unique index on `url`);
- `stories_after` from a cursor near the end (what the dispatcher reads).

Times are per operation, median and p95, on one core; the ratio column compares the
largest store with the smallest. The query plans of the look-ups are printed to show the
indexes in use. (The duplicate checks of `INSERT OR IGNORE` go through the unique
indexes on `id`, `url` and `(source, guid)` directly, whatever the planner says.)
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.harness import log, markdown, percentile
from newswatch.storage import open_storage
from newswatch.crawler.story import Story, story_id

_WORDS = ("markets rose after the central bank held rates steady while officials said the economy would grow "
          "faster than expected this year despite weak exports and a slowdown in construction").split()
SOURCES = 1000
BATCH = 2000


def make_story(rnd: random.Random, serial: int, now: datetime) -> Story:
    source = f"source-{serial % SOURCES:04d}"
    url = f"https://news{serial % 97}.example.invalid/{serial % 13}/article-{serial}-{rnd.getrandbits(32):08x}"
    title = " ".join(rnd.choice(_WORDS) for _ in range(14))[:90]
    text = " ".join(rnd.choice(_WORDS) for _ in range(rnd.randint(50, 450)))
    return Story(id=story_id(source, url, ""), source=source, url=url, title=title, text=text,
                 published=now - timedelta(seconds=serial), guid=f"guid-{serial}", language="en")


def _timed(fn, ops: int) -> list[float]:
    times = []
    for i in range(ops):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return times


def measure(size: int, args, work: Path) -> dict:
    path = work / f"store-{size}.db"
    for stale in work.glob(f"store-{size}.db*"):
        stale.unlink()
    store = open_storage(path).stories
    conn = store.conn
    rnd = random.Random(args.seed)
    now = datetime.now(UTC)
    fill_start = time.perf_counter()
    kept: list[Story] = []
    rates = []
    for first in range(0, size, BATCH):
        batch = [make_story(rnd, serial, now) for serial in range(first, min(size, first + BATCH))]
        t0 = time.perf_counter()
        store.add_stories(batch, now)
        rates.append(len(batch) / (time.perf_counter() - t0))
        kept.extend(rnd.sample(batch, min(len(batch), 40)))
        if first % 100_000 == 0 and first:
            log(f"store: {first:,} stories")
    fill = time.perf_counter() - fill_start
    serial = size
    ops = args.ops

    def with_news(i: int) -> None:
        nonlocal serial
        old = rnd.sample(kept, 28)
        new = [make_story(rnd, serial + k, now) for k in range(2)]
        serial += 2
        store.record_success(new[0].source, at=now, status=200, etag='"x"', last_modified=None, stories=new + old)

    def nothing_new(i: int) -> None:
        old = rnd.sample(kept, 30)
        store.record_success(old[0].source, at=now, status=200, etag='"y"', last_modified=None, stories=old)

    def not_modified(i: int) -> None:
        store.record_success(f"source-{i % SOURCES:04d}", at=now, status=304, etag=None, last_modified=None, stories=[])

    def fetch_state(i: int) -> None:
        store.fetch_state(f"source-{i % SOURCES:04d}")

    def known(i: int) -> None:
        store.known_urls([s.url for s in rnd.sample(kept, 25)] + [f"https://x.invalid/{i}-{k}" for k in range(25)])

    top = conn.execute("SELECT MAX(seq) FROM stories").fetchone()[0]

    def after(i: int) -> None:
        store.stories_after(top - 200, 100)

    result = {"size": size, "fill_s": fill, "fill_rate_first": sum(rates[:5]) / max(1, len(rates[:5])),
              "fill_rate_last": sum(rates[-5:]) / max(1, len(rates[-5:]))}
    for name, fn in (("with_news", with_news), ("nothing_new", nothing_new), ("not_modified", not_modified),
                     ("fetch_state", fetch_state), ("known_urls", known),
                     ("stories_after", after)):
        times = _timed(fn, ops)
        result[name] = (percentile(times, 0.5), percentile(times, 0.95))
    plans = {}
    for label, sql, params in (
        ("known_urls (StoryStore.known_urls)", "SELECT url FROM stories WHERE url != '' AND url IN (?,?)", ("a", "b")),
        ("find by id (StoryStore.find)", "SELECT * FROM stories WHERE id = ?", ("a",)),
        ("find by URL (StoryStore.find)", "SELECT * FROM stories WHERE url != '' AND url = ?", ("a",)),
        ("stories_after", "SELECT * FROM stories WHERE seq > ? ORDER BY seq LIMIT ?", (1, 1)),
        ("fetch_state", "SELECT * FROM fetch_state WHERE source = ?", ("s",)),
    ):
        plans[label] = "; ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
    result["plans"] = plans
    conn.close()
    result["db_mb"] = sum(p.stat().st_size for p in work.glob(f"store-{size}.db*")) / 1e6
    return result


def main(args) -> int:
    work = Path(args.out).resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.stories:
        log(f"store: filling {size:,} stories")
        results.append(measure(size, args, work))
    ops = ["with_news", "nothing_new", "not_modified", "fetch_state", "known_urls", "stories_after"]
    labels = {"with_news": "poll, 2 new of 30", "nothing_new": "poll, 0 new of 30", "not_modified": "304 (state only)",
              "fetch_state": "fetch_state", "known_urls": "known_urls (50)",
              "stories_after": "stories_after (100)"}
    headers = ["operation"] + [f"{r['size']:,} stored: p50 / p95 ms" for r in results]
    if len(results) > 1:
        headers.append(f"p50 ratio {results[-1]['size']:,} / {results[0]['size']:,}")
    rows = []
    for op in ops:
        row: list[object] = [labels[op]]
        for r in results:
            row.append(f"{r[op][0] * 1e3:.2f} / {r[op][1] * 1e3:.2f}")
        if len(results) > 1:
            row.append(f"{results[-1][op][0] / max(1e-12, results[0][op][0]):.2f}x")
        rows.append(row)
    fill_rows = [[f"{r['size']:,}", f"{r['fill_s']:.0f}", f"{r['fill_rate_first']:,.0f}", f"{r['fill_rate_last']:,.0f}",
                  f"{r['db_mb']:,.0f}"] for r in results]
    plan_rows = [[label, plan] for label, plan in results[-1]["plans"].items()]
    text = ("### Story store: per-poll operations as the store grows (one core)\n\n" + markdown(headers, rows)
            + "\n\nFilling (add_stories, batches of 2,000):\n\n"
            + markdown(["stories", "fill s", "first batches stories/s", "last batches stories/s", "database MB"], fill_rows)
            + "\n\nQuery plans:\n\n" + markdown(["look-up", "plan"], plan_rows) + "\n")
    (work / "store.md").write_text(text)
    print(text)
    return 0
