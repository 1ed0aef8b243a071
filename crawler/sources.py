"""The crawler's section of the config: sources, fetch settings and storage.

Owns the pydantic models for `sources:`, `crawler:` and `storage:` and the parsing of
durations ("90s", "5m", "1h30m" or plain seconds). The whole-file loader lives in
`alerts.config`, which composes these models with the alerting sections.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

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


class SourceConfig(BaseModel):
    """One thing to poll."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    url: str
    kind: Literal["feed"] = "feed"
    interval: Duration = 600
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not SOURCE_NAME.match(v):
            raise ValueError(
                "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_http_url(v)


class CrawlerConfig(BaseModel):
    """How politely and how hard to fetch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_agent: str = "newswatch/0.1 (+https://github.com/newswatch/newswatch; news alert monitor)"
    timeout: Duration = 30
    max_bytes: int = Field(default=10_000_000, gt=0)
    concurrency: int = Field(default=32, gt=0, le=1000)
    per_host: int = Field(default=4, gt=0, le=1000)
    failure_backoff_max: Duration = 6 * 3600


class StorageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = "newswatch.db"
