"""End to end on PostgreSQL (skipped, saying why, without a server): a standby role process takes
over from an active one killed with `kill -9` in the middle of its work, and nothing is lost.

- The active `bot` is killed while it delivers a burst of alerts (1,000: 100 stories for 10
  chats, sent at `RATE` a second, so the burst takes seconds): the standby bot is active within
  `TAKE_OVER` seconds and delivers the rest. Every alert arrives, in order; repeats are bounded
  by what can be in flight (`IN_FLIGHT_MAX`, as for a single daemon killed and restarted).
- The active `dispatch` is killed while it matches a batch of stored stories (400 for 3 chats):
  the standby dispatcher finishes it. Every (chat, story) has exactly one outbox row, and the
  bot delivers each alert exactly once.

Each test prints how long the take-over took: until the standby said it is active, and until
its work went on (a message sent, an outbox row queued).
"""

from __future__ import annotations

import time
from collections import Counter

from tests.e2e.conftest import (
    TAKE_OVER,
    active_process,
    assert_clean,
    query,
    take_over,
    wait_until,
    write_config,
)
from tests.e2e.test_crash_delivery import (
    FAST,
    IN_FLIGHT_MAX,
    check_burst,
    delivered,
    fill_burst,
)

RATE = 250  # messages a second the bot sends (telegram.overall_per_second)


def _start(daemon_factory, config, *commands: str) -> dict[str, list]:
    """The role processes (`commands`, in order); each one's first process takes its role's lock."""
    started: dict[str, list] = {}
    for command in commands:
        mine = started.setdefault(command, [])
        mine.append(daemon_factory(config, command=command, name=f"{command}{len(mine) + 1}").start())
    for command, processes in started.items():
        active = active_process(processes, command)
        for standby in processes:
            if standby is not active:
                wait_until(lambda p=standby: "standing by" in p.output(), what=f"the second {command} standing by")
    return started


def _config(tmp_path, bot_api, postgres_url, **rates):
    """A config without sources on `postgres_url`, the bot sending as fast as allowed (or `rates`)."""
    return write_config(tmp_path, [], api_url=f"{bot_api.url}/bot", database=postgres_url,
                        telegram={"api_url": f"{bot_api.url}/bot", "poll_timeout": 1, **FAST, **rates})


def _outbox(postgres_url) -> list[tuple]:
    """(chat, story, rows, rows sent) of every (chat, story) in the outbox."""
    return query(postgres_url, "SELECT chat_id, story_id, COUNT(*), COUNT(*) FILTER (WHERE state = 'sent')"
                               " FROM outbox GROUP BY chat_id, story_id")


def _stop(processes: list) -> None:
    """Stop the processes still running; each stops cleanly, with nothing amiss in its output."""
    survivors = [p for p in processes if p.proc.poll() is None]
    for process in survivors:
        assert process.stop() == 0
    assert_clean(*survivors)


def test_standby_bot_takes_over_mid_burst(tmp_path, bot_api, daemon_factory, postgres_url) -> None:
    chats, stories = list(range(500, 510)), 100
    total = len(chats) * stories
    bots = _start(daemon_factory, _config(tmp_path, bot_api, postgres_url, overall_per_second=RATE), "bot", "bot")["bot"]
    fill_burst(postgres_url, chats, stories)
    wait_until(lambda: len(bot_api.sent) >= total // 4, timeout=60, what="a quarter of the burst")

    moved = take_over(bots, "bot", at_kill=lambda: len(bot_api.sent))
    at_kill = moved.at_kill
    assert at_kill < total, "the kill came too late to test anything"
    wait_until(lambda: len(bot_api.sent) > at_kill, timeout=TAKE_OVER, what="a message from the standby bot")
    resumed = time.monotonic() - moved.killed
    wait_until(lambda: delivered(bot_api) >= total, timeout=60, what="the rest of the burst")
    _stop(bots)

    repeats = check_burst(bot_api, chats, stories)
    print(f"\nbot killed after {at_kill} of {total} sent; the standby was active {moved.seconds:.2f}s and sent "
          f"{resumed:.2f}s after the kill; repeated: {repeats}")
    assert repeats <= IN_FLIGHT_MAX
    rows = _outbox(postgres_url)
    assert len(rows) == total and all(n == sent == 1 for _, _, n, sent in rows)


def test_standby_dispatcher_takes_over_mid_batch(tmp_path, bot_api, daemon_factory, postgres_url) -> None:
    chats, stories = list(range(500, 503)), 400
    total = len(chats) * stories
    roles = _start(daemon_factory, _config(tmp_path, bot_api, postgres_url), "dispatch", "dispatch", "bot")
    fill_burst(postgres_url, chats, stories, queue=False)

    def queued() -> int:
        return query(postgres_url, "SELECT COUNT(*) FROM outbox")[0][0]

    wait_until(lambda: queued() >= total // 5, timeout=60, what="a fifth of the stories matched")
    moved = take_over(roles["dispatch"], "dispatch", at_kill=queued)
    at_kill = moved.at_kill
    assert at_kill < total, "the kill came too late to test anything"
    wait_until(lambda: queued() > at_kill, timeout=TAKE_OVER, what="a row queued by the standby dispatcher")
    resumed = time.monotonic() - moved.killed
    wait_until(lambda: delivered(bot_api) >= total, timeout=60, what="every alert delivered")
    _stop([*roles["dispatch"], *roles["bot"]])

    print(f"\ndispatch killed after {at_kill} of {total} rows queued; the standby was active {moved.seconds:.2f}s "
          f"and queued {resumed:.2f}s after the kill")
    rows = _outbox(postgres_url)
    assert len(rows) == total and all(n == sent == 1 for _, _, n, sent in rows)
    assert Counter(chat for chat, *_ in rows) == dict.fromkeys(chats, stories)
    assert check_burst(bot_api, chats, stories) == 0
    assert len(bot_api.sent) == total
