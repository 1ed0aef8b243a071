"""Download failures are described in one short, precise line, whichever client raised them.

Each case is the real exception a client raises: aiohttp's (the feed reader), Scrapy's (its
asyncio download handler re-raises aiohttp's `from` the original, its Twisted handlers wrap
Twisted's the same way) and Twisted's; the description follows from the class, not the text.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey, RequestInfo
from multidict import CIMultiDict, CIMultiDictProxy
from scrapy.exceptions import (CannotResolveHostError, DownloadCancelledError, DownloadConnectionRefusedError,
                               DownloadFailedError, DownloadTimeoutError, IgnoreRequest, ResponseDataLossError)
from twisted.internet import defer
from twisted.internet import error as tx
from twisted.python.failure import Failure
from twisted.web.client import ResponseNeverReceived
from yarl import URL

from newswatch.crawler.fetch.addresses import AddressRefused
from newswatch.crawler.outcomes import (RedirectLimitReached, ResponseTooLarge, RobotsForbidden, describe_error,
                                        describe_failure)

DNS_FAILED = "DNS lookup failed for {} (no such host, or no network)"
REFUSAL = "refused: http://127.0.0.1/admin resolves to a loopback address (127.0.0.1), not allowed for source x"


def _key(host: str, port: int = 443) -> ConnectionKey:
    return ConnectionKey(host, port, port == 443, True, None, None, None)


def _wrapped(outer: type[Exception], inner: BaseException, message: str | None = None) -> Exception:
    """`outer` raised from `inner`, as Scrapy's download handlers re-raise a client's errors
    (with `str(inner)`, or their own `message`)."""
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer(str(exc) if message is None else message) from exc
    except outer as wrapped:
        return wrapped


def _too_many_redirects() -> aiohttp.TooManyRedirects:
    info = RequestInfo(URL("http://loop.example/a"), "GET", CIMultiDictProxy(CIMultiDict()),
                       URL("http://loop.example/a"))
    return aiohttp.TooManyRedirects(info, (), message="Too many redirects")


DNS = aiohttp.ClientConnectorDNSError(_key("no-such-host.invalid"), OSError(-2, "Name or service not known"))
REFUSED = aiohttp.ClientConnectorError(_key("127.0.0.1", 8081), ConnectionRefusedError(111, "Connect call failed"))
UNREACHABLE = aiohttp.ClientConnectorError(_key("10.9.9.9"), OSError(101, "Network is unreachable"))
TX_DNS = tx.DNSLookupError("no results for hostname lookup: gone.example.")
MAX_SIZE = "Received 5000 bytes which is larger than download max size (4000) in request <GET http://x.example/>."

CASES = [
    # DNS
    ("aiohttp DNS", DNS, DNS_FAILED.format("no-such-host.invalid")),
    ("scrapy DNS from aiohttp", _wrapped(CannotResolveHostError, DNS), DNS_FAILED.format("no-such-host.invalid")),
    ("scrapy DNS alone", CannotResolveHostError("Cannot connect to host www.yna.co.kr:443 ssl:<ssl.SSLContext "
                                                "object at 0x7f> [Name or service not known]"),
     DNS_FAILED.format("www.yna.co.kr")),
    ("twisted DNS", TX_DNS, DNS_FAILED.format("gone.example")),
    ("scrapy DNS from twisted", _wrapped(CannotResolveHostError, TX_DNS), DNS_FAILED.format("gone.example")),
    # redirects
    ("aiohttp redirects", _too_many_redirects(),
     "too many redirects, or a redirect loop (more than 0, last to http://loop.example/a)"),
    ("scrapy redirects", RedirectLimitReached("max redirections reached"),
     "too many redirects, or a redirect loop (max redirections reached)"),
    ("robots.txt", RobotsForbidden("Forbidden by robots.txt"), "forbidden by robots.txt"),
    ("an ignored request's text decides nothing", IgnoreRequest("max redirections reached; robots.txt"),
     "IgnoreRequest: max redirections reached; robots.txt"),
    # timeouts
    ("builtin timeout", TimeoutError("Getting http://x took longer than 4.0 seconds."),
     "timed out (Getting http://x took longer than 4.0 seconds.)"),
    ("bare timeout", TimeoutError(), "timed out (TimeoutError)"),
    ("asyncio timeout", asyncio.TimeoutError(), "timed out (TimeoutError)"),
    ("aiohttp read timeout", aiohttp.ServerTimeoutError("Timeout on reading data from socket"),
     "timed out (Timeout on reading data from socket)"),
    ("aiohttp connect timeout", aiohttp.ConnectionTimeoutError("Connection timeout to host http://x.example"),
     "timed out (Connection timeout to host http://x.example)"),
    ("scrapy timeout", _wrapped(DownloadTimeoutError, TimeoutError(), "Getting http://x took longer than 30 seconds."),
     "timed out (Getting http://x took longer than 30 seconds.)"),
    ("twisted timeout", tx.TimeoutError(), "timed out (User timeout caused connection failure.)"),
    # connections
    ("aiohttp refused", REFUSED, "connection refused by 127.0.0.1:8081"),
    ("scrapy refused from aiohttp", _wrapped(DownloadConnectionRefusedError, REFUSED),
     "connection refused by 127.0.0.1:8081"),
    ("aiohttp unreachable", UNREACHABLE, "cannot connect to 10.9.9.9:443 (Network is unreachable)"),
    ("scrapy unreachable", _wrapped(DownloadConnectionRefusedError, UNREACHABLE),
     "cannot connect to 10.9.9.9:443 (Network is unreachable)"),
    ("twisted refused", tx.ConnectionRefusedError(), "connection refused (Connection was refused by other side.)"),
    ("builtin refused", ConnectionRefusedError(), "connection refused (ConnectionRefusedError)"),
    ("aiohttp disconnected", aiohttp.ServerDisconnectedError(), "ServerDisconnectedError: Server disconnected"),
    ("twisted never answered", ResponseNeverReceived([Failure(tx.ConnectionLost("gone"))]),
     "connection closed before a response"),
    # bodies
    ("aiohttp payload", aiohttp.ClientPayloadError("Response payload is not completed"),
     "response cut short (Response payload is not completed)"),
    ("scrapy data loss", _wrapped(ResponseDataLossError, aiohttp.ClientPayloadError("Response payload is not "
                                                                                    "completed")),
     "response cut short (Response payload is not completed)"),
    ("feed reader cap", ResponseTooLarge("response too large (over 4000000 bytes)"),
     "response too large (over 4000000 bytes)"),
    ("scrapy maxsize", DownloadCancelledError(MAX_SIZE), f"response too large ({MAX_SIZE})"),
    ("scrapy cancelled", _wrapped(DownloadCancelledError, defer.CancelledError()), "download cancelled"),
    # the address policy, directly and through Scrapy
    ("policy", AddressRefused(REFUSAL), REFUSAL),
    ("policy through scrapy", _wrapped(DownloadFailedError, AddressRefused(REFUSAL)), REFUSAL),
    # credentials never shown; anything else by its name
    ("credentials", TimeoutError("Getting http://user:secret@x.example/feed took too long"),
     "timed out (Getting http://***@x.example/feed took too long)"),
    ("other", ValueError("boom"), "ValueError: boom"),
    ("text alone decides nothing", ValueError("Name or service not known; timed out; redirect"),
     "ValueError: Name or service not known; timed out; redirect"),
]


@pytest.mark.parametrize(("error", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_describe_error(error: Exception, expected: str) -> None:
    assert describe_error(error) == expected
    assert describe_failure(SimpleNamespace(value=error)) == expected
