"""The metric registry: each metric joins through one :func:`register_metric` call."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from ladder.errors import ConfigError
from ladder.evaluate.score import CISettings, Score

__all__ = [
    "Metric",
    "MetricFactory",
    "References",
    "get_metric",
    "metric_names",
    "needs_references",
    "register_metric",
]

References = Sequence[str] | Sequence[Sequence[str]]


@runtime_checkable
class Metric(Protocol):
    """A metric turns predictions and references into a :class:`Score`.

    ``references`` holds one string per example, or a list of strings per example (several
    gold answers; what a metric does with them is in its docstring).
    """

    @property
    def name(self) -> str:
        """The registered name."""
        ...

    def compute(self, predictions: Sequence[str], references: References) -> Score:
        """Score ``predictions`` against ``references`` (same length, same order)."""
        ...


MetricFactory = Callable[..., Metric]
_REGISTRY: dict[str, MetricFactory] = {}
_REFERENCE_FREE: set[str] = set()


def register_metric(name: str, factory: MetricFactory, *, needs_references: bool = True) -> None:
    """Make ``get_metric(name, **options)`` call ``factory(ci=CISettings, **options)``.

    ``needs_references=False`` marks a metric that scores predictions alone (toxicity): its
    ``compute(predictions, references=None)`` ignores references.
    """
    if name in _REGISTRY and _REGISTRY[name] is not factory:
        raise ValueError(f"metric {name!r} is already registered")
    _REGISTRY[name] = factory
    if not needs_references:
        _REFERENCE_FREE.add(name)


def needs_references(name: str) -> bool:
    """Whether metric ``name`` scores predictions against references (most do)."""
    return name not in _REFERENCE_FREE


def metric_names() -> list[str]:
    """The registered metric names, sorted."""
    return sorted(_REGISTRY)


def get_metric(
    name: str,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    **options: Any,
) -> Metric:
    """Build a registered metric.

    Args:
        name: A name from :func:`metric_names`.
        resamples: Bootstrap resamples for the confidence interval (0: no interval).
        confidence: Confidence level of the interval.
        seed: Seed of the bootstrap's ``numpy`` generator.
        **options: The metric's own options (see its docstring).

    Raises:
        ConfigError: The name is unknown, or an option is unknown or invalid.
    """
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ConfigError(f"unknown metric {name!r}; valid metrics: {', '.join(metric_names())}")
    accepted = sorted(p for p in inspect.signature(factory).parameters if p != "ci")
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"metric {name!r} has no option {unknown[0]!r}; "
            f"its options: {', '.join(accepted) or '(none)'}"
        )
    ci = CISettings(resamples=resamples, confidence=confidence, seed=seed)
    return factory(ci=ci, **options)
