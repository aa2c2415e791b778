"""LLM-as-judge: single-answer grading and pairwise comparison with validated JSON verdicts.

Zheng et al. 2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena": a strong model
grades an answer on a scale (single-answer grading) or picks the better of two (pairwise).
LLM judges favour the answer shown first (position bias), so every pair is judged in both
orders; a win counts only when both orders agree, and a disagreement counts as a tie.

Any :class:`~ladder.models.base.LanguageModel` is a judge (``load_model("hf:./ckpt")``,
``load_model("openai:MODEL@http://host:8000/v1")``). Decoding is greedy (temperature 0) with
a recorded seed. A verdict is a JSON object validated with pydantic
(:func:`ladder.evaluate.verdicts.ask_json`): an invalid one is asked again, with the
validation error fed back, up to ``attempts`` times; after that the row records the error.
Scores are over the valid rows, and the signature and details say how many rows that is
(``valid:9/10``) and which rows failed.

    from ladder.evaluate.judge import JudgeSettings, grade_single
    from ladder.evaluate.rubric import BUILTIN_RUBRICS
    result = grade_single(judge, answers, rubric=BUILTIN_RUBRICS["helpfulness"],
                          questions=questions, settings=JudgeSettings())
    result.score.value, result.errors, result.rows[0]["rationale"]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model, field_validator

from ladder.evaluate._common import mean_score
from ladder.evaluate.rubric import Rubric
from ladder.evaluate.score import CISettings, Score, make_signature
from ladder.evaluate.verdicts import Asked, ask_json
from ladder.models.base import GenerationParams, LanguageModel

__all__ = [
    "PAIRWISE_HINT",
    "SINGLE_HINT",
    "JudgeResult",
    "JudgeSettings",
    "PairwiseVerdict",
    "compare_pairwise",
    "grade_single",
    "judged_score",
    "single_verdict_model",
]

SINGLE_HINT = '{"rationale": "...", "score": N}'
PAIRWISE_HINT = '{"rationale": "...", "winner": "A" or "B" or "tie"}'


class PairwiseVerdict(BaseModel):
    """The judge's choice between answer A and answer B."""

    rationale: str
    winner: Literal["A", "B", "tie"]

    @field_validator("winner", mode="before")
    @classmethod
    def _canonical(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().strip(".")
            return text.upper() if text.upper() in ("A", "B") else text.lower()
        return value


def single_verdict_model(low: int, high: int) -> type[BaseModel]:
    """A verdict model ``{rationale: str, score: int in [low, high]}`` for one scale."""
    return create_model(
        f"SingleVerdict_{low}_{high}",
        rationale=(str, Field(description="Why the score, in a sentence or two.")),
        score=(int, Field(ge=low, le=high, description=f"Whole number from {low} to {high}.")),
    )


@dataclass(frozen=True)
class JudgeSettings:
    """How the judge is asked. Decoding is always greedy (temperature 0).

    Attributes:
        attempts: Replies asked for per verdict before the row records an error.
        max_tokens: Most tokens of one reply.
        seed: Sent with every request (and recorded in the signature).
        ci: Bootstrap settings of the score's interval.
    """

    attempts: int = 3
    max_tokens: int = 512
    seed: int = 0
    ci: CISettings = field(default_factory=CISettings)

    @property
    def params(self) -> GenerationParams:
        """Greedy decoding with the seed."""
        return GenerationParams(max_tokens=self.max_tokens, temperature=0.0, seed=self.seed)

    def signature_fields(self, judge: LanguageModel) -> dict[str, Any]:
        """Judge model, backend, temperature, seed and attempts for a score's signature."""
        info = judge.info
        return {
            "judge": info.name,
            "backend": info.backend,
            "temp": 0,
            "judge_seed": self.seed,
            "attempts": self.attempts,
        }


@dataclass
class JudgeResult:
    """A judged file: the score over valid rows and one JSON-ready record per row."""

    mode: str
    score: Score
    rows: list[dict[str, Any]]

    @property
    def errors(self) -> int:
        """Rows whose verdict could not be obtained (each has an ``error``)."""
        return sum(1 for row in self.rows if row.get("error"))

    def summary(self) -> dict[str, Any]:
        """``{mode, rows, valid, errors, score}``."""
        return {
            "mode": self.mode,
            "rows": len(self.rows),
            "valid": len(self.rows) - self.errors,
            "errors": self.errors,
            "score": self.score.to_dict(),
        }


def judged_score(
    metric: str,
    values: Sequence[float | None],
    ci: CISettings,
    signature: dict[str, Any],
    details: dict[str, Any] | None = None,
) -> Score:
    """Mean over the rows with a value (``None`` = a recorded error), with a bootstrap CI.

    The signature gets ``valid:K/N`` and the details ``rows``, ``valid``, ``errors`` and
    ``failed_rows`` (1-based). With no valid row the value is NaN (``null`` in JSON) and
    there is no interval: nothing was measured.
    """
    valid = [v for v in values if v is not None]
    failed = [i + 1 for i, v in enumerate(values) if v is None]
    sig = {**signature, "valid": f"{len(valid)}/{len(values)}"}
    info = {"rows": len(values), "valid": len(valid), "errors": len(failed), "failed_rows": failed}
    info.update(details or {})
    if valid:
        return mean_score(metric, valid, ci, sig, info)
    full = make_signature({"metric": metric, **sig, **ci.signature_fields()})
    return Score(metric, math.nan, [], None, None, 0, full, info)


def grade_single(
    judge: LanguageModel,
    answers: Sequence[str],
    *,
    rubric: Rubric,
    settings: JudgeSettings,
    questions: Sequence[str] | None = None,
    references: Sequence[str] | None = None,
) -> JudgeResult:
    """Grade each answer on the rubric's scale; the score is the mean grade of valid rows."""
    n = len(answers)
    qs, refs = questions or [""] * n, references or [""] * n
    convs = [
        rubric.messages(question=q, answer=a, reference=r)
        for q, a, r in zip(qs, answers, refs, strict=True)
    ]
    schema = single_verdict_model(*rubric.scale)
    asked = ask_json(
        judge, convs, schema, settings.params, attempts=settings.attempts, hint=SINGLE_HINT
    )
    rows, values = [], []
    for i, (ask, q, a, r) in enumerate(zip(asked, qs, answers, refs, strict=True)):
        verdict: Any = ask.verdict
        values.append(None if verdict is None else float(verdict.score))
        rows.append(
            {
                "row": i + 1,
                "question": q,
                "answer": a,
                "reference": r,
                "score": None if verdict is None else verdict.score,
                "rationale": None if verdict is None else verdict.rationale,
                "attempts": ask.attempts,
                "error": ask.error,
                **({"replies": ask.replies} if ask.error else {}),
            }
        )
    low, high = rubric.scale
    sig = {"rubric": f"{rubric.name}-{rubric.digest}", "scale": f"{low}-{high}"}
    sig |= settings.signature_fields(judge)
    return JudgeResult("single", judged_score("judge", values, settings.ci, sig), rows)


def compare_pairwise(
    judge: LanguageModel,
    answers: Sequence[str],
    baselines: Sequence[str],
    *,
    rubric: Rubric,
    settings: JudgeSettings,
    questions: Sequence[str] | None = None,
    references: Sequence[str] | None = None,
) -> JudgeResult:
    """Answers against baselines, each pair judged in both orders (Zheng et al. 2023).

    Per row: 1 when both orders prefer the answer, 0 when both prefer the baseline, and
    0.5 otherwise (a tie in both, or orders that disagree). The score is the answers' win
    rate with ties counted half.
    """
    n = len(answers)
    qs, refs = questions or [""] * n, references or [""] * n
    forward = [
        rubric.messages(question=q, reference=r, answer_a=a, answer_b=b)
        for q, r, a, b in zip(qs, refs, answers, baselines, strict=True)
    ]
    swapped = [
        rubric.messages(question=q, reference=r, answer_a=b, answer_b=a)
        for q, r, a, b in zip(qs, refs, answers, baselines, strict=True)
    ]
    asked = ask_json(
        judge,
        forward + swapped,
        PairwiseVerdict,
        settings.params,
        attempts=settings.attempts,
        hint=PAIRWISE_HINT,
    )
    rows, values = [], []
    for i in range(n):
        row = _pairwise_row(i, asked[i], asked[n + i], qs[i], answers[i], baselines[i])
        rows.append(row)
        values.append(row["value"])
    outcomes = [row["outcome"] for row in rows if not row["error"]]
    details = {o: outcomes.count(o) for o in ("win", "loss", "tie")}
    details["inconsistent"] = sum(1 for row in rows if row["consistent"] is False)
    sig = {"rubric": f"{rubric.name}-{rubric.digest}", "orders": "both", "disagree": "tie"}
    sig |= settings.signature_fields(judge)
    score = judged_score("judge_pairwise", values, settings.ci, sig, details)
    return JudgeResult("pairwise", score, rows)


_OUTCOME = {"answer": ("win", 1.0), "baseline": ("loss", 0.0), "tie": ("tie", 0.5)}


def _pairwise_row(
    i: int,
    forward: Asked[PairwiseVerdict],
    swapped: Asked[PairwiseVerdict],
    question: str,
    answer: str,
    baseline: str,
) -> dict[str, Any]:
    """One row: map both verdicts back to answer/baseline and combine them."""
    row: dict[str, Any] = {"row": i + 1, "question": question, "answer": answer}
    row["baseline"] = baseline
    prefs = []
    for key, ask, first in (
        ("answer_first", forward, "answer"),
        ("baseline_first", swapped, "baseline"),
    ):
        second = "baseline" if first == "answer" else "answer"
        verdict = ask.verdict
        pref = None if verdict is None else {"A": first, "B": second, "tie": "tie"}[verdict.winner]
        prefs.append(pref)
        row[key] = {
            "winner": pref,
            "rationale": None if verdict is None else verdict.rationale,
            "attempts": ask.attempts,
            "error": ask.error,
            **({"replies": ask.replies} if ask.error else {}),
        }
    errors = [
        f"{order.replace('_', ' ')}: {ask.error}"
        for order, ask in (("answer_first", forward), ("baseline_first", swapped))
        if ask.error
    ]
    if errors:
        row.update(outcome=None, value=None, consistent=None, error="; ".join(errors))
        return row
    consistent = prefs[0] == prefs[1]
    outcome, value = _OUTCOME[prefs[0] if consistent and prefs[0] else "tie"]
    row.update(outcome=outcome, value=value, consistent=consistent, error=None)
    return row
