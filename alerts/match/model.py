"""The learned part of a topic's score: per topic, a logistic regression on hashed character
n-grams of a story's title and lead, plus the topic's rule score, trained on labelled stories.

Pure: bytes in, bytes out, no file and no clock of its own (`newswatch.alerts.model_file`
reads and writes the file; `newswatch train` and the daemon call `fit`).

Features. The story is read as the rules read it (title, then the first `LEAD_CHARS` of the
text) and hashed into `HASHING["n_features"]` columns of character 2- to 4-grams inside word
boundaries (scikit-learn's stateless `HashingVectorizer`, `analyzer="char_wb"`): nothing is
learned about the vocabulary, so Korean, Chinese and Japanese stories need no tokenizer, and a
model file needs no vocabulary. Two more columns carry the topic's rule verdict: its score over
its threshold (capped at `RULE_CAP`) and whether the rules pass it.

The file is one `.npz` without pickled objects: per topic its coefficients (float32) and
intercept, and a JSON string with the metadata (format, creation time, hashing parameters,
labels per topic, the cross-validated F1 of the rules alone and blended on the same folds, the
label files used). `StoryModel.from_bytes` refuses a file it cannot trust (corrupt, truncated,
another format, other hashing parameters, topics the configuration lacks) with a `ModelError`
naming the reason in one line.

Blending (`blend_score`): the model's probability p is put on the topic's scale as
p × 2 × threshold (so p = 0.5 sits exactly on the threshold), and the score is
(1 − blend) × rule score + blend × that. A story at the threshold by the rules that the model
finds as likely as not stays at the threshold; blend 0 is the rules alone, blend 1 passes a
story when the model finds it more likely than not. The topic's `require:` groups still hold.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from newswatch.alerts.match.matcher import Matcher, TopicScore

if TYPE_CHECKING:
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression

# scipy and scikit-learn are imported where they are used: they take most of a second to
# import, and a daemon without a model file (or a command that trains none) never needs them.

__all__ = [
    "FORMAT",
    "HASHING",
    "ModelError",
    "StoryModel",
    "TopicFit",
    "blend_score",
    "fit",
]

FORMAT = 1
HASHING: dict[str, Any] = {
    "analyzer": "char_wb",
    "ngram_range": [2, 4],
    "n_features": 2**18,
    "lowercase": True,
    "alternate_sign": False,
    "norm": "l2",
}
LEAD_CHARS = 2000  # as much of the text as the rules read by default (`text_chars`)
RULE_CAP = 4.0  # a rule score over its threshold counts up to this much
RULE_COLUMNS = 2  # score / threshold, passed
# Inverse regularisation: 1 did as well as 10 and 30 in 5-fold cross-validation on
# ../shared/eval/dev.jsonl, and trains three times faster than 30.
REGULARISATION_C = 1.0
FOLDS = 5


class ModelError(ValueError):
    """A model file that cannot be used; the message says why, in one line."""


def _vectorizer() -> HashingVectorizer:
    from sklearn.feature_extraction.text import HashingVectorizer

    params = {**HASHING, "ngram_range": tuple(HASHING["ngram_range"])}
    return HashingVectorizer(dtype=np.float32, **params)


def story_text(title: str, text: str) -> str:
    """What the model reads: the title and the lead of the text."""
    return f"{title}\n{(text or '')[:LEAD_CHARS]}"


def rule_columns(score: TopicScore) -> list[float]:
    """The rule verdict as the model sees it."""
    ratio = min(score.score / score.threshold, RULE_CAP) if score.threshold else 0.0
    return [ratio, 1.0 if score.passed else 0.0]


def blend_score(rule: TopicScore, probability: float, blend: float) -> TopicScore:
    """The rule score moved toward the model's verdict, on the topic's own scale."""
    learned = probability * 2 * rule.threshold
    return rule._replace(score=round((1 - blend) * rule.score + blend * learned, 4))


def _passes(score: float, rule: TopicScore) -> bool:
    return score >= rule.threshold and not rule.missing


@dataclass(frozen=True)
class TopicFit:
    """What training found for one topic: its labels and the cross-validated F1 of the rules
    alone and blended (None when there were too few labels of one kind to fold)."""
    positives: int
    negatives: int
    rules_f1: float | None = None
    blended_f1: float | None = None
    model_f1: float | None = None  # blend 1: the model alone

    @property
    def used(self) -> bool:
        """Whether the model takes part in this topic's scores: only when blending beat the
        rules alone on the folds (a model that cannot show a gain leaves the rules as they are)."""
        return self.rules_f1 is not None and self.blended_f1 is not None and self.blended_f1 > self.rules_f1

    def as_dict(self) -> dict[str, Any]:
        return {"positives": self.positives, "negatives": self.negatives, "rules_f1": self.rules_f1,
                "blended_f1": self.blended_f1, "model_f1": self.model_f1, "used": self.used}


@dataclass(frozen=True)
class StoryModel:
    """One logistic regression per topic; `probabilities` reads a story once for all of them."""
    weights: Mapping[str, tuple[np.ndarray, float]]  # topic -> (coefficients, intercept)
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def topics(self) -> list[str]:
        return list(self.weights)

    def probabilities(self, title: str, text: str, rules: Sequence[TopicScore]) -> dict[str, float]:
        """topic -> probability that the story belongs to it, for the topics the model knows."""
        known = [r for r in rules if r.topic in self.weights]
        if not known:
            return {}
        row = _vectorizer().transform([story_text(title, text)])
        out = {}
        for rule in known:
            coef, intercept = self.weights[rule.topic]
            hashed = coef[: -RULE_COLUMNS]
            logit = float(row.dot(hashed)[0]) + float(np.dot(coef[-RULE_COLUMNS:], rule_columns(rule))) + intercept
            out[rule.topic] = _sigmoid(logit)
        return out

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {}
        topics = list(self.weights)
        for i, topic in enumerate(topics):
            coef, intercept = self.weights[topic]
            arrays[f"coef_{i}"] = np.asarray(coef, dtype=np.float32)
            arrays[f"intercept_{i}"] = np.asarray([intercept], dtype=np.float64)
        meta = {**self.meta, "format": FORMAT, "hashing": HASHING, "rule_columns": RULE_COLUMNS, "topics": topics}
        arrays["meta"] = np.array(json.dumps(meta, ensure_ascii=False))
        out = io.BytesIO()
        np.savez_compressed(out, **arrays)
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, topics: Iterable[str]) -> StoryModel:
        """The model in `data`, for a configuration with `topics`; a `ModelError` when it cannot
        be used."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"][()]))
                if not isinstance(meta, dict):
                    raise ModelError("its metadata is not a JSON object")
                if meta.get("format") != FORMAT:
                    raise ModelError(f"format {meta.get('format')!r}, this version reads {FORMAT}")
                if meta.get("hashing") != HASHING or meta.get("rule_columns") != RULE_COLUMNS:
                    raise ModelError(f"trained with other features ({json.dumps(meta.get('hashing'))}); "
                                     "train it again with newswatch train")
                names = meta.get("topics")
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise ModelError("its metadata names no topics")
                unknown = [n for n in names if n not in set(topics)]
                if unknown:
                    raise ModelError(f"trained for topics the config does not have: {', '.join(unknown)}")
                weights = {}
                size = HASHING["n_features"] + RULE_COLUMNS
                for i, name in enumerate(names):
                    coef = np.asarray(npz[f"coef_{i}"], dtype=np.float64)
                    intercept = npz[f"intercept_{i}"]
                    if coef.shape != (size,) or intercept.shape != (1,) or not np.isfinite(coef).all():
                        raise ModelError(f"the weights of topic {name} have the wrong shape or are not numbers")
                    weights[name] = (coef, float(intercept[0]))
        except ModelError:
            raise
        except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError, TypeError) as exc:
            raise ModelError(f"not a readable model file ({type(exc).__name__}: {exc})") from None
        return cls(weights, meta)


