"""The `Story`: one news item as every later stage sees it, whatever source it came from.

A story is immutable and carries timezone-aware datetimes. Its `id` is stable across polls,
GUID rewrites and tracking parameters: it derives from the canonical URL when the item has a
link, and from the source name and GUID otherwise; a second source giving a URL that another
source's story holds gets an id from its name and the URL (`claimant_id`).

`published` is when the source says the story was published, read by `settle_date`: a date
before 1970 or more than a day ahead of the fetch is no date at all (`dated` is then False and
`published` is the fetch time), and a date less than a day ahead (clock skew) is the fetch time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

EARLIEST_DATE = datetime(1970, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Story:
    id: str
    source: str
    url: str
    title: str
    text: str
    published: datetime
    guid: str = ""
    language: str = ""
    author: str = ""
    dated: bool = True  # False: the source gave no usable date, and `published` is the fetch time

    def __post_init__(self) -> None:
        if self.published.tzinfo is None:
            raise ValueError("Story.published must be timezone-aware")


def story_id(source: str, canonical_url: str, guid: str) -> str:
    """The stable id: the canonical URL when there is one, else the source-scoped GUID."""
    key = canonical_url if canonical_url else f"{source}\x00{guid}"
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:20]


def claimant_id(source: str, canonical_url: str) -> str:
    """The id of a story whose canonical URL another source's story holds already (as `story_id`)."""
    return hashlib.sha1(f"{source}\x01{canonical_url}".encode("utf-8")).hexdigest()[:20]


def settle_date(moment: datetime | None, now: datetime) -> datetime | None:
    """A publication date as stories carry it: None when there is none or it cannot be one
    (before 1970, or more than a day after `now`); `now` when it is ahead of `now` by less."""
    if moment is None or moment < EARLIEST_DATE or moment > now + FUTURE_TOLERANCE:
        return None
    return min(moment, now)
