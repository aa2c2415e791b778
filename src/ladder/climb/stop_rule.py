"""What the climb decides from its rows: the stop rule, the recommendation and the budget.

The stop rule (the rules are listed in :mod:`ladder.climb.climb`) gives each row its
:class:`~ladder.climb.record.Verdict`; :func:`recommend` picks the cheapest good-enough row;
:func:`over_budget` is the one budget check, for the rungs and the cheaper variants alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from ladder.climb.honest import BETTER, describe
from ladder.climb.parts import Verdict
from ladder.climb.record import Row, Variant
from ladder.climb.task import LoadedTask

__all__ = ["over_budget", "recommend", "verdict"]


def verdict(row: Row, task: LoadedTask, below: Row | None) -> Verdict:
    """Whether ``row`` is good enough, and why (not), against the row ``below`` it."""
    s, score = task.spec, row.score
    if score.value is None or score.value < s.good_enough:
        return Verdict(
            False, f"{score.metric} {_num(score.value)} is below good_enough {s.good_enough}"
        )
    p95 = row.timing.latency_p95
    if s.max_latency_s is not None and (p95 or 0.0) > s.max_latency_s:
        return Verdict(False, f"p95 latency {p95:.3f}s is over max_latency_s {s.max_latency_s}")
    least = s.judge.min_score if s.judge is not None else None
    grade = row.judge.value if row.judge is not None else None
    if least is not None and row.judge is not None and (grade is None or grade < least):
        return Verdict(False, f"judge {_num(grade)} is below judge.min_score {least}")
    head = f"{score.metric} {_num(score.value)} >= {s.good_enough}"
    if below is None:
        return Verdict(True, f"{head}; first rung on the model")
    b = row.below
    if b is not None and b.call:
        said = describe(
            b.call, below.rung, b.delta, (b.ci_low, b.ci_high), b.mde, row.score.n, b.needed_n
        )
        if b.call == BETTER:
            return Verdict(
                True,
                f"{head} and significantly better than {below.rung}: {said}, "
                f"paired bootstrap p={b.p_value:.3f}",
            )
        return Verdict(
            False,
            f"{head} but not significantly better than {below.rung} "
            f"(paired bootstrap p={b.p_value:.3f}): {said}",
        )
    # A row read back from a climb.json written before the honest calls.
    delta = b.delta if b is not None else 0.0
    p = b.p_value if b is not None else 1.0
    if delta > 0 and p < 1.0 - s.confidence:
        return Verdict(
            True,
            f"{head} and significantly better than {below.rung} "
            f"(delta {delta:+.3f}, paired bootstrap p={p:.3f})",
        )
    return Verdict(
        False,
        f"{head} but not significantly better than {below.rung} "
        f"(paired bootstrap p={p:.3f}); the cheaper rung does as well",
    )


def recommend(rows: Sequence[Row], task: LoadedTask) -> tuple[Row | None, str]:
    """The cheapest good-enough row and why; else None and the best row, with what is missing."""
    good = [r for r in rows if r.verdict.good_enough]
    if good:
        order = {id(r): i for i, r in enumerate(rows)}  # ties: the lower rung (climbed first)
        best = min(good, key=lambda r: (r.cost.usd, order[id(r)]))
        return best, (
            f"{best.rung} on {best.model} is the cheapest good-enough rung "
            f"(${best.cost.usd:.6f} for the test split): {best.verdict.reason}."
        )
    scored = [r for r in rows if r.score.value is not None]
    if not scored:
        return None, "no rung produced a score"
    top = max(scored, key=lambda r: r.score.value or 0.0)
    return None, (
        f"no rung is good enough (good_enough {task.spec.good_enough}); the best is {top.rung} "
        f"on {top.model} with {top.score.metric} {_num(top.score.value)}. Try more training "
        "data or steps, a larger model, or a lower threshold if it is acceptable."
    )


def over_budget(
    task: LoadedTask, rows: Sequence[Row], variants: Sequence[Variant] = ()
) -> float | None:
    """What the climb has spent (its rows, then its variants, US$) when that passes the
    task's ``max_cost_usd``; None while within it, or without a budget."""
    limit = task.spec.max_cost_usd
    spent = sum(r.cost.usd for r in rows) + sum(v.cost.usd for v in variants)
    return spent if limit is not None and spent > limit else None


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
