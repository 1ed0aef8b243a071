"""canonical_url: one spelling per article URL."""

from __future__ import annotations

import pytest

from newswatch.crawler.urls import canonical_url, is_tracking_param

CANONICAL = [
    # (input, canonical form)
    ("HTTP://Example.COM:80/a?b=2&a=1#top", "http://example.com/a?a=1&b=2"),
    ("https://example.com", "https://example.com/"),
    ("https://example.com:443/x", "https://example.com/x"),
    ("https://example.com:8443/x", "https://example.com:8443/x"),
    ("http://example.com:443/x", "http://example.com:443/x"),
    ("https://example.com./x", "https://example.com/x"),
    ("https://ex.com/a?utm_source=rss&utm_medium=feed&id=7", "https://ex.com/a?id=7"),
    ("https://ex.com/a?UTM_Campaign=x&id=1", "https://ex.com/a?id=1"),
    ("https://ex.com/a?fbclid=x&gclid=y&mc_cid=1&mc_eid=2", "https://ex.com/a"),
    ("https://ex.com/a?ocid=3&cmpid=4&ref=5&ref_src=6&smid=7", "https://ex.com/a"),
    ("https://ex.com/a?msclkid=1&CMP=share_btn&_ga=2&igshid=3", "https://ex.com/a"),
    ("https://ex.com/a?id=5&page=2&ref=rss", "https://ex.com/a?id=5&page=2"),
    ("https://ex.com/a?reference=1&prefix=2", "https://ex.com/a?prefix=2&reference=1"),
    ("https://ex.com/a?b=1&&a=2&", "https://ex.com/a?a=2&b=1"),
    ("https://ex.com/a?", "https://ex.com/a"),
    ("https://ex.com/a?q=a+b&r=%2f", "https://ex.com/a?q=a+b&r=%2F"),
    ("https://ex.com/a%2fb/c", "https://ex.com/a%2Fb/c"),
    ("https://ex.com/뉴스?q=북한", "https://ex.com/%EB%89%B4%EC%8A%A4?q=%EB%B6%81%ED%95%9C"),
    ("https://ex.com/a b", "https://ex.com/a%20b"),
    ("  https://ex.com/a\n", "https://ex.com/a"),
    ("https://ex.com/a\n/b", "https://ex.com/a/b"),
    ("https://Bücher.example/", "https://xn--bcher-kva.example/"),
    ("http://[::1]:80/", "http://[::1]/"),
    ("https://user@ex.com/", "https://user@ex.com/"),
    ("https://ex.com/#!/story/1", "https://ex.com/"),
]

NOT_HTTP = [
    "",
    "   ",
    "ftp://ex.com/a",
    "mailto:news@ex.com",
    "javascript:alert(1)",
    "/relative/path",
    "//ex.com/a",
    "https://",
    "https://ex.com:99999/",
    "http://[::1/",
    "not a url",
    "tag:example.com,2019:1",
]


@pytest.mark.parametrize(("url", "expected"), CANONICAL)
def test_canonical_form(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


@pytest.mark.parametrize(("url", "expected"), CANONICAL)
def test_canonical_form_is_stable(url: str, expected: str) -> None:
    assert canonical_url(expected) == expected


@pytest.mark.parametrize("url", NOT_HTTP)
def test_anything_but_http_is_empty(url: str) -> None:
    assert canonical_url(url) == ""


def test_non_string_is_empty() -> None:
    assert canonical_url(None) == ""  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "tracking"),
    [
        ("utm_source", True),
        ("UTM_TERM", True),
        ("fbclid", True),
        ("ref_src", True),
        ("id", False),
        ("page", False),
        ("refresh", False),
        ("utm", False),
    ],
)
def test_tracking_params(name: str, tracking: bool) -> None:
    assert is_tracking_param(name) is tracking
