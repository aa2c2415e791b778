"""What the climb measures besides the score: peak memory, latency percentiles, paired tests.

Peak memory is the peak resident set size (RSS) of this process while a rung runs, sampled
every 20 ms with psutil (plus ``torch.cuda.max_memory_allocated`` when a GPU was used):
it includes what the process held before the rung (the Python runtime, loaded libraries),
so compare rungs with each other, not with a bare model's size.

The paired test (Koehn 2004) asks whether rung A beats rung B on the same test records.
Metrics with per-example values use :func:`ladder.evaluate.stats.paired_bootstrap`; corpus
metrics (macro F1 ...) recompute the metric on each resample for both systems, with the
same resampled indices for A and B (:func:`corpus_bootstrap_samples` draws the same indices
for the same size and seed), and compare.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np

__all__ = ["PairedOutcome", "PeakMemory", "paired_test", "percentile"]


class PeakMemory:
    """Context manager: the peak RSS (bytes) of this process inside the ``with`` block."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.gpu_peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        import psutil

        process = psutil.Process()
        self.peak_bytes = process.memory_info().rss
        self._reset_gpu()

        def sample() -> None:
            while not self._stop.wait(self.interval_s):
                self.peak_bytes = max(self.peak_bytes, process.memory_info().rss)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        import psutil

        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_bytes = max(self.peak_bytes, psutil.Process().memory_info().rss)
        self.gpu_peak_bytes = self._gpu_peak()

    @staticmethod
    def _reset_gpu() -> None:
        import sys

        torch = sys.modules.get("torch")  # only when something already imported it
        if torch is not None and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    @staticmethod
    def _gpu_peak() -> int:
        import sys

        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            return int(torch.cuda.max_memory_allocated())
        return 0


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by linear interpolation; None for no values."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), 100 * q))


@dataclass(frozen=True)
class PairedOutcome:
    """A against B: the difference of the metric, its p-value, the verdict, and the
    bootstrap interval of the difference (at the test's ``confidence``); ``n`` records
    compared and ``spread``, the standard deviation of the per-record differences (a corpus
    metric's: the bootstrap standard error times sqrt(n)), for the minimum detectable effect
    (:mod:`ladder.climb.honest`)."""

    delta: float
    p_value: float
    a_better: bool
    ci_low: float = 0.0
    ci_high: float = 0.0
    n: int = 0
    spread: float = 0.0


def paired_test(
    metric: str,
    metric_options: Mapping[str, Any],
    predictions_a: Sequence[str],
    predictions_b: Sequence[str],
    references: Sequence[str],
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> PairedOutcome:
    """Is A significantly better than B on the same examples (paired bootstrap)?"""
    from ladder.evaluate import get_metric, paired_bootstrap
    from ladder.evaluate.stats import corpus_bootstrap_samples

    plain = get_metric(metric, resamples=0, **metric_options)
    score_a = plain.compute(list(predictions_a), list(references))
    score_b = plain.compute(list(predictions_b), list(references))
    if score_a.per_example is not None and score_b.per_example is not None:
        result = paired_bootstrap(
            score_a.per_example,
            score_b.per_example,
            resamples=resamples,
            confidence=confidence,
            seed=seed,
        )
        diff = np.asarray(score_a.per_example, np.float64) - np.asarray(score_b.per_example)
        spread = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
        return PairedOutcome(
            result.delta,
            result.p_value,
            result.a_better,
            result.ci_low,
            result.ci_high,
            len(diff),
            spread,
        )

    def on(predictions: Sequence[str]) -> Any:
        def value(idx: Any) -> float:
            picked = [predictions[i] for i in idx]
            return plain.compute(picked, [references[i] for i in idx]).value

        return corpus_bootstrap_samples(len(references), value, resamples=resamples, seed=seed)

    from ladder.evaluate.stats import percentile_interval

    deltas = on(predictions_a) - on(predictions_b)
    delta = float(score_a.value - score_b.value)
    p_value = float(np.mean(deltas <= 0.0))
    low, high = percentile_interval(deltas, confidence)
    n = len(references)
    spread = float(deltas.std(ddof=1)) * float(np.sqrt(n)) if len(deltas) > 1 else 0.0
    better = delta > 0 and p_value < 1.0 - confidence
    return PairedOutcome(delta, p_value, better, low, high, n, spread)
