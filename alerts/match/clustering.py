"""Story clustering: recognising the same story published again, by another outlet or in
another version, so that one event raises one alert.

Each story gets a *signature*: a bottom-k MinHash sketch of its shingles, computed from the
title and the lead of the text (the first `lead` characters, where a news story states its
event) in the matcher's normal form (NFKC, lower case). Latin-script text gives content
words and pairs of consecutive content words (function words dropped); Korean, Chinese and
Japanese text gives runs of three characters (shorter words whole), so no word segmenter is
needed. The signature is plain bytes (a 4-byte shingle count followed by the k smallest 64-bit
shingle hashes), to be stored in SQLite as a BLOB and compared later without the text.

What it finds, measured on real articles: copies, new headlines, feed summaries, edited and
reordered versions of one report (nearly all of them, in English and Korean). Different
outlets' own reports of one event share far fewer shingles; `jaccard=0.1` finds about a third
of those pairs at a precision near 0.9, the default finds almost none of them.

Two signatures belong to the same event when their estimated Jaccard similarity reaches
`jaccard` (a rewrite, a new version, the same wire copy with another headline), or when most
of the smaller story's shingles occur in the larger one (`containment`: a feed summary against
the full article, a story cut short by another outlet).

Short and title-only items (an aggregator's "TITLE - Reuters" whose description only links to
the title, a dateline without a lead) have too few shingles for that rule. Before shingling,
an outlet's name after the title (" - Reuters", " | Yonhap", "(AP)") is dropped, and a text that
only repeats the title (with the outlet's name) counts as no text. When either of two stories
is short (its text adds fewer than `min_shingles` shingles to its title's), they are also
compared on their titles: the same event when the titles' shingle sets overlap by
`title_jaccard` or more.

Candidates are found without comparing a story with every recent one: a `Sketch` carries
locality-sensitive keys (MinHash banding of the body's shingles, and of the title's, plus one
key for the exact title), and only stories that share a key are compared. The keys are ints
kept in SQLite (`newswatch.alerts.story_clusters`), so the look-up does not compare a story with every
recent one. `match_cluster` ranks those candidates inside the time window
and returns the best matching cluster.

Pure: no I/O, no clock; shingles are hashed with XXH3 (64 bits, unseeded) and the MinHash
permutations are fixed, so signatures and keys are stable across processes and releases.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from xxhash import xxh3_64_intdigest

from newswatch.alerts.match.topics import is_cjk, normalize

__all__ = ["Sketch", "StoryClusterer", "clean_title", "shingles"]

_TOKEN = re.compile(r"[^\W_]+")
_STOP_WORDS = frozenset(
    """a about after against all also an and any are as at be been before being between both
    but by can could did do does during each for from had has have he her hers him his how i
    if in into is it its just may me more most my new no nor not now of off on once one only
    or other our out over own said says same she should so some such than that the their them
    then there these they this those through to too under until up very was we were what when
    where which while who whom why will with would you your""".split()
)
_HEADER = struct.Struct(">I")
MIN_CONTAINMENT_SAMPLES = 8  # fewer shared-range shingles than this tell nothing of containment


# An outlet's name after a headline: " - Reuters", " | Yonhap News Agency", " — The Korea Herald",
# " - ロイター", "(AP)". At most five words, and not the whole title.
_OUTLET_SUFFIX = re.compile(r"(?:\s+[-|–—:]\s+(?:\S+\s+){0,4}\S+|\s*[(（][A-Za-z. ]{2,12}[)）])\s*$")
_TITLE_CHARS = 400  # a headline longer than this is not one: only its start is read
_LINK_ONLY_WORDS = 3  # a text adding at most this many words to the title only links to it


def clean_title(title: str) -> str:
    """The headline without an outlet's name after it (as aggregators and syndicators add)."""
    title = title.strip()[:_TITLE_CHARS]
    stripped = _OUTLET_SUFFIX.sub("", title)
    return stripped if len(stripped) >= 12 else title


