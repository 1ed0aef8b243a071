"""Download failures are described in one short, precise line, whichever client raised them."""

from __future__ import annotations

from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from crawler.outcomes import describe_error, describe_failure


class CannotResolveHostError(Exception):
    pass


def _aiohttp_dns_error() -> Exception:
    key = ConnectionKey("no-such-host.invalid", 443, True, True, None, None, None)
    return aiohttp.ClientConnectorDNSError(key, OSError(-2, "Name or service not known"))


@pytest.mark.parametrize(("error", "expected"), [
    (CannotResolveHostError("Cannot connect to host www.yna.co.kr:443 ssl:<ssl.SSLContext object at 0x7f> "
                            "[Name or service not known]"),
     "DNS lookup failed for www.yna.co.kr (no such host, or no network)"),
    (_aiohttp_dns_error(), "DNS lookup failed for no-such-host.invalid (no such host, or no network)"),
    (Exception("max redirections reached"), "too many redirects, or a redirect loop (max redirections reached)"),
    (TimeoutError("Getting http://x took longer than 4.0 seconds."), "timed out (Getting http://x took longer than 4.0 seconds.)"),
    (TimeoutError(), "timed out (TimeoutError)"),
    (aiohttp.ServerTimeoutError("Timeout on reading data from socket"), "timed out (Timeout on reading data from socket)"),
    (ValueError("response too large (over 4000000 bytes)"), "response too large (over 4000000 bytes)"),
    (ConnectionRefusedError(), "ConnectionRefusedError"),
])
def test_describe_error(error: Exception, expected: str) -> None:
    assert describe_error(error) == expected
    assert describe_failure(SimpleNamespace(value=error)) == expected
