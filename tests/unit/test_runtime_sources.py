"""Sources added or switched from Telegram: validation, address checks, persistence."""

from __future__ import annotations

import asyncio
import ipaddress
from datetime import UTC, datetime

import pytest

from newswatch.alerts.runtime_sources import RuntimeSources, SourceRefused, forbidden_kind
from newswatch.crawler.sources import SourceConfig
from newswatch.storage import open_storage

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONFIG = [SourceConfig(name="wire", url="https://wire.example.com/feed.xml", interval=300),
          SourceConfig(name="off", url="https://off.example.com/feed.xml", enabled=False)]


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.10", "private"),
    ("172.16.5.4", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"), ("::ffff:127.0.0.1", "loopback"),
    ("100.64.0.1", "reserved"), ("fd00::1", "private"), ("93.184.216.34", None), ("2606:4700::1111", None),
])
def test_forbidden_kinds(address: str, kind: str | None) -> None:
    assert forbidden_kind(ipaddress.ip_address(address)) == kind


def _sources(database, allowed=()) -> RuntimeSources:
    return RuntimeSources(open_storage(database).alerts, CONFIG, [ipaddress.ip_network(n) for n in allowed])


def _add(sources: RuntimeSources, name: str, url: str, interval=None) -> SourceConfig:
    return asyncio.run(sources.add(name, url, interval, by=1, now=NOW))


@pytest.mark.parametrize(("name", "url", "why"), [
    ("meta", "http://169.254.169.254/latest/", "link-local"),
    ("lan", "http://10.0.0.7/feed.xml", "private"),
    ("local", "http://127.0.0.1:8080/feed.xml", "loopback"),
    ("v6", "http://[::1]/feed.xml", "loopback"),
    ("ftp", "ftp://example.com/feed.xml", "http"),
    ("bad name!", "https://example.com/feed.xml", "name"),
    ("wire", "https://other.example.com/feed.xml", "already a source named wire"),
    ("copy", "https://wire.example.com/feed.xml", "wire already polls that URL"),
])
def test_refused_sources(tmp_path, name: str, url: str, why: str) -> None:
    sources = _sources(tmp_path / "db.sqlite")
    with pytest.raises(SourceRefused, match=why) as caught:
        _add(sources, name, url)
    if "address" in str(caught.value):
        assert "telegram.allow_private_source_networks" in str(caught.value)
    assert [k.config.name for k in sources.all()] == ["wire", "off"]


def test_allowed_networks_and_persistence(database) -> None:
    sources = _sources(database, ["127.0.0.0/8"])
    added = _add(sources, "local", "http://127.0.0.1:8080/feed.xml", "90s")
    assert added.interval == 90
    with pytest.raises(SourceRefused, match="private"):
        _add(sources, "lan", "http://10.0.0.7/feed.xml")
    assert [s.name for s in sources.enabled()] == ["wire", "local"]

    sources.set_enabled("wire", False, by=1, now=NOW)
    sources.set_enabled("OFF", True, by=1, now=NOW)  # names are found case-insensitively
    sources.set_enabled("local", False, by=1, now=NOW)
    with pytest.raises(SourceRefused, match="no source named"):
        sources.set_enabled("nothing", True, by=1)

    again = RuntimeSources(sources.store, CONFIG)
    assert [(k.config.name, k.config.enabled, k.runtime) for k in again.all()] == [
        ("wire", False, False), ("off", True, False), ("local", False, True)]
    assert [s.name for s in again.enabled()] == ["off"]


def test_an_override_for_a_source_gone_from_the_config_is_ignored(database) -> None:
    sources = _sources(database)
    sources.set_enabled("wire", False, by=1, now=NOW)
    assert [k.config.name for k in RuntimeSources(sources.store, CONFIG[1:]).all()] == ["off"]
