"""The crawler's section of the config: sources, fetch settings and storage.

Owns the pydantic models for `sources:`, `crawler:` and `storage:` and the parsing of
durations ("90s", "5m", "1h30m" or plain seconds). The whole-file loader lives in
`newswatch.alerts.config`, which composes these models with the alerting sections.

A source is one of three kinds, each with its own keys (a key of another kind is refused):

- `feed`: RSS/Atom/RDF/JSON Feed at `url`; `full_text: true` also fetches each new item's
  page for its whole text;
- `site`: listing page(s) at `url` (one URL or a list); article links are those matching
  the regular expression `follow`, optionally only among the elements `links` selects;
  `depth` listing pages are read per URL, following `rel=next` (or the `next` selector);
- `sitemap`: a sitemap or sitemap index at `url` (Google News sitemaps give title and date).

Kinds that fetch article pages (site, sitemap, feed with full_text) take `selectors:
{title, date, body}` for pages the extractor gets wrong, and `max_articles`, the most new
articles fetched per source and pass (the rest wait for the next pass). Selectors are CSS,
or XPath when they start with `/` or `(`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

_DURATION = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$")


def parse_duration(value: object) -> int:
    """Seconds from `300`, `"300"`, `"90s"`, `"5m"`, `"1h"`, `"1h30m"` or `"2d"`."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 300, \"5m\" or \"1h\", not a boolean")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, float) and value.is_integer():
        seconds = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        seconds = int(value.strip())
    elif isinstance(value, str) and (m := _DURATION.match(value)) and any(m.groups()):
        d, h, mins, s = (int(g or 0) for g in m.groups())
        seconds = ((d * 24 + h) * 60 + mins) * 60 + s
    else:
        raise ValueError(f"must be a duration such as 300, \"5m\" or \"1h\", got {value!r}")
    if seconds <= 0:
        raise ValueError(f"must be a positive duration, got {value!r}")
    return seconds


Duration = Annotated[int, BeforeValidator(parse_duration)]

SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_http_url(url: str) -> str:
    """Accept only absolute http(s) URLs with a host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an absolute http:// or https:// URL, got {url!r}")
    return url.strip()


def check_regex(value: str) -> str:
    """Accept a regular expression that compiles."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


def check_selector(value: str) -> str:
    """Accept a CSS selector, or an XPath expression when it starts with `/` or `(`."""
    from lxml import etree
    from parsel.csstranslator import HTMLTranslator

    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    if value.startswith(("/", "(")):
        try:
            etree.XPath(value)
        except etree.XPathSyntaxError as exc:
            raise ValueError(f"not a valid XPath expression: {exc}") from None
    else:
        try:
            HTMLTranslator().css_to_xpath(value)
        except Exception as exc:  # cssselect raises several kinds of syntax errors
            raise ValueError(f"not a valid CSS selector ({exc}); XPath must start with / or (") from None
    return value


