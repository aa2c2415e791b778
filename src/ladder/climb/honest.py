"""Honest paired comparisons: the minimum detectable effect, "tied", and "too small to tell".

A paired test on a small test split can only see large differences. Every comparison the
climb makes (a rung against the rung below it, a variant against the recommendation) is
therefore stated with its **minimum detectable effect** (MDE): the smallest true difference
the test split would detect with power ``1 - beta`` (80 %) at two-sided level ``alpha``
(``1 - confidence``, 0.05 by default), from the spread of the paired per-record
differences (the normal approximation of a paired test; Cohen 1988, ch. 2)::

    MDE      = (z[1 - alpha/2] + z[power]) * sd / sqrt(n)       # 2.80 * sd / sqrt(n)
    needed_n = ceil(((z[1 - alpha/2] + z[power]) * sd / |delta|) ** 2)

``sd`` is the standard deviation of the per-record differences (A − B); for a corpus metric
(macro F1, BLEU) with no per-record values it is the bootstrap standard error of the
difference times ``sqrt(n)``. When every record moved the same way (``sd`` = 0) the formula
would ask for one record, so ``needed_n`` is at least the smallest split on which even a
clean sweep is significant by a two-sided sign test (``2 * 0.5**n < alpha``: 6 records at
alpha 0.05).

The call: **tied** when the paired-bootstrap CI of the difference includes 0; else **too
small to tell** when the split is smaller than ``needed_n`` (the difference is smaller than
the MDE: an effect this size would be missed more often than not by a split this small, so
this one is not trusted); else **better** or **worse**.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from ladder.climb.measure import PairedOutcome

__all__ = [
    "BETTER",
    "POWER",
    "TIED",
    "TOO_SMALL",
    "WORSE",
    "Comparison",
    "compare",
    "describe",
    "minimum_detectable_effect",
    "needed_records",
]

BETTER, WORSE, TIED, TOO_SMALL = "better", "worse", "tied", "too small to tell"
POWER = 0.8


def _z_sum(alpha: float, power: float) -> float:
    z = NormalDist().inv_cdf
    return z(1.0 - alpha / 2.0) + z(power)


def minimum_detectable_effect(sd: float, n: int, alpha: float, power: float = POWER) -> float:
    """The smallest true paired difference a split of ``n`` records detects with ``power``
    at two-sided level ``alpha``, given the per-record differences' standard deviation."""
    if n < 1:
        return math.inf
    return _z_sum(alpha, power) * sd / math.sqrt(n)


def needed_records(delta: float, sd: float, alpha: float, power: float = POWER) -> int | None:
    """Records a split needs to detect a difference of ``delta`` with ``power`` (None for a
    difference of 0, which no split detects); never fewer than a clean sign-test sweep needs."""
    if delta == 0:
        return None
    sweep = math.floor(math.log2(2.0 / alpha)) + 1  # smallest n with 2 * 0.5**n < alpha
    by_spread = math.ceil((_z_sum(alpha, power) * sd / abs(delta)) ** 2 - 1e-9)
    return max(sweep, by_spread)


@dataclass(frozen=True)
class Comparison:
    """A against B on the same records, said honestly.

    Attributes:
        delta: A's metric minus B's.
        ci_low: lower end of the paired-bootstrap CI of ``delta``.
        ci_high: upper end of that CI.
        p_value: the paired bootstrap's share of resamples where A is not better.
        n: records compared.
        mde: the minimum detectable effect at ``n`` records (80 % power).
        needed_n: records that would detect ``|delta|`` (None when ``delta`` is 0).
        call: ``better``, ``worse``, ``tied`` or ``too small to tell``.
    """

    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    mde: float
    needed_n: int | None
    call: str

    def describe(self, other: str) -> str:
        """One clause for a verdict: the call against ``other`` with its numbers."""
        return describe(
            self.call,
            other,
            self.delta,
            (self.ci_low, self.ci_high),
            self.mde,
            self.n,
            self.needed_n,
        )


def describe(
    call: str,
    other: str,
    delta: float,
    ci: tuple[float | None, float | None],
    mde: float | None,
    n: int,
    needed_n: int | None,
) -> str:
    """One clause: the ``call`` of a comparison against ``other``, with its difference, CI,
    minimum detectable effect and (too small to tell) the records that would be needed."""
    low, high = (0.0 if c is None else c for c in ci)
    stats = f"delta {delta:+.3f}, CI [{low:+.3f}, {high:+.3f}], MDE {mde or 0.0:.3f} at n={n}"
    if call == TOO_SMALL:
        return (
            f"too small to tell against {other} ({stats}): the test split would need "
            f"{needed_n} records to detect {abs(delta):.3f}"
        )
    if call == TIED:
        return f"tied with {other} (the CI includes 0; {stats})"
    return f"{call} than {other} ({stats})"


def compare(outcome: PairedOutcome, confidence: float, power: float = POWER) -> Comparison:
    """The honest call on a paired test's ``outcome`` at level ``1 - confidence``."""
    alpha = 1.0 - confidence
    mde = minimum_detectable_effect(outcome.spread, outcome.n, alpha, power)
    needed = needed_records(outcome.delta, outcome.spread, alpha, power)
    if outcome.ci_low <= 0.0 <= outcome.ci_high:
        call = TIED
    elif needed is not None and outcome.n < needed:
        call = TOO_SMALL
    else:
        call = BETTER if outcome.delta > 0 else WORSE
    return Comparison(
        outcome.delta,
        outcome.ci_low,
        outcome.ci_high,
        outcome.p_value,
        outcome.n,
        mde,
        needed,
        call,
    )
