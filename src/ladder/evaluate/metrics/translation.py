"""Corpus-level MT metrics through sacrebleu: BLEU and chrF, on sacrebleu's 0-100 scale.

BLEU: Papineni et al. 2002, "BLEU: a Method for Automatic Evaluation of Machine
Translation". chrF: Popović 2015, "chrF: character n-gram F-score for automatic MT
evaluation" (chrF++ with ``word_order=2``: Popović 2017). Reporting through sacrebleu and
its signature: Post 2018, "A Call for Clarity in Reporting BLEU Scores".

Both are corpus metrics (n-gram counts are pooled before the ratio), not means of sentence
scores, so the confidence interval resamples examples and recomputes the corpus score from
the summed per-sentence sufficient statistics, as sacrebleu's own bootstrap does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ladder.evaluate._common import reference_lists
from ladder.evaluate.registry import References, register_metric
from ladder.evaluate.score import CISettings, Score, make_signature
from ladder.evaluate.stats import corpus_bootstrap_ci

__all__ = ["Bleu", "Chrf", "reference_streams"]


def reference_streams(refs: list[list[str]]) -> list[list[str | None]]:
    """Per-example reference lists → sacrebleu's streams (``None`` pads a shorter list)."""
    width = max(len(rs) for rs in refs)
    return [[rs[j] if j < len(rs) else None for rs in refs] for j in range(width)]


def _corpus_score(
    name: str,
    metric: Any,
    predictions: Sequence[str],
    references: References,
    ci: CISettings,
    sentence_metric: Any | None,
) -> Score:
    """Score with sacrebleu ``metric``; bootstrap by re-summing per-sentence statistics."""
    import sacrebleu

    hyps = list(predictions)
    streams = reference_streams(reference_lists(predictions, references))
    per_example = None
    low = high = None
    if not ci.enabled and sentence_metric is None:
        result = metric.corpus_score(hyps, streams)
    else:
        rows = metric._extract_corpus_statistics(hyps, streams)
        stats: NDArray[np.int64] = np.asarray(rows, dtype=np.int64)
        result = metric._compute_score_from_stats(stats.sum(axis=0).tolist())
        if sentence_metric is not None:
            per_example = [sentence_metric._compute_score_from_stats(r).score for r in rows]
        if ci.enabled:

            def resampled(idx: NDArray[np.int64]) -> float:
                counts = np.bincount(idx, minlength=len(stats))
                return float(metric._compute_score_from_stats((counts @ stats).tolist()).score)

            low, high = corpus_bootstrap_ci(
                len(stats),
                resampled,
                resamples=ci.resamples,
                confidence=ci.confidence,
                seed=ci.seed,
            )
    library = str(metric.get_signature())
    fields = {"metric": name, "scale": "0-100", "sacrebleu": library, **ci.signature_fields()}
    details: dict[str, Any] = {
        "sacrebleu_signature": library,
        "sacrebleu_version": sacrebleu.__version__,
        "formatted": str(result),
    }
    if hasattr(result, "bp"):  # BLEU
        details.update(
            precisions=list(result.precisions),
            bp=result.bp,
            sys_len=result.sys_len,
            ref_len=result.ref_len,
        )
    return Score(
        metric=name,
        value=float(result.score),
        per_example=per_example,
        ci_low=low,
        ci_high=high,
        n=len(hyps),
        signature=make_signature(fields),
        details=details,
    )


@dataclass
class Bleu:
    """Corpus BLEU with sacrebleu's defaults (13a tokenizer, exp smoothing), 0-100.

    Several references per example are supported (a shorter list is padded, as sacrebleu
    allows).

    Options:
        tokenize: sacrebleu tokenizer (``13a`` default; ``zh``, ``ja-mecab``, ``intl``,
            ``char``, ``none``, ...).
        lowercase: Lowercase before scoring.
        sentence_scores: Also fill ``per_example`` with sentence BLEU (effective order),
            for inspection only; it costs one extra pass.
    """

    ci: CISettings = field(default_factory=CISettings)
    tokenize: str | None = None
    lowercase: bool = False
    sentence_scores: bool = False
    name: ClassVar[str] = "bleu"

    def compute(self, predictions: Sequence[str], references: References) -> Score:
        """Corpus BLEU; the CI recomputes corpus BLEU on each bootstrap resample."""
        from sacrebleu.metrics import BLEU

        metric = BLEU(tokenize=self.tokenize, lowercase=self.lowercase)
        sentence = (
            BLEU(tokenize=self.tokenize, lowercase=self.lowercase, effective_order=True)
            if self.sentence_scores
            else None
        )
        return _corpus_score(self.name, metric, predictions, references, self.ci, sentence)


@dataclass
class Chrf:
    """Corpus chrF with sacrebleu's defaults (character 6-grams, beta 2), 0-100.

    Options:
        char_order: Character n-gram order.
        word_order: Word n-gram order (2 gives chrF++).
        beta: Recall weight of the F-score.
        lowercase: Lowercase before scoring.
        sentence_scores: Also fill ``per_example`` with sentence chrF (inspection only).
    """

    ci: CISettings = field(default_factory=CISettings)
    char_order: int = 6
    word_order: int = 0
    beta: int = 2
    lowercase: bool = False
    sentence_scores: bool = False
    name: ClassVar[str] = "chrf"

    def compute(self, predictions: Sequence[str], references: References) -> Score:
        """Corpus chrF; the CI recomputes corpus chrF on each bootstrap resample."""
        from sacrebleu.metrics import CHRF

        metric = CHRF(
            char_order=self.char_order,
            word_order=self.word_order,
            beta=self.beta,
            lowercase=self.lowercase,
        )
        sentence = metric if self.sentence_scores else None
        return _corpus_score(self.name, metric, predictions, references, self.ci, sentence)


register_metric("bleu", Bleu)
register_metric("chrf", Chrf)
