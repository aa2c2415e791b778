"""The judge column: an LLM judge grades every finished rung's answers next to the metric.

A metric such as ROUGE counts shared words; whether a riddle is a riddle, or an answer is
right in other words than the reference, takes a reader. With a ``judge:`` section in the
task (and a judge model, from the task or ``ladder climb --judge SPEC``), each finished
rung's parsed answers are graded by single-answer grading on a rubric (Zheng et al. 2023,
:mod:`ladder.evaluate.judge`): the question is the test input, the reference the test
reference. The rung's row gets the mean grade with its bootstrap CI (same resamples,
confidence and seed as the metric) and how many verdicts were valid; the rung's folder gets
``judgments.jsonl`` (one verdict per record, with its rationale) and ``judge.json``.

The judge informs; the metric decides, unless ``judge.min_score`` is set: then a rung is good
enough only when its mean grade is at least that as well. The judge is left out of the task's
fingerprint, so adding or changing one and running ``--resume`` grades the finished rungs'
saved answers without running them again (:func:`needs_judging`). Cheaper variants are not
judged: they are compared with the recommended rung on the metric.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladder.climb.parts import JudgeColumn
from ladder.climb.record import Row
from ladder.climb.rungs import ModelCache
from ladder.climb.state import predictions_of
from ladder.climb.task import LoadedTask, judge_rubric
from ladder.errors import ConfigError
from ladder.evaluate.judge import JudgeSettings, grade_single
from ladder.evaluate.rubric import Rubric
from ladder.evaluate.score import CISettings
from ladder.fsutil import atomic_write_text

__all__ = ["Judge", "make_judge", "needs_judging"]

JUDGMENTS_FILE = "judgments.jsonl"
SUMMARY_FILE = "judge.json"


@dataclass(frozen=True)
class Judge:
    """A judge model spec, its rubric and its settings, ready to grade rows."""

    model: str
    rubric: Rubric
    settings: JudgeSettings
    min_score: float | None

    @property
    def key(self) -> str:
        """What a row's grades depend on: judge model, rubric version and settings."""
        s = self.settings
        return (
            f"{self.model}|{self.rubric.name}-{self.rubric.digest}|max_tokens={s.max_tokens}"
            f"|attempts={s.attempts}|seed={s.seed}"
        )

    def grade(self, task: LoadedTask, row: Row, models: ModelCache) -> JudgeColumn:
        """Grade ``row``'s saved answers; writes the verdicts into its folder and returns the
        judge column (the caller puts it on the row).

        A verdict the judge could not give (invalid JSON after every attempt, or an
        unreachable judge) is recorded on its record and left out of the mean; with no valid
        verdict at all the row's judge value stays ``None``.
        """
        records = predictions_of(row)
        result = grade_single(
            models.get(self.model),
            [str(r["prediction"]) for r in records],
            rubric=self.rubric,
            settings=self.settings,
            questions=[str(r["input"]) for r in records],
            references=[str(r["reference"]) for r in records],
        )
        score = result.score
        folder = Path(row.provenance.folder)
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result.rows)
        atomic_write_text(folder / JUDGMENTS_FILE, lines)
        summary: dict[str, Any] = {**result.summary(), "judge": self.model, "key": self.key}
        atomic_write_text(folder / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
        return JudgeColumn(
            key=self.key,
            value=None if math.isnan(score.value) else score.value,
            ci_low=score.ci_low,
            ci_high=score.ci_high,
            valid=f"{len(result.rows) - result.errors}/{len(result.rows)}",
            signature=score.signature,
        )


def make_judge(task: LoadedTask, model: str | None = None) -> Judge | None:
    """The task's judge, with ``model`` (the ``--judge`` flag) replacing its model.

    ``None`` when there is no judge model: neither the task nor the flag names one. A flag
    without a ``judge:`` section judges with the default rubric (correctness against the
    reference).
    """
    from ladder.climb.task import JudgeSpec
    from ladder.errors import LadderError
    from ladder.models import check_spec

    spec = task.spec.judge or JudgeSpec()
    chosen = model or spec.model
    if chosen is None:
        return None
    try:  # a bad spec stops the climb before any rung runs, not after the first
        check_spec(chosen)
    except LadderError as exc:
        where = "--judge" if model else f"{task.path}: field 'judge.model'"
        raise ConfigError(f"{where}: {exc}") from None
    s = task.spec
    settings = JudgeSettings(
        attempts=spec.attempts,
        max_tokens=spec.max_tokens,
        seed=s.seed,
        ci=CISettings(resamples=s.resamples, confidence=s.confidence, seed=s.seed),
    )
    rubric = judge_rubric(spec, task.base, where=str(task.path))
    return Judge(chosen, rubric, settings, spec.min_score)


def needs_judging(judge: Judge | None, row: Row) -> bool:
    """Whether ``row`` is a finished rung whose grades are missing or from another judge."""
    graded_by = row.judge.key if row.judge is not None else ""
    return judge is not None and row.done and graded_by != judge.key
