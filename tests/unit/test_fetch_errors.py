"""Download failures are described in one short, precise line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from crawler.fetch import describe_failure


class CannotResolveHostError(Exception):
    pass


@pytest.mark.parametrize(("error", "expected"), [
    (CannotResolveHostError("Cannot connect to host www.yna.co.kr:443 ssl:<ssl.SSLContext object at 0x7f> "
                            "[Name or service not known]"),
     "DNS lookup failed for www.yna.co.kr (no such host, or no network)"),
    (Exception("max redirections reached"), "too many redirects, or a redirect loop (max redirections reached)"),
    (TimeoutError("Getting http://x took longer than 4.0 seconds."), "timed out (Getting http://x took longer than 4.0 seconds.)"),
    (ConnectionRefusedError(), "ConnectionRefusedError"),
])
def test_describe_failure(error: Exception, expected: str) -> None:
    assert describe_failure(SimpleNamespace(value=error)) == expected
