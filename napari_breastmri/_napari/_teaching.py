"""Teaching mode's "guess first" logic, pure: ask, compare with the model and the truth, score.

Kept apart from Qt so the rules (what counts as right, what is revealed when) are tested alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: what a learner can be asked, with the classes the phantom's truth uses
QUESTIONS: dict[str, tuple[str, ...]] = {
    "subtype": ("luminal_a", "luminal_b", "her2_enriched", "triple_negative"),
    "pcr": ("no_pcr", "pcr"),
    "lymph_node": ("negative", "positive"),
    "screening": ("normal", "needs_review"),
}


@dataclass
class Answer:
    """One round: the learner's guess, the model's answer and the truth (when known)."""

    target: str
    guess: str
    model: str | None
    model_probability: float | None
    truth: str | None

    @property
    def correct(self) -> bool | None:
        return None if self.truth is None else self.guess == self.truth

    @property
    def model_correct(self) -> bool | None:
        return None if self.truth is None or self.model is None else self.model == self.truth


@dataclass
class GuessSession:
    """The score for this teaching session (kept in memory: a class, not a record)."""

    answers: list[Answer] = field(default_factory=list)

    def submit(self, target: str, guess: str, findings: Any = None, truth: dict | None = None) -> Answer:
        """Record a guess and return what is revealed after it."""
        model = prob = None
        pred = findings.case_predictions.get(target) if findings is not None else None
        if pred is not None:
            model = pred.top_class
            prob = float(pred.probabilities[model])
        truth_value = (truth or {}).get("labels", {}).get(target)
        answer = Answer(target, guess, model, prob, truth_value)
        self.answers.append(answer)
        return answer

    @property
    def score(self) -> tuple[int, int]:
        """(right, asked) over the rounds whose truth is known."""
        known = [a for a in self.answers if a.correct is not None]
        return (sum(bool(a.correct) for a in known), len(known))

    @property
    def model_score(self) -> tuple[int, int]:
        known = [a for a in self.answers if a.model_correct is not None]
        return (sum(bool(a.model_correct) for a in known), len(known))

    def reveal_text(self, answer: Answer, display: dict[str, str] | None = None) -> str:
        name = (display or {}).get
        parts = [f"Your guess: {name(answer.guess, answer.guess)}"]
        if answer.model is not None:
            parts.append(f"model: {name(answer.model, answer.model)} ({answer.model_probability:.2f})")
        else:
            parts.append("model: no prediction for this target")
        if answer.truth is not None:
            verdict = "right" if answer.correct else "wrong"
            parts.append(f"truth: {name(answer.truth, answer.truth)} - you were {verdict}")
        right, asked = self.score
        parts.append(f"session score {right}/{asked}")
        return "; ".join(parts)