def _own_text(title: str, text: str) -> str:
    """The text, or "" when it only repeats the title (an aggregator's link-only description,
    such as "TITLE  Reuters")."""
    words, title_words = _TOKEN.findall(text), _TOKEN.findall(title)
    if len(words) > len(title_words) + 2 * _LINK_ONLY_WORDS:
        return text
    return "" if len(set(words) - set(title_words)) <= _LINK_ONLY_WORDS else text


def _shingles_of(text: str, out: set[str]) -> set[str]:
    previous = ""
    for token in _TOKEN.findall(text):
        if token[0] >= "\u1100" and is_cjk(token[0]):  # no Hangul, Han or Kana before U+1100
            previous = ""
            if len(token) < 3:
                out.add(token)
            for i in range(len(token) - 2):
                out.add(token[i : i + 3])
            continue
        if token in _STOP_WORDS or len(token) < 3:
            continue
        out.add(token)
        if previous:
            out.add(f"{previous} {token}")
        previous = token
    return out


def shingles(title: str, text: str, *, lead: int = 1000) -> set[str]:
    """The shingles a signature is built from: the title (without an outlet's name) and the
    first `lead` characters of the text, where news stories state the event (later paragraphs
    are background that other stories share). Latin script: content words and pairs of
    consecutive content words; Korean, Chinese and Japanese: runs of three characters
    (shorter words whole). A text that only repeats the title adds nothing."""
    return _story_shingles(title, text, lead)[0]


def _story_shingles(title: str, text: str, lead: int) -> tuple[set[str], set[str]]:
    """(the story's shingles, its headline's): every shingle of the headline is one of the story's."""
    head = normalize(clean_title(title))
    body = _own_text(head, normalize(text[: lead * 2])[:lead])
    return _shingles_of(f"{head}\n{body}", set()), _shingles_of(head, set())


def _hash(shingle: str) -> int:
    return xxh3_64_intdigest(shingle.encode("utf-8"))


