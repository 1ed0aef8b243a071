"""Sources that administrators add, disable or enable from Telegram (kept by `newswatch.alerts.store`).

The config file stays the reference: a source added at runtime lives in the
`runtime_sources` table, and disabling or enabling a source from the config only records
an override there (its definition still comes from the file). `RuntimeSources.all()`
merges both, and the daemon polls those that are enabled.

A source added from a chat is validated like one in the config (name, http(s) URL,
interval), and its host must not resolve to a loopback, private, link-local, multicast or
otherwise reserved address, so that a chat cannot make the daemon probe its own machine or
network. Networks listed in `telegram.allow_private_source_networks` are exempt (a feed
server on the intranet, or tests on 127.0.0.1). This check is the admin's early answer; the
same policy (`newswatch.crawler.fetch.addresses`) is enforced again on every fetch, when it connects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver
from pydantic import ValidationError

from newswatch.crawler.fetch.addresses import IPAddress, IPNetwork, AddressPolicy, forbidden_kind, resolve_addresses
from newswatch.crawler.sources import SourceConfig

if TYPE_CHECKING:
    from newswatch.alerts.store import AlertsStore

__all__ = ["KnownSource", "RuntimeSources", "SourceRefused", "forbidden_kind"]
RESOLVE_TIMEOUT = 10.0


class SourceRefused(ValueError):
    """A source change that is not made; the message says why, for the admin who asked."""


@dataclass(frozen=True)
class KnownSource:
    config: SourceConfig
    runtime: bool  # added from Telegram rather than the config file


class RuntimeSources:
    def __init__(self, store: AlertsStore, config_sources: Sequence[SourceConfig],
                 allowed_networks: Iterable[IPNetwork] = (), *, policy: AddressPolicy | None = None,
                 resolver: AbstractResolver | None = None) -> None:
        self.store = store
        self.config_sources = list(config_sources)
        self.policy = policy or AddressPolicy(allowed_networks=tuple(allowed_networks))
        self.resolver = resolver

    def added_from_chat(self) -> set[str]:
        """The names of the sources added from Telegram."""
        return {r["name"] for r in self.store.runtime_sources() if r["url"] is not None}

    def all(self) -> list[KnownSource]:
        """Every source, config ones first, with the enabled flag in force."""
        rows = {r["name"]: r for r in self.store.runtime_sources()}
        out = []
        for source in self.config_sources:
            row = rows.pop(source.name, None)
            if row is not None and bool(row["enabled"]) != source.enabled:
                source = source.model_copy(update={"enabled": bool(row["enabled"])})
            out.append(KnownSource(source, runtime=False))
        for row in rows.values():
            if row["url"] is None:
                continue  # an override for a source since removed from the config
            source = SourceConfig(name=row["name"], url=row["url"], interval=row["interval"],
                                  enabled=bool(row["enabled"]))
            out.append(KnownSource(source, runtime=True))
        return out

    def enabled(self) -> list[SourceConfig]:
        return [k.config for k in self.all() if k.config.enabled]

    def find(self, name: str) -> KnownSource | None:
        wanted = name.lower()
        return next((k for k in self.all() if k.config.name.lower() == wanted), None)

    async def add(self, name: str, url: str, interval: str | int | None, *, by: int,
                  now: datetime | None = None) -> SourceConfig:
        """Validate, check the host, and store a new enabled source."""
        fields: dict = {"name": name, "url": url}
        if interval is not None:
            fields["interval"] = interval
        try:
            source = SourceConfig(**fields)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                where = ".".join(str(p) for p in error["loc"]) or "source"
                message = str((error.get("ctx") or {}).get("error", error["msg"]))
                problems.append(f"{where}: {message}")
            raise SourceRefused("; ".join(problems)) from None
        if self.find(source.name) is not None:
            raise SourceRefused(f"there is already a source named {source.name}")
        same_url = next((k for k in self.all() if source.url in _urls(k.config)), None)
        if same_url is not None:
            raise SourceRefused(f"{same_url.config.name} already polls that URL")
        await self.check_host(source.url)
        self.store.add_runtime_source(source.name, source.url, source.interval, by=by, at=now or datetime.now(UTC))
        return source

    def set_enabled(self, name: str, enabled: bool, *, by: int, now: datetime | None = None) -> KnownSource:
        """Enable or disable a source by name (config or runtime); persists across restarts."""
        known = self.find(name)
        if known is None:
            raise SourceRefused(f"there is no source named {name}; /sources lists them")
        source = known.config
        at = now or datetime.now(UTC)
        if known.runtime:
            self.store.set_runtime_source_enabled(source.name, enabled, by=by, at=at)
        else:
            self.store.override_source_enabled(source.name, enabled, by=by, at=at)
        return KnownSource(source.model_copy(update={"enabled": enabled}), known.runtime)

    async def check_host(self, url: str) -> None:
        """Refuse a URL whose host is, or resolves to, an address a chat may not reach."""
        host = urlsplit(url).hostname or ""
        try:
            addresses: list[IPAddress] = await asyncio.wait_for(resolve_addresses(host, self.resolver),
                                                                RESOLVE_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise SourceRefused(f"cannot resolve the host {host}: {exc}") from None
        for address in addresses:
            kind = self.policy.classify(address)
            if kind and not self.policy.allowed_network(address):
                shown = host if str(address) == host else f"{host} ({address})"
                raise SourceRefused(
                    f"{shown} is a {kind} address. Sources added from Telegram may not point at "
                    "loopback, private or link-local addresses unless the config lists the network "
                    "under telegram.allow_private_source_networks."
                )


def _urls(source: SourceConfig) -> tuple[str, ...]:
    return source.url if isinstance(source.url, tuple) else (source.url,)
