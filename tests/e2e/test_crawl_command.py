"""`newswatch crawl` is one pass over the sources, then exit, with or without `--once`."""

from __future__ import annotations

import subprocess
import sys

from tests.e2e.conftest import ROOT, write_config
from tests.e2e.test_skeleton import SEED


def _crawl(config, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "newswatch.cli", "crawl", *flags, "-c", str(config)],
                          cwd=ROOT, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)


def test_crawl_runs_one_pass_without_a_flag(tmp_path, feeds) -> None:
    feeds.set_feed("/wire.xml", [SEED])
    config = write_config(tmp_path, [{"name": "wire", "url": feeds.url("/wire.xml"), "kind": "feed", "interval": 60}])
    proc = _crawl(config)
    assert proc.returncode == 0, proc.stderr
    assert "Kim Jong Un arrives in Beijing" in proc.stdout and "sources: 1  ok: 1" in proc.stdout
    assert len(feeds.hits_for("/wire.xml")) == 1

    proc = _crawl(config, "--once")  # the former required flag is still accepted
    assert proc.returncode == 0, proc.stderr
    assert "unchanged (304): 1" in proc.stdout
    assert len(feeds.hits_for("/wire.xml")) == 2
