"""String-match metrics: exact match, SQuAD EM/F1, and F1 between sets of items.

SQuAD: Rajpurkar et al. 2016 ("SQuAD: 100,000+ Questions for Machine Comprehension of
Text") for EM and token F1 with the max over gold answers; Rajpurkar et al. 2018 ("Know What
You Don't Know") for unanswerable questions: a gold list that is empty (or only has answers
that normalise to nothing) means "no answer", and scores 1 iff the prediction normalises to
nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from ladder.errors import ConfigError
from ladder.evaluate._common import mean_score, reference_lists
from ladder.evaluate.normalize import normalize_text, parse_items, squad_normalize, squad_tokens
from ladder.evaluate.registry import References, register_metric
from ladder.evaluate.score import CISettings, Score

__all__ = [
    "ExactMatch",
    "SetF1",
    "SquadExact",
    "SquadF1",
    "set_prf",
    "squad_exact",
    "squad_golds",
    "squad_token_f1",
]


@dataclass
class ExactMatch:
    """1 if the prediction equals a reference (any of them), else 0; the value is the mean.

    Options:
        ignore_case: Compare case-insensitively (Unicode casefold).
        strip: Ignore leading and trailing whitespace.
    """

    ci: CISettings = field(default_factory=CISettings)
    ignore_case: bool = False
    strip: bool = True
    name: ClassVar[str] = "exact"

    def compute(self, predictions: Sequence[str], references: References) -> Score:
        """Mean exact match with a bootstrap CI over examples."""
        refs = reference_lists(predictions, references)

        def norm(text: str) -> str:
            return normalize_text(text, ignore_case=self.ignore_case, strip=self.strip)

        per = [
            float(norm(p) in {norm(r) for r in rs}) for p, rs in zip(predictions, refs, strict=True)
        ]
        sig = {
            "scale": "0-1",
            "case": "ignore" if self.ignore_case else "mixed",
            "strip": self.strip,
        }
        return mean_score(self.name, per, self.ci, sig)


def squad_golds(references: Sequence[str]) -> list[str]:
    """Gold answers that survive normalisation; ``[""]`` (no answer) when none do (SQuAD v2)."""
    golds = [r for r in references if squad_normalize(r)]
    return golds or [""]


def squad_exact(prediction: str, gold: str) -> float:
    """1.0 if both normalise to the same string."""
    return float(squad_normalize(prediction) == squad_normalize(gold))


def squad_token_f1(prediction: str, gold: str) -> float:
    """Bag-of-tokens F1 of normalised answers; empty vs empty is 1 and empty vs not is 0."""
    pred, ref = squad_tokens(prediction), squad_tokens(gold)
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


_SQUAD_SIG = {"norm": "squad", "noans": "v2", "multi": "max", "scale": "0-1"}


@dataclass
class SquadExact:
    """SQuAD exact match after answer normalisation, max over the gold answers."""

    ci: CISettings = field(default_factory=CISettings)
    name: ClassVar[str] = "squad_em"

    def compute(self, predictions: Sequence[str], references: References) -> Score:
        """Mean over questions of max-over-golds EM."""
        refs = reference_lists(predictions, references)
        per = [
            max(squad_exact(p, g) for g in squad_golds(rs))
            for p, rs in zip(predictions, refs, strict=True)
        ]
        return mean_score(self.name, per, self.ci, _SQUAD_SIG)


@dataclass
class SquadF1:
    """SQuAD token F1 after answer normalisation, max over the gold answers."""

    ci: CISettings = field(default_factory=CISettings)
    name: ClassVar[str] = "squad_f1"

    def compute(self, predictions: Sequence[str], references: References) -> Score:
        """Mean over questions of max-over-golds token F1."""
        refs = reference_lists(predictions, references)
        per = [
            max(squad_token_f1(p, g) for g in squad_golds(rs))
            for p, rs in zip(predictions, refs, strict=True)
        ]
        return mean_score(self.name, per, self.ci, _SQUAD_SIG)


def set_prf(predicted: set[str], gold: set[str]) -> tuple[float, float, float]:
    """Precision, recall, F1 of two sets; two empty sets agree perfectly (1, 1, 1)."""
    if not predicted and not gold:
        return 1.0, 1.0, 1.0
    hit = len(predicted & gold)
    precision = hit / len(predicted) if predicted else 0.0
    recall = hit / len(gold) if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if hit else 0.0
    return precision, recall, f1


@dataclass
class SetF1:
    """F1 between a predicted set of items and the gold set, averaged over examples.

    A prediction is a string holding a JSON array (``["Paris", "Lyon"]``) or items split on
    ``separator``. A reference is the same kind of string, or a list of strings which *is*
    the gold set (so a JSONL list value gives the set, not several references). Items are
    normalised, then duplicates dropped.

    Options:
        separator: Split non-JSON strings on this (default: the string is one item).
        ignore_case: Compare items case-insensitively.
        collapse_whitespace: Strip items and collapse inner runs of whitespace.
        remove_punctuation: Drop Unicode punctuation from items.
    """

    ci: CISettings = field(default_factory=CISettings)
    separator: str | None = None
    ignore_case: bool = True
    collapse_whitespace: bool = True
    remove_punctuation: bool = False
    name: ClassVar[str] = "set_f1"

    def _items(self, value: str | list[str], where: str) -> set[str]:
        try:
            items = parse_items(value, self.separator) if isinstance(value, str) else value
        except ValueError as exc:
            raise ConfigError(f"set_f1: {where}: {exc}") from None
        normed = (
            normalize_text(
                item,
                ignore_case=self.ignore_case,
                collapse_whitespace=self.collapse_whitespace,
                remove_punctuation=self.remove_punctuation,
            )
            for item in items
        )
        return {item for item in normed if item}

    def compute(self, predictions: Sequence[str], references: References) -> Score:
        """Mean per-example set F1; mean P/R and pooled (micro) P/R/F1 are in details."""
        refs = reference_lists(predictions, references)
        rows, hits, n_pred, n_gold = [], 0, 0, 0
        for i, (p, rs) in enumerate(zip(predictions, refs, strict=True)):
            pred = self._items(p, f"prediction {i + 1}")
            gold = self._items(rs[0] if len(rs) == 1 else rs, f"reference {i + 1}")
            rows.append(set_prf(pred, gold))
            hits, n_pred, n_gold = hits + len(pred & gold), n_pred + len(pred), n_gold + len(gold)
        micro_p = hits / n_pred if n_pred else 0.0
        micro_r = hits / n_gold if n_gold else 0.0
        details = {
            "precision": sum(r[0] for r in rows) / len(rows),
            "recall": sum(r[1] for r in rows) / len(rows),
            "micro": {
                "precision": micro_p,
                "recall": micro_r,
                "f1": 2 * micro_p * micro_r / (micro_p + micro_r) if hits else 0.0,
            },
        }
        sig = {
            "sep": "json" if self.separator is None else repr(self.separator),
            "case": "ignore" if self.ignore_case else "mixed",
            "ws": "collapse" if self.collapse_whitespace else "keep",
            "punct": "remove" if self.remove_punctuation else "keep",
            "scale": "0-1",
        }
        return mean_score(self.name, [r[2] for r in rows], self.ci, sig, details)


register_metric("exact", ExactMatch)
register_metric("squad_em", SquadExact)
register_metric("squad_f1", SquadF1)
register_metric("set_f1", SetF1)
