"""The trained model's file, and training it from label files and stored votes.

`load_model` reads the file `model.path` names (see `newswatch.alerts.config.ModelConfig`)
and returns the model, or None after ONE log line saying why the rules score alone: no file
yet, a file that is corrupt or truncated, or trained for other features or other topics.
`write_model` replaces the file atomically (a temporary file in the same folder, flushed to
disk, then renamed), so a reader sees the old model or the new one, never half of one.

`training_rows` joins the label files (the `newswatch eval` format) and the votes stored in
the database (`Votes.labels`): a story in both keeps the file's labels and takes the votes'
for the topics the file does not label. `train` fits the model on them (CPU-heavy: the
daemon runs it in a worker thread) and returns it with its report.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from newswatch.alerts.match.evaluation import load_labels
from newswatch.alerts.match.matcher import Matcher
from newswatch.alerts.match.model import ModelError, StoryModel, TopicFit, fit
from newswatch.alerts.match.topics import TopicConfig

log = logging.getLogger("newswatch.model")


def load_model(path: Path, topics: Iterable[str], *, missing: int = logging.INFO) -> StoryModel | None:
    """The model at `path` for these topics, or None (logged once, with the reason; a missing
    file at level `missing`)."""
    topics = list(topics)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        log.log(missing, "no model file at %s (newswatch train writes one): topics score by their rules alone", path)
        return None
    except OSError as exc:
        log.error("model file %s cannot be read (%s): topics score by their rules alone", path,
                  exc.strerror or exc)
        return None
    try:
        model = StoryModel.from_bytes(data, topics)
    except ModelError as exc:
        log.error("model file %s is not used: %s; topics score by their rules alone", path, exc)
        return None
    alone = [t for t in topics if t not in model.weights]
    log.info("model loaded from %s (created %s, topics %s%s)", path, model.meta.get("created", "?"),
             ", ".join(model.topics) or "none",
             f"; {', '.join(alone)} by rules alone" if alone else "")
    return model


def write_model(path: Path, model: StoryModel) -> None:
    """Write `model` to `path` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = model.to_bytes()
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, 0o644)
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def training_rows(label_files: Sequence[str | Path], votes: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The labelled stories of the files, then those of the votes (see the module's docstring)."""
    rows: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}
    for path in label_files:
        for row in load_labels(path):
            rows.append(row)
            if row.get("id"):
                by_id[str(row["id"])] = row
    for voted in votes:
        known = by_id.get(str(voted.get("id")))
        if known is None:
            rows.append(dict(voted))
            continue
        for key, value in voted.items():
            if value in (0, 1) and not isinstance(value, bool) and known.get(key) is None:
                known[key] = value
    return rows


def train(topics: Mapping[str, TopicConfig], rows: Sequence[Mapping[str, Any]], *, blend: float,
          label_files: Sequence[str | Path] = (), votes: int = 0) -> tuple[StoryModel, dict[str, TopicFit]]:
    """Fit a model for `topics` on `rows`; its metadata names when, and from which files and
    how many voted stories."""
    meta = {"created": datetime.now(UTC).isoformat(timespec="seconds"),
            "label_files": [str(Path(p).resolve()) for p in label_files], "voted_stories": votes}
    return fit(rows, Matcher(topics), blend=blend, meta=meta)
