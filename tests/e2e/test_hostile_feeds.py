"""Hostile feeds through the real ingest path (`newswatch crawl --once`), one fault per run.

Each run polls one hostile source beside a healthy one carrying the seed story. The pass
must end within a time bound, the daemon's peak memory stays within a bound, the fault is
logged once with the source named, and the healthy source's alert still goes out.
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from tests.e2e.conftest import ROOT, write_config
from tests.e2e.test_skeleton import SEED
from tests.fakes.feed_server import FeedItem, rss

TIMEOUT = 4  # crawler.timeout in these configs: the bound on any one request
MAX_WALL = 25.0  # seconds for a whole pass, start-up included
MAX_RSS_MB = 400


def _gzip_bomb(size: int) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as gz:
        chunk = b"\0" * (1 << 20)
        for _ in range(size >> 20):
            gz.write(chunk)
    return out.getvalue()


def _entity_feed(value_kb: int, refs: int) -> bytes:
    value = "x" * (value_kb * 1024)
    title = "&e;" * refs
    return (f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY e "{value}">]>'
            f'<rss version="2.0"><channel><title>t</title><item><title>{title}</title>'
            f"<link>https://bomb.example/1</link></item></channel></rss>").encode()


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<rss version="2.0"><channel><title>laughs</title><item><title>&lol9;</title>
<link>https://laughs.example/1</link></item></channel></rss>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<rss version="2.0"><channel><title>xxe</title><item><title>leak &xxe; here</title>
<link>https://xxe.example/1</link></item></channel></rss>"""

EUC_KR_AS_UTF8 = ('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>연합</title>'
                  "<item><title>북한 김정은 정상회담 제안</title><link>https://euckr.example/1</link>"
                  "<description>대북제재 완화 논의</description></item></channel></rss>").encode("euc-kr")

CONTROL_CHARS = (b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>c</title>'
                 b"<item><title>Pyongyang\x00 talks\x07 resume\x1b[31m</title><link>https://ctrl.example/1</link>"
                 b"</item></channel></rss>")


@dataclass
class Case:
    name: str
    setup: dict
    log_words: tuple[str, ...]  # what the one log line about the source must say


CASES = [
    Case("gzip-bomb", {"body": lambda: _gzip_bomb(512 << 20), "headers": {"Content-Encoding": "gzip"}}, ("too large",)),
    Case("huge-50mb", {"body": lambda: rss([FeedItem(f"Item {i} " + "x" * 400, f"https://huge.example/{i}")
                                            for i in range(110_000)])}, ("too large",)),
    Case("drip-fed", {"body": b"<", "forever": True}, ("timed out",)),
    Case("redirect-loop", {"body": b"", "status": 302, "headers": {"Location": "/hostile.xml"}}, ("redirect",)),
    Case("entity-quadratic", {"body": _entity_feed(50, 50_000)}, ("entity",)),
    Case("billion-laughs", {"body": BILLION_LAUGHS}, ("entity",)),
    Case("external-entity", {"body": XXE}, ("entity",)),
    Case("euc-kr-declared-utf8", {"body": EUC_KR_AS_UTF8}, ("cp949",)),
    Case("control-chars", {"body": CONTROL_CHARS}, ("illegal",)),
]


def _watch_peak_rss_mb(proc: subprocess.Popen, limit: float = 120) -> float:
    """Wait for the process, sampling its own high-water RSS (VmHWM) until it exits."""
    peak = 0.0
    deadline = time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with open(f"/proc/{proc.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) / 1024)
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.02)
    proc.wait(5)
    return peak


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_feed_is_bounded_and_isolated(case: Case, tmp_path, feeds) -> None:
    _one_hostile_pass(case, tmp_path, feeds)


ON_POSTGRES = [c for c in CASES if c.name in ("gzip-bomb", "euc-kr-declared-utf8")]


@pytest.mark.parametrize("case", ON_POSTGRES, ids=[c.name for c in ON_POSTGRES])
def test_hostile_feed_on_postgresql(case: Case, tmp_path, feeds, postgres_url) -> None:
    """The same bounds with the stories stored in PostgreSQL: a body refused before parsing,
    and text mis-declared as UTF-8 (read as cp949)."""
    _one_hostile_pass(case, tmp_path, feeds, database=postgres_url)


def _one_hostile_pass(case: Case, tmp_path, feeds, database: str | None = None) -> None:
    """`newswatch crawl --once` over the hostile source and the healthy one, and what it must show."""
    setup = {k: (v() if callable(v) else v) for k, v in case.setup.items()}
    feeds.set("/hostile.xml", **setup)
    feeds.set_feed("/good.xml", [SEED])
    config = write_config(tmp_path, [
        {"name": case.name, "url": feeds.url("/hostile.xml"), "kind": "feed", "interval": 60},
        {"name": "good", "url": feeds.url("/good.xml"), "kind": "feed", "interval": 60},
    ], crawler={"timeout": TIMEOUT}, database=database)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    started = time.monotonic()
    with open(tmp_path / "out", "w") as out_file, open(tmp_path / "err", "w") as err_file:
        proc = subprocess.Popen([sys.executable, "-m", "newswatch.cli", "crawl", "--once", "-c", str(config)],
                                cwd=ROOT, env=env, stdout=out_file, stderr=err_file)
        peak_mb = _watch_peak_rss_mb(proc)
    wall = time.monotonic() - started
    out, err = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    assert proc.returncode == 0, err[-2000:]
    assert peak_mb < MAX_RSS_MB, f"{case.name}: peak RSS {peak_mb:.0f} MB"
    assert "Kim Jong Un arrives in Beijing" in out, "the healthy source's alert did not go out"
    assert wall < MAX_WALL, f"{case.name}: pass took {wall:.1f}s"
    about = [line for line in err.splitlines() if f"source {case.name}:" in line]
    assert len(about) == 1, f"{case.name}: expected one log line naming the source, got {about}\n{err[-2000:]}"
    assert any(word in about[0].lower() for word in case.log_words), about[0]
    assert "root:" not in out and "/bin/bash" not in out  # nothing from /etc/passwd
    assert "Traceback" not in err
    print(f"\n{case.name}: {wall:.1f}s wall, {peak_mb:.0f} MB peak RSS; log: {about[0].split(': ', 2)[-1][:150]}")
