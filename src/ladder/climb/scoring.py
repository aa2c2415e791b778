"""Scoring a rung's answers the same way for every rung: the task's metric, its CI, the cost.

Every rung answers the same test records; :func:`score_rung` parses each answer as the task's
output type (:func:`ladder.climb.task.parse_output`), scores it with the task's metric and a
bootstrap CI (same seed and resamples for every rung), writes ``predictions.jsonl``, prices
the tokens and the compute seconds, and compares the answers with the rung ``below`` by the
paired bootstrap (:func:`paired_on_task`). The verdict comes from :mod:`ladder.climb.stop_rule`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladder.climb.honest import TIED, compare
from ladder.climb.measure import PairedOutcome, paired_test, percentile
from ladder.climb.parts import Cost, Difference, Provenance, Score, Timing, VsBelow
from ladder.climb.record import Row
from ladder.climb.rungs import Rung, RungResult
from ladder.climb.state import prediction_texts, write_predictions
from ladder.climb.stop_rule import verdict
from ladder.climb.task import LoadedTask, TaskSpec, parse_output

__all__ = [
    "QualityVerdict",
    "RungJob",
    "paired_on_task",
    "quality_verdict",
    "score_rung",
    "task_score",
    "tokens_per_second",
]


@dataclass(frozen=True)
class RungJob:
    """One rung to run and score: a rung of the climb or a cheaper variant.

    Attributes:
        task: the task it answers (a variant's may differ: a shorter prompt).
        name: the rung's leaderboard name.
        model: the model spec it runs on.
        rung: the built rung.
        folder: its own folder (predictions, checkpoints).
        below: the last finished rung under it on the same model, for the paired test.
        tuned: the last fine-tuning row below it on the same model (dpo starts from its
            checkpoint).
    """

    task: LoadedTask
    name: str
    model: str
    rung: Rung
    folder: Path
    below: Row | None = None
    tuned: Row | None = None


def paired_on_task(
    task: LoadedTask, predictions_a: Sequence[str], predictions_b: Sequence[str]
) -> PairedOutcome:
    """A against B on the task's test references: the task's metric, resamples, confidence
    and seed (Koehn 2004's paired bootstrap)."""
    s = task.spec
    return paired_test(
        s.metric_name(),
        s.metric_options,
        predictions_a,
        predictions_b,
        task.references(),
        resamples=s.resamples,
        confidence=s.confidence,
        seed=s.seed,
    )


@dataclass(frozen=True)
class QualityVerdict:
    """Whether answers keep another row's quality on the same test records.

    Attributes:
        difference: this row's metric minus the other's, with its paired-bootstrap CI.
        keeps: no significant loss (and, where asked, still good enough).
        reason: one sentence with the numbers.
    """

    difference: Difference
    keeps: bool
    reason: str


def quality_verdict(
    task: LoadedTask, row: Row, reference: Row, *, good_enough: bool = True
) -> QualityVerdict:
    """``row`` against ``reference`` by the paired bootstrap (Koehn 2004): it keeps quality
    when the interval of (row - reference) reaches 0 or above, and, with ``good_enough``,
    its value is still at least the task's ``good_enough``."""
    s = task.spec
    outcome = paired_on_task(task, prediction_texts(row), prediction_texts(reference))
    value, best = row.score.value or 0.0, reference.score.value or 0.0
    said = compare(outcome, s.confidence)
    interval = f"{s.confidence:.0%} CI [{outcome.ci_low:+.3f}, {outcome.ci_high:+.3f}]"
    head = (
        f"{row.score.metric} {value:.3f} vs {best:.3f}, difference {outcome.delta:+.3f} "
        f"({interval}; MDE {said.mde:.3f} at n={said.n})"
    )
    no_loss = outcome.ci_high >= -1e-12
    keeps = no_loss and (not good_enough or value >= s.good_enough)
    if keeps:
        tied = "tied: " if said.call == TIED else ""
        reason = f"{head}: {tied}the interval reaches 0, so no significant loss"
    elif not no_loss:
        reason = f"{head}: significantly worse"
    else:
        reason = f"{head}: below good_enough {s.good_enough}"
    difference = Difference(outcome.delta, outcome.ci_low, outcome.ci_high)
    return QualityVerdict(difference, keeps, reason)


def tokens_per_second(result: RungResult) -> float | None:
    """Tokens generated per second of answering: the completion tokens over the summed
    per-record latencies (a batch's time is split between its records, so the sum is the
    time spent); None when nothing was generated or no time was measured."""
    seconds = sum(result.latencies)
    if seconds <= 0 or result.completion_tokens <= 0:
        return None
    return round(result.completion_tokens / seconds, 2)


def task_score(
    spec: TaskSpec, result: RungResult, references: Sequence[Any]
) -> tuple[list[Any], Any]:
    """A rung's answers parsed as the task's output, and the task's metric over them (with
    the task's resamples, confidence and seed)."""
    from ladder.evaluate import get_metric

    predictions = [
        parse_output(a if a is not None else o, spec.output)
        for a, o in zip(result.answers, result.outputs, strict=True)
    ]
    score = get_metric(
        spec.metric_name(),
        resamples=spec.resamples,
        confidence=spec.confidence,
        seed=spec.seed,
        **spec.metric_options,
    ).compute(predictions, references)
    return predictions, score


def score_rung(job: RungJob, result: RungResult) -> Row:
    """The row of ``job`` from its ``result``, with its verdict.

    Writes ``predictions.jsonl`` into the job's folder and compares the answers with the
    saved predictions of the job's ``below`` row (when there is one).
    """
    task, s = job.task, job.task.spec
    predictions, score = task_score(s, result, task.references())
    write_predictions(job.folder, task, result, predictions, score.per_example)
    usd = result.token_cost_usd + result.compute_seconds * s.compute_hour_usd / 3600.0
    row = Row(
        job.name,
        job.model,
        Score(s.metric_name(), score.value, score.ci_low, score.ci_high, score.n, score.signature),
        answered_by=result.model,
        cost=Cost(
            usd,
            result.prompt_tokens,
            result.completion_tokens,
            round(result.compute_seconds, 3),
        ),
        timing=Timing(
            percentile(result.latencies, 0.5),
            percentile(result.latencies, 0.95),
            tokens_per_s=tokens_per_second(result),
        ),
        training=result.training,
        provenance=Provenance(str(job.folder), template_version=result.template_version),
    )
    if job.below is not None:
        outcome = paired_on_task(task, predictions, prediction_texts(job.below))
        said = compare(outcome, s.confidence)
        row.below = VsBelow(
            job.below.rung,
            said.delta,
            said.p_value,
            said.ci_low,
            said.ci_high,
            said.mde,
            said.needed_n,
            said.call,
        )
    row.verdict = verdict(row, task, job.below)
    return row