def _permutations(name: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed (a, b) pairs of the hash functions x -> a*x + b (mod 2^64), a odd: the same in
    every process and release, since the keys they make are stored."""
    def word(i: int, part: str) -> int:
        return int.from_bytes(hashlib.blake2b(f"{name}:{part}:{i}".encode(), digest_size=8).digest(), "big")

    a = np.array([word(i, "a") | 1 for i in range(count)], dtype=np.uint64)
    b = np.array([word(i, "b") for i in range(count)], dtype=np.uint64)
    return a[:, None], b[:, None]


@dataclass(frozen=True, slots=True)
class Sketch:
    """What clustering keeps of a story: its signature (title and lead), its title's signature
    (the title's shingle hashes), and the look-up keys that find candidates."""

    signature: bytes
    title: bytes
    keys: tuple[int, ...]


class StoryClusterer:
    """Signatures for stories and the rule deciding that two of them report the same event."""

    def __init__(
        self,
        window: timedelta = timedelta(hours=36),
        *,
        k: int = 128,
        jaccard: float = 0.45,
        containment: float = 0.7,
        min_shingles: int = 20,
        lead: int = 1000,
        title_jaccard: float = 0.6,
        min_title_shingles: int = 4,
        bands: tuple[int, int] = (32, 3),
        title_bands: tuple[int, int] = (12, 4),
    ) -> None:
        if window <= timedelta(0):
            raise ValueError("window must be positive")
        if not 8 <= k <= 1024:
            raise ValueError("k must be between 8 and 1024")
        if not 0 < jaccard <= 1 or not 0 < containment <= 1:
            raise ValueError("jaccard and containment must be in (0, 1]")
        self.window = window
        self.k = k
        self.jaccard = jaccard
        self.containment = containment
        self.min_shingles = min_shingles
        self.lead = lead
        self.title_jaccard = title_jaccard
        self.min_title_shingles = min_title_shingles
        self.bands = bands
        self.title_bands = title_bands
        self._body_perms = _permutations("body", bands[0] * bands[1])
        self._title_perms = _permutations("title", title_bands[0] * title_bands[1])

    def sketch(self, title: str, text: str) -> Sketch:
        """The signature, title signature and look-up keys of a story."""
        story_shingles, head_shingles = _story_shingles(title, text, self.lead)
        hashes = {s: _hash(s) for s in story_shingles}
        body = set(hashes.values())
        heading = {hashes[s] for s in head_shingles}
        keys = [*_band_keys(body, self._body_perms, self.bands, 0),
                *_band_keys(heading, self._title_perms, self.title_bands, 1)]
        if heading:  # the exact title: aggregator copies of a headline always meet
            keys.append(_fold(sum(heading) & _MASK64 ^ 0x5BD1E995))
        if body:
            keys.append(self.content_key(title, text))
        return Sketch(_pack(body, self.k), _pack(heading, 1024), tuple(keys))

    def content_key(self, title: str, text: str) -> int:
        """A look-up key of the exact title and lead: a word-for-word copy (wire copy run as it
        came) finds its original by this one key, without computing a sketch."""
        return _fold(xxh3_64_intdigest(f"{title.strip()}\x00{text[: self.lead * 2]}".encode("utf-8")) ^ 0x3C6EF372)

    def same_story(self, a: Sketch, b: Sketch) -> bool:
        """The body rule (`same_event`); and, when either story is short or title-only (its text
        adds fewer than `min_shingles` shingles to its title's), the title rule: their
        headlines share `title_jaccard` of their shingles."""
        return self._judge(a, b) is not None

    def _judge(self, a: Sketch, b: Sketch) -> tuple[float, float] | None:
        """How alike two stories are, (Jaccard + containment, the titles' Jaccard), when they
        are the same story by `same_story`'s rules; None when they are not."""
        jaccard, containment, samples = self._compare(a.signature, b.signature)
        titles = self.title_similarity(a.title, b.title)
        if self._body_rule(jaccard, containment, samples, a.signature, b.signature) or (
                (self._thin(a) or self._thin(b)) and titles >= self.title_jaccard):
            return jaccard + containment, titles
        return None

    def _thin(self, sketch: Sketch) -> bool:
        """A short or title-only story: its text adds fewer than `min_shingles` to its title's."""
        count, _ = self._unpack(sketch.signature)
        title_count, _ = self._unpack(sketch.title)
        return count - title_count < self.min_shingles

    def title_similarity(self, title_a: bytes, title_b: bytes) -> float:
        """Jaccard similarity of two titles' shingles (0 when either is too short to tell)."""
        _, a = self._unpack(title_a)
        _, b = self._unpack(title_b)
        if min(len(a), len(b)) < self.min_title_shingles:
            return 0.0
        set_a, set_b = set(a), set(b)
        return len(set_a & set_b) / len(set_a | set_b)

    # -- signatures -------------------------------------------------------------------------

    def signature(self, title: str, text: str) -> bytes:
        """The sketch of a story: store it as a BLOB; `same_event` compares two of them."""
        return _pack({_hash(s) for s in shingles(title, text, lead=self.lead)}, self.k)

    @staticmethod
    def _unpack(signature: bytes) -> tuple[int, tuple[int, ...]]:
        if len(signature) < _HEADER.size or (len(signature) - _HEADER.size) % 8:
            raise ValueError("not a story signature")
        (count,) = _HEADER.unpack_from(signature)
        return count, struct.unpack_from(f">{(len(signature) - _HEADER.size) // 8}Q", signature, _HEADER.size)

    def similarity(self, sig_a: bytes, sig_b: bytes) -> tuple[float, float]:
        """Estimated (Jaccard, containment of the smaller story in the larger)."""
        jaccard, containment, _ = self._compare(sig_a, sig_b)
        return jaccard, containment

    def _compare(self, sig_a: bytes, sig_b: bytes) -> tuple[float, float, int]:
        """(Jaccard, containment, samples): `samples` is how many of the smaller story's
        shingles the containment figure rests on (few when a short story meets a long one
        whose sketch holds only a small part of its shingles)."""
        count_a, a = self._unpack(sig_a)
        count_b, b = self._unpack(sig_b)
        if not a or not b:
            return 0.0, 0.0, 0
        set_a, set_b = set(a), set(b)
        if count_a <= len(a) and count_b <= len(b):
            # both sketches hold every shingle: the figures are exact
            shared = len(set_a & set_b)
            union = len(set_a | set_b)
            return shared / union, shared / min(count_a, count_b), min(count_a, count_b)
        # the k smallest hashes of the union are a uniform sample of it
        sample = sorted(set_a | set_b)[: self.k]
        estimate = sum(1 for h in sample if h in set_a and h in set_b) / len(sample)
        union = (count_a + count_b) / (1 + estimate)
        shared = estimate * union
        (small_count, small), (_, big) = sorted(((count_a, set_a), (count_b, set_b)), key=lambda p: p[0])
        # the larger sketch holds every shingle of that story up to its largest hash: the
        # smaller story's shingles below it say how much of it the larger one contains
        largest = max(big)
        below = [h for h in small if h <= largest]
        if small_count <= len(small):
            containment = sum(1 for h in below if h in big) / len(below) if below else 0.0
        else:
            containment = min(1.0, shared / small_count)
        return shared / union, containment, len(below)

    def same_event(self, sig_a: bytes, sig_b: bytes) -> bool:
        """True when the two stories are copies or versions of one report."""
        return self._body_rule(*self._compare(sig_a, sig_b), sig_a, sig_b)

    def _body_rule(self, jaccard: float, containment: float, samples: int, sig_a: bytes, sig_b: bytes) -> bool:
        if jaccard >= self.jaccard:
            return True
        count_a, _ = self._unpack(sig_a)
        count_b, _ = self._unpack(sig_b)
        return (min(count_a, count_b) >= self.min_shingles and samples >= MIN_CONTAINMENT_SAMPLES
                and containment >= self.containment)

    def match_cluster(
        self,
        sketch: Sketch,
        published: datetime,
        candidates: Iterable[tuple[str | int, Sketch, datetime]],
    ) -> str | int | None:
        """The cluster of the most similar candidate published within the window, or None.

        "Most similar" ranks by Jaccard plus containment (then by the titles' likeness), so an
        exact copy beats a summary. `candidates` are (cluster_id, sketch, published) of earlier
        stories; datetimes must be comparable (all timezone-aware, as `Story.published` is).
        """
        best: tuple[float, float, str | int] | None = None
        for cluster_id, other, when in candidates:
            if abs(published - when) > self.window:
                continue
            likeness = self._judge(sketch, other)
            if likeness is not None and (best is None or likeness > best[:2]):
                best = (*likeness, cluster_id)
        return None if best is None else best[2]


_MASK64 = (1 << 64) - 1


def _pack(hashes: set[int], k: int) -> bytes:
    ordered = sorted(hashes)
    return _HEADER.pack(len(ordered)) + b"".join(h.to_bytes(8, "big") for h in ordered[:k])


def _fold(value: int) -> int:
    """A 64-bit value as a signed 63-bit SQLite integer."""
    return (value & _MASK64) >> 1


def _band_keys(hashes: set[int], perms: tuple[np.ndarray, np.ndarray], bands: tuple[int, int], kind: int) -> list[int]:
    """MinHash banding: one key per band of `rows` minimum values; two sets share a band's key
    with probability J^rows, so similar sets meet in some band and unrelated ones rarely do."""
    if not hashes:
        return []
    count, rows = bands
    values = np.fromiter(hashes, dtype=np.uint64, count=len(hashes))
    a, b = perms
    with np.errstate(over="ignore"):
        minimums = (a * values + b).min(axis=1).reshape(count, rows)
        mixed = minimums[:, 0]
        for r in range(1, rows):
            mixed = mixed * np.uint64(0x9E3779B97F4A7C15) + minimums[:, r]
        mixed = mixed * np.uint64(0xC2B2AE3D27D4EB4F) + np.arange(count, dtype=np.uint64) * np.uint64(2) + np.uint64(kind)
    return [int(v) >> 1 for v in mixed.tolist()]
