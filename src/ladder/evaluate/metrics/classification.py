"""Classification metrics over labels: accuracy, precision, recall and F1.

Precision/recall/F1 per class are the usual ``tp/(tp+fp)``, ``tp/(tp+fn)`` and their harmonic
mean (van Rijsbergen 1979); a class never predicted (or never gold) gets 0 for the undefined
ratio, as scikit-learn's ``zero_division=0``. ``macro`` averages the per-class values over
every label seen in the references or the predictions; ``micro`` pools the counts, which for
one label per example equals accuracy. These are corpus-level numbers, so their confidence
interval is a bootstrap that recomputes them on each resample of the examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from ladder.errors import ConfigError
from ladder.evaluate._common import mean_score, reference_lists, single_references
from ladder.evaluate.registry import References, register_metric
from ladder.evaluate.score import CISettings, Score, make_signature
from ladder.evaluate.stats import corpus_bootstrap_ci

__all__ = [
    "Accuracy",
    "Average",
    "ClassificationPRF",
    "averaged",
    "confusion_matrix",
    "prf_from_confusion",
]

Average = Literal["macro", "micro"]
_PRF = ("precision", "recall", "f1")


def _label(text: str, ignore_case: bool) -> str:
    text = text.strip()
    return text.casefold() if ignore_case else text


@dataclass
class Accuracy:
    """Share of predictions equal to the reference label (to any of them, if several).

    Options:
        ignore_case: Compare labels case-insensitively. Labels are always stripped of
            surrounding whitespace.
    """

    ci: CISettings = field(default_factory=CISettings)
    ignore_case: bool = False
    name: ClassVar[str] = "accuracy"

    def compute(self, predictions: Sequence[str], references: References) -> Score:
        """Mean of per-example 0/1 correctness; the CI is a bootstrap over examples."""
        refs = reference_lists(predictions, references)
        correct = [
            float(_label(p, self.ignore_case) in {_label(r, self.ignore_case) for r in rs})
            for p, rs in zip(predictions, refs, strict=True)
        ]
        sig = {"scale": "0-1", "case": "ignore" if self.ignore_case else "mixed", "strip": True}
        return mean_score(self.name, correct, self.ci, sig)


def confusion_matrix(
    gold: Sequence[str], predicted: Sequence[str]
) -> tuple[list[str], NDArray[np.int64], NDArray[np.int64]]:
    """Labels (sorted), the (K, K) matrix ``[gold, predicted]`` and each example's cell code."""
    labels = sorted(set(gold) | set(predicted))
    index = {label: i for i, label in enumerate(labels)}
    k = len(labels)
    codes = np.array([index[g] * k + index[p] for g, p in zip(gold, predicted, strict=True)])
    matrix = np.bincount(codes, minlength=k * k).reshape(k, k)
    return labels, matrix, codes


def prf_from_confusion(matrix: NDArray[np.int64]) -> dict[str, NDArray[np.float64]]:
    """Per-class precision, recall, F1 and support from a ``[gold, predicted]`` matrix."""
    tp = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support, "tp": tp}


def averaged(matrix: NDArray[np.int64], kind: str, average: Average) -> float:
    """``kind`` (precision/recall/f1) of a confusion matrix, macro- or micro-averaged."""
    if average == "micro":
        # One label per example: pooled tp / pooled predictions = pooled tp / pooled gold.
        total = matrix.sum()
        return float(np.trace(matrix) / total) if total else 0.0
    # Average over the labels this sample has (gold or predicted): a bootstrap resample that
    # leaves a rare class out must not count it as F1 = 0.
    seen = (matrix.sum(axis=0) + matrix.sum(axis=1)) > 0
    return float(prf_from_confusion(matrix)[kind][seen].mean()) if seen.any() else 0.0


@dataclass
class ClassificationPRF:
    """Precision, recall or F1 of predicted class labels (one gold label per example).

    Options:
        average: ``macro`` (default: mean over classes, each class counts the same) or
            ``micro`` (pooled counts; equals accuracy for one label per example).
        ignore_case: Compare labels case-insensitively (labels are always stripped).
    """

    kind: str
    ci: CISettings = field(default_factory=CISettings)
    average: Average = "macro"
    ignore_case: bool = False

    def __post_init__(self) -> None:
        if self.average not in ("macro", "micro"):
            raise ConfigError(f"{self.kind}: average must be macro or micro, got {self.average!r}")

    @property
    def name(self) -> str:
        """precision, recall or f1."""
        return self.kind

    def compute(self, predictions: Sequence[str], references: References) -> Score:
        """The averaged value; per-class P/R/F1 and the confusion matrix are in details."""
        gold = [
            _label(r, self.ignore_case)
            for r in single_references(predictions, references, self.kind)
        ]
        pred = [_label(p, self.ignore_case) for p in predictions]
        labels, matrix, codes = confusion_matrix(gold, pred)
        value = averaged(matrix, self.kind, self.average)
        low = high = None
        if self.ci.enabled:
            k2 = len(labels) ** 2

            def resampled(idx: NDArray[np.int64]) -> float:
                sub = np.bincount(codes[idx], minlength=k2).reshape(len(labels), -1)
                return averaged(sub, self.kind, self.average)

            ci = self.ci
            low, high = corpus_bootstrap_ci(
                len(gold), resampled, resamples=ci.resamples, confidence=ci.confidence, seed=ci.seed
            )
        sig = {
            "average": self.average,
            "scale": "0-1",
            "case": "ignore" if self.ignore_case else "mixed",
            "strip": True,
        }
        return Score(
            metric=self.kind,
            value=value,
            per_example=None,
            ci_low=low,
            ci_high=high,
            n=len(gold),
            signature=make_signature({"metric": self.kind, **sig, **self.ci.signature_fields()}),
            details=_details(labels, matrix),
        )


def _details(labels: list[str], matrix: NDArray[np.int64]) -> dict[str, Any]:
    per = prf_from_confusion(matrix)
    return {
        "labels": labels,
        "per_class": {
            label: {
                **{kind: float(per[kind][i]) for kind in _PRF},
                "support": int(per["support"][i]),
            }
            for i, label in enumerate(labels)
        },
        "macro": {kind: averaged(matrix, kind, "macro") for kind in _PRF},
        "micro": {kind: averaged(matrix, kind, "micro") for kind in _PRF},
        "confusion_matrix": {"rows": "gold", "columns": "predicted", "matrix": matrix.tolist()},
    }


def _prf_factory(kind: str) -> Any:
    def factory(
        ci: CISettings = CISettings(), average: Average = "macro", ignore_case: bool = False
    ) -> ClassificationPRF:
        return ClassificationPRF(kind, ci=ci, average=average, ignore_case=ignore_case)

    factory.__doc__ = ClassificationPRF.__doc__
    return factory


register_metric("accuracy", Accuracy)
register_metric("precision", _prf_factory("precision"))
register_metric("recall", _prf_factory("recall"))
register_metric("f1", _prf_factory("f1"))