def _sigmoid(x: float) -> float:
    return float(1 / (1 + np.exp(-np.clip(x, -30, 30))))


def _labelled(rows: Sequence[Mapping[str, Any]], topic: str) -> tuple[list[int], np.ndarray]:
    """Indexes of the rows with a 0/1 label for `topic`, and the labels."""
    index, labels = [], []
    for i, row in enumerate(rows):
        value = row.get(topic)
        if row.get("unsure") or value not in (0, 1, True, False):
            continue
        index.append(i)
        labels.append(int(value))
    return index, np.array(labels, dtype=np.int8)


def _f1(guess: np.ndarray, gold: np.ndarray) -> float:
    tp = int(np.sum(guess & (gold == 1)))
    fp = int(np.sum(guess & (gold == 0)))
    fn = int(np.sum(~guess & (gold == 1)))
    return round(2 * tp / (2 * tp + fp + fn), 4) if tp else 0.0


def _regression(seed: int) -> LogisticRegression:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=REGULARISATION_C, max_iter=2000, solver="liblinear", random_state=seed)


def fit(rows: Sequence[Mapping[str, Any]], matcher: Matcher, *, blend: float, folds: int = FOLDS,
        seed: int = 0, meta: Mapping[str, Any] | None = None) -> tuple[StoryModel, dict[str, TopicFit]]:
    """Measure on `folds` stratified folds, per topic with both positive and negative labels in
    `rows` (`title`, `text`, a 0/1 field per topic, `unsure` rows skipped), the F1 of the rules
    alone, blended at `blend`, and of the model alone; and train the topic's regression on all
    its labels when blending beat the rules (`TopicFit.used`). The other topics keep their
    rule scores."""
    from scipy import sparse

    hashed = _vectorizer().transform([story_text(r.get("title") or "", r.get("text") or "") for r in rows])
    rule_scores = [matcher.score(r.get("title") or "", r.get("text") or "") for r in rows]
    weights: dict[str, tuple[np.ndarray, float]] = {}
    report: dict[str, TopicFit] = {}
    for t_index, topic in enumerate(matcher.topics):
        index, gold = _labelled(rows, topic)
        positives, negatives = int(gold.sum()), int(len(gold) - gold.sum())
        if not positives or not negatives:
            if index:
                report[topic] = TopicFit(positives, negatives)
            continue
        rules = [rule_scores[i][t_index] for i in index]
        features = sparse.hstack([hashed[index], sparse.csr_matrix([rule_columns(r) for r in rules])]).tocsr()
        report[topic] = _cross_validate(features, gold, rules, blend, folds, seed)
        if report[topic].used:
            fitted = _regression(seed).fit(features, gold)
            weights[topic] = (fitted.coef_[0].astype(np.float64), float(fitted.intercept_[0]))
    model_meta = {**(meta or {}), "labels": {t: {"positives": f.positives, "negatives": f.negatives}
                                             for t, f in report.items()},
                  "cv": {t: f.as_dict() for t, f in report.items()}, "blend": blend, "folds": folds}
    return StoryModel(weights, model_meta), report


def _cross_validate(features: Any, gold: np.ndarray, rules: list[TopicScore], blend: float, folds: int,
                    seed: int) -> TopicFit:
    positives, negatives = int(gold.sum()), int(len(gold) - gold.sum())
    splits = min(folds, positives, negatives)
    if splits < 2:
        return TopicFit(positives, negatives)
    from sklearn.model_selection import StratifiedKFold

    probability = np.zeros(len(gold))
    for train, test in StratifiedKFold(splits, shuffle=True, random_state=seed).split(np.zeros(len(gold)), gold):
        probability[test] = _regression(seed).fit(features[train], gold[train]).predict_proba(features[test])[:, 1]
    by_rules = np.array([r.passed for r in rules])
    blended = np.array([blend_score(r, p, blend).passed for r, p in zip(rules, probability)])
    alone = np.array([_passes(blend_score(r, p, 1.0).score, r) for r, p in zip(rules, probability)])
    return TopicFit(positives, negatives, _f1(by_rules, gold), _f1(blended, gold), _f1(alone, gold))
