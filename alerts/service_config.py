"""The `http:` section of the config: where the daemon serves `/healthz` and `/metrics`.

    http:
      listen: "127.0.0.1:9108"   # host:port; "0.0.0.0:9108" in a container; [::1]:9108 for IPv6
      stuck_after: 2m            # /healthz fails when delivery made no progress for this long
      max_connections: 64        # open at once; when full, the one waiting longest for its request is dropped
      header_timeout: 10s        # a request's line and headers must arrive within this

Without the section the daemon opens no port. The endpoint has no authentication: bind it
to localhost (or a private network a Prometheus server reaches), never to the internet.
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator

from newswatch.crawler.sources import Duration

DEFAULT_PORT = 9108
DEFAULT_STUCK_AFTER = 120
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_HEADER_TIMEOUT = 10


def split_listen(value: str) -> tuple[str, int]:
    """("127.0.0.1", 9108) from "127.0.0.1:9108", "[::1]:9108" or ":9108" (all interfaces)."""
    text = value.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"must be HOST:PORT such as \"127.0.0.1:{DEFAULT_PORT}\" or \"[::1]:{DEFAULT_PORT}\", got {value!r}")
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"must be HOST:PORT such as \"127.0.0.1:{DEFAULT_PORT}\" (IPv6 in brackets), got {value!r}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"the port must be a number from 1 to 65535, got {port!r}")
    host = host or "0.0.0.0"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"the host must be an IP address or localhost, got {host!r}") from None
    return host, int(port)


class HttpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: str = f"127.0.0.1:{DEFAULT_PORT}"
    stuck_after: Duration = Field(default=DEFAULT_STUCK_AFTER)
    max_connections: int = Field(default=DEFAULT_MAX_CONNECTIONS, ge=1, le=10_000)
    header_timeout: Duration = Field(default=DEFAULT_HEADER_TIMEOUT)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        split_listen(v)
        return v.strip()

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]
