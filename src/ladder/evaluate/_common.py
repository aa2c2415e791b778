"""Shared plumbing for the built-in metrics: input checks and turning values into a Score."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ladder.errors import ConfigError
from ladder.evaluate.registry import References
from ladder.evaluate.score import CISettings, Score, make_signature
from ladder.evaluate.stats import bootstrap_ci


def reference_lists(predictions: Sequence[str], references: References) -> list[list[str]]:
    """Check lengths and give every example a list of references (one string → a 1-list)."""
    if len(predictions) != len(references):
        raise ConfigError(
            f"predictions has {len(predictions)} items, references has {len(references)}"
        )
    if not predictions:
        raise ConfigError("nothing to score: there are no predictions")
    return [[ref] if isinstance(ref, str) else list(ref) for ref in references]


def single_references(predictions: Sequence[str], references: References, metric: str) -> list[str]:
    """One reference per example, for metrics where several golds make no sense."""
    out = []
    for i, refs in enumerate(reference_lists(predictions, references)):
        if len(refs) != 1:
            raise ConfigError(
                f"{metric} takes exactly one reference per example; example {i + 1} has {len(refs)}"
            )
        out.append(refs[0])
    return out


def mean_score(
    metric: str,
    per_example: Sequence[float],
    ci: CISettings,
    signature: dict[str, Any],
    details: dict[str, Any] | None = None,
) -> Score:
    """A Score whose value is the mean of ``per_example`` with a bootstrap CI over examples."""
    values = np.asarray(per_example, dtype=np.float64)
    low, high = (
        bootstrap_ci(values, resamples=ci.resamples, confidence=ci.confidence, seed=ci.seed)
        if ci.enabled
        else (None, None)
    )
    return Score(
        metric=metric,
        value=float(values.mean()),
        per_example=values.tolist(),
        ci_low=low,
        ci_high=high,
        n=len(values),
        signature=make_signature({"metric": metric, **signature, **ci.signature_fields()}),
        details=details or {},
    )
