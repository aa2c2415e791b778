"""Bootstrap intervals and the paired bootstrap test: pure, seeded, vectorised."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ladder.evaluate.stats import (
    bootstrap_ci,
    corpus_bootstrap_ci,
    paired_bootstrap,
    percentile_interval,
)


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.floats(0, 1), min_size=1, max_size=40), seed=st.integers(0, 99))
def test_ci_contains_the_mean(values: list[float], seed: int) -> None:
    low, high = bootstrap_ci(values, resamples=200, seed=seed)
    mean = float(np.mean(values))
    assert low - 1e-12 <= mean <= high + 1e-12


def test_ci_narrows_with_n() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n in (50, 500, 5000):
        low, high = bootstrap_ci(rng.random(n), resamples=500)
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    # Width ~ 2 * 1.96 * sd / sqrt(n), sd of U(0,1) = 0.2887: n = 5000 → ~0.016.
    assert widths[2] == pytest.approx(2 * 1.96 * 0.2887 / np.sqrt(5000), rel=0.15)


def test_same_seed_same_ci_other_seed_other_ci() -> None:
    values = np.random.default_rng(1).random(100)
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    assert bootstrap_ci(values, seed=7) != bootstrap_ci(values, seed=8)


def test_statistic_and_confidence() -> None:
    values = np.arange(101, dtype=float)
    median = bootstrap_ci(values, statistic=np.median, resamples=300)
    assert median[0] < 50 < median[1]
    narrow = bootstrap_ci(values, confidence=0.5)
    wide = bootstrap_ci(values, confidence=0.99)
    assert wide[0] < narrow[0] and narrow[1] < wide[1]


def test_large_n_is_drawn_in_chunks_and_stays_fast() -> None:
    values = np.random.default_rng(2).random(200_000)
    low, high = bootstrap_ci(values, resamples=100)
    assert low < values.mean() < high


def test_corpus_version_recomputes_a_ratio_on_each_resample() -> None:
    # A ratio of sums (like BLEU's precisions) is not the mean of per-example ratios.
    rng = np.random.default_rng(3)
    hits, totals = rng.integers(0, 5, 300), rng.integers(5, 10, 300)

    def ratio(idx: np.ndarray) -> float:
        return float(hits[idx].sum() / totals[idx].sum())

    low, high = corpus_bootstrap_ci(300, ratio, resamples=300)
    assert low < hits.sum() / totals.sum() < high
    # The same resamples as bootstrap_ci for the same n and seed: a mean agrees exactly.
    per = rng.random(300)
    assert corpus_bootstrap_ci(300, lambda idx: float(per[idx].mean())) == bootstrap_ci(per)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ci([1.0], resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0], confidence=1.0)
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="A has 2 examples, B has 1"):
        paired_bootstrap([1.0, 0.0], [1.0])


def test_percentile_interval() -> None:
    assert percentile_interval(np.arange(101), 0.9) == pytest.approx((5.0, 95.0))


def test_paired_bootstrap_finds_a_clearly_better_system() -> None:
    rng = np.random.default_rng(4)
    b = rng.random(200)
    a = np.clip(b + 0.1 + 0.05 * rng.standard_normal(200), 0, 1)
    result = paired_bootstrap(a, b, resamples=500)
    assert result.a_better
    assert result.p_value < 0.01
    assert result.ci_low > 0 and result.delta == pytest.approx(float(np.mean(a - b)))
    reverse = paired_bootstrap(b, a, resamples=500)
    assert not reverse.a_better and reverse.p_value > 0.99


def test_paired_bootstrap_equal_systems_are_not_different() -> None:
    a = np.random.default_rng(5).random(100)
    same = paired_bootstrap(a, a.copy())
    assert not same.a_better and same.p_value == 1.0 and same.delta == 0.0
    # Two noisy systems of equal quality: no verdict either.
    rng = np.random.default_rng(6)
    noisy = paired_bootstrap(rng.random(100), rng.random(100), seed=1)
    assert not noisy.a_better
    assert noisy.ci_low < 0 < noisy.ci_high
