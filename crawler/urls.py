"""Canonical URLs: one spelling per article, whatever link a feed or page handed us.

`canonical_url` lower-cases the scheme and host, drops default ports, fragments and
well-known tracking parameters, sorts the remaining query parameters (keeping each one's
original encoding) and percent-encodes raw non-ASCII path characters. `redact_url` hides
the credentials URLs may carry (`https://user:pass@host/feed` ->
`https://***@host/feed`): every log line and command output that shows a source's URL, or an
error that may quote one, goes through them. It is pure: no I/O.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}

TRACKING_PARAMS = frozenset(
    {
        "_ga",
        "_gl",
        "_hsenc",
        "_hsmi",
        "at_campaign",
        "at_medium",
        "cmp",
        "cmpid",
        "dclid",
        "fbclid",
        "gclid",
        "gclsrc",
        "hsctatracking",
        "icid",
        "igshid",
        "li_fat_id",
        "mc_cid",
        "mc_eid",
        "mkt_tok",
        "msclkid",
        "ncid",
        "ocid",
        "ref",
        "ref_src",
        "ref_url",
        "s_cid",
        "smid",
        "smtyp",
        "spm",
        "ttclid",
        "twclid",
        "wt.mc_id",
        "yclid",
    }
)
TRACKING_PREFIXES = ("utm_",)

_STRIPPED_CHARS = re.compile(r"[\t\r\n]")
_PERCENT_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")
# Everything RFC 3986 allows unescaped in a path, plus "%" so existing escapes survive.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


def canonical_url(url: str) -> str:
    """The canonical form of an http(s) URL, or "" when `url` is not one."""
    if not isinstance(url, str):
        return ""
    url = _STRIPPED_CHARS.sub("", url).strip()
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            return ""
        port = parts.port
    except ValueError:
        return ""
    host = parts.hostname.rstrip(".")
    if not host or any(c.isspace() for c in host):
        return ""
    if ":" in host:
        host = f"[{host}]"
    elif not host.isascii():
        host = _ascii_host(host)
    if port is not None and port != DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    netloc = f"{userinfo}@{host}" if userinfo else host
    path = _normalise_escapes(quote(parts.path, safe=_PATH_SAFE)) or "/"
    return urlunsplit((scheme, netloc, path, _canonical_query(parts.query), ""))


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s?#@]*(?:@[^/\s?#@]*)*@")


def redact_url(text: object) -> str:
    """A URL, or any text quoting URLs (an error, a log line), with the user name and password
    of every URL in it replaced by `***`; everything else unchanged."""
    return _USERINFO.sub(r"\1***@", str(text))


def is_tracking_param(name: str) -> bool:
    """Whether a query parameter name is a known tracking parameter."""
    key = unquote(name).strip().lower()
    return key in TRACKING_PARAMS or key.startswith(TRACKING_PREFIXES)


def _ascii_host(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def _canonical_query(query: str) -> str:
    kept = [
        _normalise_escapes(quote(pair, safe=_QUERY_SAFE))
        for pair in query.split("&")
        if pair and not is_tracking_param(pair.partition("=")[0])
    ]
    return "&".join(sorted(kept))


def _normalise_escapes(text: str) -> str:
    return _PERCENT_ESCAPE.sub(lambda m: m.group(0).upper(), text)
