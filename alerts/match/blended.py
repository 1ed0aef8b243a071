"""The blended matcher: the rules' scores moved toward a trained model's verdict.

`BlendedMatcher` wraps a `Matcher` and offers the same public calls (`topics`, `score`,
`matched`, `explain`), so the dispatcher, `newswatch eval` and `newswatch
explain` take either. Without a model, or with `blend` 0, every call returns exactly what the
`Matcher` returns. With one, each topic the model knows scores
(1 − blend) × rule score + blend × probability × 2 × threshold (see
`newswatch.alerts.match.model.blend_score`); topics it does not know keep their rule score.
"""

from __future__ import annotations

from typing import Any

from newswatch.alerts.match.matcher import Matcher, TopicScore
from newswatch.alerts.match.model import StoryModel, blend_score

__all__ = ["BlendedMatcher"]


class BlendedMatcher:
    """A `Matcher` whose scores a `StoryModel` adjusts by `blend` (0 to 1)."""

    def __init__(self, matcher: Matcher, model: StoryModel | None = None, blend: float = 0.0) -> None:
        if not 0 <= blend <= 1:
            raise ValueError(f"blend must be between 0 and 1, not {blend!r}")
        self.rules = matcher
        self.model = model
        self.blend = blend

    @property
    def topics(self) -> list[str]:
        return self.rules.topics

    @property
    def learning(self) -> bool:
        """True when a model takes part in the scores."""
        return self.model is not None and self.blend > 0

    def score(self, title: str, text: str) -> list[TopicScore]:
        """One `TopicScore` per topic, in configuration order."""
        scores = self.rules.score(title, text)
        if not self.learning:
            return scores
        assert self.model is not None
        probabilities = self.model.probabilities(title, text, scores)
        return [blend_score(s, probabilities[s.topic], self.blend) if s.topic in probabilities else s
                for s in scores]

    def matched(self, title: str, text: str) -> list[TopicScore]:
        """The scores of the topics the story has hits for, or a score from the model."""
        if not self.learning:
            return self.rules.matched(title, text)
        return [s for s in self.score(title, text) if s.terms or s.score]

    def explain(self, title: str, text: str) -> dict[str, Any]:
        """`Matcher.explain`, with each topic the model knows also holding "model":
        {"probability", "blend", "rules" (the rule score), "points" (what the model adds on the
        topic's scale)}, and "score" and "passed" blended."""
        out = self.rules.explain(title, text)
        if not self.learning:
            return out
        assert self.model is not None
        rules = self.rules.score(title, text)
        probabilities = self.model.probabilities(title, text, rules)
        for rule in rules:
            if rule.topic not in probabilities:
                continue
            p = probabilities[rule.topic]
            blended = blend_score(rule, p, self.blend)
            info = out["topics"][rule.topic]
            info["model"] = {"probability": round(p, 4), "blend": self.blend, "rules": rule.score,
                             "points": round(self.blend * p * 2 * rule.threshold, 4)}
            info["score"] = blended.score
            info["passed"] = blended.passed
        return out
