"""`python -m bench.probe run -c CONFIG`: the newswatch command line, plus a probe of its loop.

Exactly `python -m newswatch.cli ...`, except that while the daemon runs, a task in its event
loop appends a JSON line to `$BENCH_PROBE_FILE` every `$BENCH_PROBE_EVERY` seconds (5):
the time, how many asyncio tasks exist (`asyncio.all_tasks()`), threads, and open file
descriptors. Task counts cannot be seen from outside the process; everything else the
harness also reads from /proc. Used by the soak benchmark to show that tasks do not pile up.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time


async def _probe(path: str, every: float) -> None:
    with open(path, "a", buffering=1) as out:
        while True:
            tasks = asyncio.all_tasks()
            names: dict[str, int] = {}
            for task in tasks:
                coro = task.get_coro()
                name = getattr(coro, "__qualname__", type(coro).__name__)
                names[name] = names.get(name, 0) + 1
            out.write(json.dumps({"t": time.time(), "tasks": len(tasks), "threads": threading.active_count(),
                                  "fds": len(os.listdir("/proc/self/fd")),
                                  "top": sorted(names.items(), key=lambda kv: -kv[1])[:8]}) + "\n")
            await asyncio.sleep(every)


def main() -> int:
    from newswatch import cli, daemon

    path = os.environ.get("BENCH_PROBE_FILE")
    every = float(os.environ.get("BENCH_PROBE_EVERY", "5"))
    original = daemon.Daemon.run

    async def run(self, stop=None):
        probe = asyncio.create_task(_probe(path, every)) if path else None
        try:
            return await original(self, stop)
        finally:
            if probe is not None:
                probe.cancel()

    daemon.Daemon.run = run  # type: ignore[method-assign]
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