class SelectorsConfig(BaseModel):
    """Where title, date and body are on a site's article pages, when the extractor errs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str | None = None
    date: str | None = None
    body: str | None = None

    @field_validator("title", "date", "body")
    @classmethod
    def _selector(cls, v: str | None) -> str | None:
        return None if v is None else check_selector(v)


_ONLY_FOR = {
    "full_text": ("feed",),
    "follow": ("site",),
    "links": ("site",),
    "next": ("site",),
    "depth": ("site",),
}


class SourceConfig(BaseModel):
    """One thing to poll."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Literal["feed", "site", "sitemap"] = "feed"
    url: str | tuple[str, ...]
    interval: Duration = 600
    enabled: bool = True
    full_text: bool = False
    follow: str | None = None
    links: str | None = None
    next: str | None = None
    depth: int = Field(default=1, ge=1, le=20)
    selectors: SelectorsConfig | None = None
    max_articles: int = Field(default=50, ge=1, le=1000)
    alert_max_age: Duration | None = None  # stories published longer ago never alert; None: the top-level value

    @property
    def urls(self) -> tuple[str, ...]:
        """The URL(s) to start from."""
        return self.url if isinstance(self.url, tuple) else (self.url,)

    @property
    def fetches_pages(self) -> bool:
        """Whether this source fetches article pages (and so obeys robots.txt for them)."""
        return self.kind in ("site", "sitemap") or self.full_text

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not SOURCE_NAME.match(v):
            raise ValueError(
                "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return v

    @field_validator("url", mode="before")
    @classmethod
    def _url(cls, v: object, info: ValidationInfo) -> str | tuple[str, ...]:
        if isinstance(v, (list, tuple)):
            if info.data.get("kind") != "site":
                raise ValueError("a list of URLs is only for kind: site; give one URL")
            if not v:
                raise ValueError("needs at least one URL")
            return tuple(check_http_url(_text(u)) for u in v)
        return check_http_url(_text(v))

    @field_validator("full_text", "follow", "links", "next", "depth", mode="before")
    @classmethod
    def _kind_only(cls, v: object, info: ValidationInfo) -> object:
        kind = info.data.get("kind", "feed")
        kinds = _ONLY_FOR[info.field_name or ""]
        if kind not in kinds:
            raise ValueError(f"only for kind: {' or '.join(kinds)} sources (this one is kind: {kind})")
        return v

    @field_validator("follow")
    @classmethod
    def _follow(cls, v: str | None) -> str | None:
        return None if v is None else check_regex(v)

    @field_validator("links", "next")
    @classmethod
    def _selector(cls, v: str | None) -> str | None:
        return None if v is None else check_selector(v)

    @model_validator(mode="after")
    def _complete(self) -> SourceConfig:
        if self.kind == "site" and not self.follow:
            raise ValueError("follow: required for kind: site (a regular expression article URLs match)")
        set_fields = self.model_fields_set
        if not self.fetches_pages:
            for key in ("selectors", "max_articles"):
                if key in set_fields:
                    raise ValueError(f"{key}: only for kinds that fetch article pages"
                                     " (site, sitemap, or a feed with full_text: true)")
        return self


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value


class CrawlerConfig(BaseModel):
    """How politely and how hard to fetch: `per_host` requests at once per host, `delay`
    seconds between them (AutoThrottle, when on, raises it for slow hosts), robots.txt kept
    for `robots_cache` between passes. `restrict_private_addresses` holds the config's own
    sources to the address policy of sources added from Telegram (see `newswatch.crawler.fetch.addresses`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_agent: str = "newswatch/0.1 (+https://github.com/newswatch/newswatch; news alert monitor)"
    timeout: Duration = 30
    max_bytes: int = Field(default=10_000_000, gt=0)
    concurrency: int = Field(default=32, gt=0, le=1000)
    per_host: int = Field(default=4, gt=0, le=1000)
    delay: float = Field(default=1.0, ge=0, le=60)
    autothrottle: bool = True
    robots_cache: Duration = 3600
    failure_backoff_max: Duration = 6 * 3600
    parse_workers: int = Field(default=1, ge=0, le=16)   # processes parsing large feeds; 0 parses all in the loop
    parse_timeout: Duration = 20                         # a feed that takes longer to parse is given up
    parse_inline_below: int = Field(default=65536, ge=0)  # bytes: smaller feeds are parsed in the loop
    disable_after: int = Field(default=50, ge=0)         # consecutive failures before a source is disabled; 0 never
    restrict_private_addresses: bool = False             # true: config sources too may reach only public addresses


class StorageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = "newswatch.db"  # the SQLite database file (the default)
    url: str | None = None      # instead: postgresql://user@host:port/database

    @field_validator("url")
    @classmethod
    def _database_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a PostgreSQL URL: postgresql://user[:password]@host[:port]/database "
                             "(an SQLite file is `path`)")
        return v
