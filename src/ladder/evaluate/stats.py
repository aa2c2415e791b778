"""Bootstrap confidence intervals and the paired bootstrap test, in numpy.

Percentile bootstrap (Efron 1979, "Bootstrap methods: another look at the jackknife"):
resample the examples with replacement, recompute the statistic on each resample, and take
the ``(1-confidence)/2`` and ``(1+confidence)/2`` percentiles. Paired bootstrap test for
comparing two systems on the same examples: Koehn 2004, "Statistical significance tests for
machine translation evaluation".

Every function is pure: the same inputs and seed give the same numbers. Resample ``i`` draws
the same indices in every function (for the same ``n`` and seed), so a metric's interval and
a paired test on the same data use the same resamples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "PairedResult",
    "RowStatistic",
    "bootstrap_ci",
    "corpus_bootstrap_ci",
    "corpus_bootstrap_samples",
    "paired_bootstrap",
    "percentile_interval",
]

RowStatistic = Callable[..., NDArray[np.float64]]
# At most this many int64 indices (8 bytes each) are drawn at once: 64 MB.
_MAX_DRAW = 8_000_000


def _index_batches(n: int, resamples: int, seed: int) -> Iterator[NDArray[np.int64]]:
    """Yield (rows, n) index matrices, ``resamples`` rows in all, drawn from one seeded rng."""
    rng = np.random.default_rng(seed)
    rows = max(1, _MAX_DRAW // max(n, 1))
    done = 0
    while done < resamples:
        take = min(rows, resamples - done)
        yield rng.integers(0, n, size=(take, n))
        done += take


def _check(resamples: int, confidence: float, n: int) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n < 1:
        raise ValueError("the bootstrap needs at least one example")


def percentile_interval(samples: ArrayLike, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap ``samples`` (percentile method)."""
    alpha = 1.0 - confidence
    low, high = np.percentile(np.asarray(samples, dtype=np.float64), [50 * alpha, 100 - 50 * alpha])
    return float(low), float(high)


def bootstrap_ci(
    per_example: Sequence[float] | NDArray[np.float64],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    statistic: RowStatistic = np.mean,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over per-example values (Efron 1979).

    Args:
        per_example: One value per example.
        resamples: Number of bootstrap resamples.
        confidence: Coverage of the interval, e.g. 0.95.
        seed: Seed of ``np.random.default_rng``.
        statistic: Called as ``statistic(matrix, axis=1)`` on a (resamples, n) matrix and
            returns one value per row, e.g. ``np.mean`` (default) or ``np.median``.

    Returns:
        ``(low, high)``.
    """
    values = np.asarray(per_example, dtype=np.float64)
    _check(resamples, confidence, len(values))
    samples = [
        statistic(values[idx], axis=1) for idx in _index_batches(len(values), resamples, seed)
    ]
    return percentile_interval(np.concatenate(samples), confidence)


def corpus_bootstrap_samples(
    n: int,
    statistic_of_indices: Callable[[NDArray[np.int64]], float],
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> NDArray[np.float64]:
    """``statistic_of_indices(idx)`` for each bootstrap resample ``idx`` of ``range(n)``."""
    out = np.empty(resamples, dtype=np.float64)
    i = 0
    for batch in _index_batches(n, resamples, seed):
        for idx in batch:
            out[i] = statistic_of_indices(idx)
            i += 1
    return out


def corpus_bootstrap_ci(
    n: int,
    statistic_of_indices: Callable[[NDArray[np.int64]], float],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap interval of a corpus-level metric (BLEU, chrF) over ``n`` examples.

    A corpus metric is not a mean of sentence scores, so each resample recomputes the corpus
    metric on the resampled examples: ``statistic_of_indices(idx)`` gets an int array of
    ``n`` indices (with repeats) and returns the metric on those examples. Make it cheap by
    summing precomputed per-example sufficient statistics (as sacrebleu does).

    Returns:
        ``(low, high)``.
    """
    _check(resamples, confidence, n)
    samples = corpus_bootstrap_samples(n, statistic_of_indices, resamples=resamples, seed=seed)
    return percentile_interval(samples, confidence)


@dataclass(frozen=True)
class PairedResult:
    """System A against system B on the same examples.

    Attributes:
        delta: ``mean(A) - mean(B)`` on the full data.
        ci_low: Lower end of the bootstrap interval of the delta.
        ci_high: Upper end of the bootstrap interval of the delta.
        p_value: Share of resamples where A is *not* better (delta <= 0), Koehn 2004.
        a_better: ``delta > 0`` and ``p_value < 1 - confidence``.
    """

    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    a_better: bool


def paired_bootstrap(
    a_per_example: Sequence[float] | NDArray[np.float64],
    b_per_example: Sequence[float] | NDArray[np.float64],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedResult:
    """Paired bootstrap significance test of A over B (Koehn 2004).

    Both systems are scored on the same resampled examples; the p-value is the share of
    resamples in which A's mean is not above B's.

    Args:
        a_per_example: A's per-example scores.
        b_per_example: B's per-example scores, same examples in the same order.
        resamples: Number of bootstrap resamples.
        confidence: Level for the delta's interval and for ``a_better``.
        seed: Seed of ``np.random.default_rng``.

    Raises:
        ValueError: The two lists differ in length.
    """
    a = np.asarray(a_per_example, dtype=np.float64)
    b = np.asarray(b_per_example, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"A has {len(a)} examples, B has {len(b)}")
    _check(resamples, confidence, len(a))
    diff = a - b
    deltas = np.concatenate(
        [diff[idx].mean(axis=1) for idx in _index_batches(len(a), resamples, seed)]
    )
    low, high = percentile_interval(deltas, confidence)
    delta = float(diff.mean())
    p_value = float(np.mean(deltas <= 0.0))
    return PairedResult(delta, low, high, p_value, delta > 0 and p_value < 1.0 - confidence)
