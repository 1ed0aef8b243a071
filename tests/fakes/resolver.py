"""A DNS resolver for tests: host names mapped to loopback addresses, answers that can change
from one lookup to the next (DNS rebinding), every lookup counted."""

from __future__ import annotations

import socket
import threading

from aiohttp.abc import AbstractResolver, ResolveResult


class ScriptedResolver(AbstractResolver):
    """`answers[name]` is a list of addresses: lookup n gets the n-th (the last one from then
    on). Names not listed do not resolve."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups: dict[str, int] = {}
        self._lock = threading.Lock()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        with self._lock:
            n = self.lookups[host] = self.lookups.get(host, 0) + 1
        if host not in self.answers:
            raise OSError(socket.EAI_NONAME, f"no such host {host} (test resolver)")
        options = self.answers[host]
        address = options[min(n, len(options)) - 1]
        return [{"hostname": host, "host": address, "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        pass
