"""The `Story`: one news item as every later stage sees it, whatever source it came from.

A story is immutable and carries timezone-aware datetimes. Its `id` is stable across polls,
GUID rewrites and tracking parameters: it derives from the canonical URL when the item has a
link, and from the source name and GUID otherwise.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime


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

    def __post_init__(self) -> None:
        if self.published.tzinfo is None:
            raise ValueError("Story.published must be timezone-aware")


def story_id(source: str, canonical_url: str, guid: str) -> str:
    """The stable id: the canonical URL when there is one, else the source-scoped GUID."""
    key = canonical_url if canonical_url else f"{source}\x00{guid}"
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:20]
