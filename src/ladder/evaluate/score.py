"""The result of a metric: a value, its confidence interval and a reproducibility signature."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ladder.errors import ConfigError

__all__ = ["NO_CI", "CISettings", "Score", "make_signature"]


@dataclass(frozen=True)
class CISettings:
    """How a metric's confidence interval is computed (a percentile bootstrap, Efron 1979).

    ``resamples=0`` skips the interval (``ci_low``/``ci_high`` are then ``None``).
    """

    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.resamples < 0:
            raise ConfigError(f"resamples must be >= 0, got {self.resamples}")
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"confidence must be between 0 and 1, got {self.confidence}")

    @property
    def enabled(self) -> bool:
        """Whether an interval is computed at all."""
        return self.resamples > 0

    def signature_fields(self) -> dict[str, Any]:
        """The ``key:value`` pairs this part contributes to a score's signature."""
        if not self.enabled:
            return {"ci": "none"}
        return {"ci": "bootstrap", "bs": self.resamples, "conf": self.confidence, "seed": self.seed}


NO_CI = CISettings(resamples=0)


@dataclass
class Score:
    """One metric over one set of predictions.

    Attributes:
        metric: The registered metric name (``bleu``, ``squad_f1``, ...).
        value: The corpus value, on the metric's scale (``scale`` in the signature).
        per_example: One value per example (what the mean is taken over), or ``None``.
        ci_low: Lower end of the bootstrap confidence interval, or ``None``.
        ci_high: Upper end of the bootstrap confidence interval, or ``None``.
        n: Number of examples.
        signature: ``key:value|key:value`` naming the metric, its settings, the library
            versions and the CI settings, so that two numbers can be told comparable or not.
        details: Extra, metric-specific results (per-class P/R/F1, a confusion matrix,
            sacrebleu's own signature, ...).
    """

    metric: str
    value: float
    per_example: list[float] | None
    ci_low: float | None
    ci_high: float | None
    n: int
    signature: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, *, per_example: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; ``per_example`` values are left out unless asked for."""
        out: dict[str, Any] = {
            "metric": self.metric,
            "value": _finite(self.value),
            "ci_low": _finite(self.ci_low),
            "ci_high": _finite(self.ci_high),
            "n": self.n,
            "signature": self.signature,
            "details": self.details,
        }
        if per_example:
            out["per_example"] = self.per_example
        return out


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def make_signature(fields: dict[str, Any]) -> str:
    """``{"metric": "bleu", "case": "mixed"}`` → ``"metric:bleu|case:mixed"`` (sacrebleu style)."""
    return "|".join(f"{key}:{_sig_value(value)}" for key, value in fields.items())


def _sig_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
