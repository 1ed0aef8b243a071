"""Which network addresses a fetch may reach: one policy for every outgoing request.

The feed reader, the Scrapy crawls (listing pages, sitemaps, article pages, robots.txt and
every redirect) and `newswatch doctor` all connect through `GuardedConnector`, which asks
the `SourceGuard` of the source being fetched about each address, after DNS resolution and
again for a pooled connection, so a redirect or a name that resolves differently at fetch
time (DNS rebinding) is caught where the connection is made. Refused addresses are never
connected to; when none is left, the fetch fails with `AddressRefused`, whose message names
the URL (without credentials), the address, its kind and the source.

The rules, for an address that is not public (loopback, private, link-local, multicast,
unspecified or otherwise reserved, see `forbidden_kind`):

- a source added from Telegram (and, with `crawler.restrict_private_addresses: true`, every
  source) may reach it only when it lies in one of the `allowed_networks`
  (`telegram.allow_private_source_networks`);
- a source written in the config file is trusted: its own URLs may reach any address;
- what a source leads to (redirects to another host, article pages, sitemap entries, next
  listing pages) may reach a non-public address only when the source's own address, seen in
  this crawl, was not public either: a public feed or sitemap never leads into loopback or
  the private network.

A source's "own" URLs are those on the scheme, host and port of its configured URL(s).
Through a proxy (HTTP(S)_PROXY) the proxy connects, so the target's name is resolved here
and checked before the request is sent (a best effort: the proxy resolves it again, and a
name that does not resolve here is left to the proxy).
`classify` and the resolver can be injected (tests treat a loopback alias as public).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from newswatch.crawler.sources import SourceConfig
from newswatch.crawler.urls import redact_url

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Classify = Callable[[IPAddress], "str | None"]


def forbidden_kind(address: IPAddress) -> str | None:
    """What makes an address off limits ("loopback", "private", ...), or None when public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved or not address.is_global:
        return "reserved"
    return None


def ip_of(text: str) -> IPAddress:
    """The address in a resolver answer or a peer name ("fe80::1%eth0" without its zone)."""
    return ipaddress.ip_address(text.split("%")[0])


class AddressRefused(aiohttp.ClientConnectionError):
    """A fetch the address policy refused; `str()` is the whole explanation."""


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the port filled in for http and https."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        return ("", "", None)
    return (parts.scheme.lower(), (parts.hostname or "").rstrip(".").lower(), port)


@dataclass(frozen=True)
class AddressPolicy:
    """The policy's settings; `guard` gives the checker for one source in one crawl."""

    allowed_networks: tuple[IPNetwork, ...] = ()
    restrict_config_sources: bool = False
    classify: Classify = forbidden_kind

    def guard(self, source: SourceConfig, *, from_chat: bool = False) -> SourceGuard:
        return SourceGuard(self, source.name, source.urls, restricted=from_chat or self.restrict_config_sources,
                           from_chat=from_chat)

    def guards(self, sources: Iterable[SourceConfig], from_chat: Iterable[str] = ()) -> dict[str, SourceGuard]:
        chat = set(from_chat)
        return {s.name: self.guard(s, from_chat=s.name in chat) for s in sources}

    def allowed_network(self, address: IPAddress) -> bool:
        return any(address in net for net in self.allowed_networks)


@dataclass
class SourceGuard:
    """Decides, for one source, whether a URL may be fetched from an address."""

    policy: AddressPolicy
    name: str
    urls: Sequence[str]
    restricted: bool
    from_chat: bool = False
    own_private: bool = False  # the source's own URL was reached at a non-public address
    _origins: set[tuple[str, str, int | None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._origins = {origin(u) for u in self.urls}

    def refusal(self, url: str, address: IPAddress) -> str | None:
        """Why `url` may not be fetched from `address`, or None when it may."""
        kind = self.policy.classify(address)
        if kind is None:
            return None
        own = origin(url) in self._origins
        where = f"{redact_url(url)} resolves to a {kind} address ({address}), not allowed for source {self.name}"
        if self.restricted and not self.policy.allowed_network(address):
            who = "sources added from Telegram" if self.from_chat else "sources (crawler.restrict_private_addresses)"
            return (f"refused: {where}: {who} may reach only public addresses and the networks in "
                    "telegram.allow_private_source_networks")
        if own:
            self.own_private = True
            return None
        if not self.own_private:
            return f"refused: {where}: a public source's links and redirects may not lead to a {kind} address"
        return None

    def check(self, url: str, address: IPAddress) -> None:
        if (why := self.refusal(url, address)) is not None:
            raise AddressRefused(why)

    def permitted(self, url: str, hosts: list[ResolveResult]) -> list[ResolveResult]:
        """The resolver's answers `url` may connect to; AddressRefused when there are none."""
        kept, first_refusal = [], None
        for host in hosts:
            why = self.refusal(url, ip_of(host["host"]))
            if why is None:
                kept.append(host)
            elif first_refusal is None:
                first_refusal = why
        if not kept and first_refusal is not None:
            raise AddressRefused(first_refusal)
        return kept


_GUARD: ContextVar[SourceGuard | None] = ContextVar("newswatch_address_guard", default=None)
_TARGET: ContextVar[str | None] = ContextVar("newswatch_address_target", default=None)


@contextlib.contextmanager
def guarded(guard: SourceGuard | None) -> Iterator[None]:
    """Requests made inside this block (in this task) are checked by `guard`."""
    token = _GUARD.set(guard)
    try:
        yield
    finally:
        _GUARD.reset(token)


class GuardedConnector(aiohttp.TCPConnector):
    """An aiohttp connector that applies the guard in force (see `guarded`) to every
    connection: to the resolver's answers before connecting, and to the peer of a pooled
    connection before it is reused."""

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
        conn = await super().connect(req, traces, timeout)
        guard = _GUARD.get()
        transport = conn.transport
        if guard is not None and not req.proxy and transport is not None:
            peer = transport.get_extra_info("peername")
            if peer:
                try:
                    guard.check(str(req.url), ip_of(peer[0]))
                except AddressRefused:
                    conn.close()
                    raise
        return conn

    async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:
        guard = _GUARD.get()
        if guard is None:
            return await super()._create_connection(req, traces, timeout)
        if req.proxy:  # the proxy (the operator's) connects: check the target's name here
            try:
                hosts = await super()._resolve_host(req.url.raw_host, req.port)
            except OSError:  # not resolvable here: only the proxy can reach it
                hosts = []
            guard.permitted(str(req.url), hosts)
            with guarded(None):
                return await super()._create_connection(req, traces, timeout)
        token = _TARGET.set(str(req.url))
        try:
            return await super()._create_connection(req, traces, timeout)
        finally:
            _TARGET.reset(token)

    async def _resolve_host(self, host: str, port: int, traces: Any = None) -> list[ResolveResult]:
        hosts = await super()._resolve_host(host, port, traces)
        guard, url = _GUARD.get(), _TARGET.get()
        if guard is None or url is None:
            return hosts
        return guard.permitted(url, hosts)


async def resolve_addresses(host: str, resolver: AbstractResolver | None = None) -> list[IPAddress]:
    """Every address a host name (or literal) stands for, through `resolver` (default: the
    system's, as aiohttp uses it). Raises OSError when it does not resolve."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    own = resolver is None
    resolver = resolver or aiohttp.ThreadedResolver()
    try:
        answers = await resolver.resolve(host, 0, socket.AF_UNSPEC)
    finally:
        if own:
            await resolver.close()
    return list(dict.fromkeys(ip_of(a["host"]) for a in answers))
