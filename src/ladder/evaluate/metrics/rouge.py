"""ROUGE through Google's ``rouge-score``: rouge1, rouge2, rougeL, rougeLsum.

Lin 2004, "ROUGE: A Package for Automatic Evaluation of Summaries". The value is the mean
over examples of the per-example F-measure (0-1), computed deterministically (no
``BootstrapAggregator``: the CI is ladder's seeded bootstrap). With several references the
one with the highest F-measure counts (``RougeScorer.score_multi``). ``rougeLsum`` splits
sentences on newlines, as rouge-score expects.

The Porter stemmer is on by default (``use_stemmer=True``): that is how the summarisation
papers report ROUGE (ROUGE-1.5.5 ``-m``), although rouge-score's own default is off.
rouge-score's default tokenizer keeps only ``[a-z0-9]``, so any other script scores 0;
``tokenizer="unicode"`` keeps Unicode letters and digits and splits CJK per character.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, Literal

from ladder.errors import ConfigError
from ladder.evaluate._common import mean_score, reference_lists
from ladder.evaluate.registry import References, register_metric
from ladder.evaluate.score import CISettings, Score

__all__ = ["Rouge", "RougeTokenizer", "UnicodeTokenizer"]

RougeTokenizer = Literal["default", "unicode"]
# One token per CJK ideograph / kana / hangul syllable (no spaces in those scripts), else a
# run of Unicode letters and digits (``[^\W_]``: word characters without the underscore).
_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_UNICODE_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


class UnicodeTokenizer:
    """A rouge-score tokenizer (``tokenize(text) -> list[str]``) that keeps every script.

    Lowercases, takes Unicode letter/digit runs (each CJK character alone), and, with
    ``use_stemmer``, Porter-stems tokens longer than 3 characters, as rouge-score does.
    """

    def __init__(self, use_stemmer: bool = False) -> None:
        self._stem: Any = None
        if use_stemmer:
            from nltk.stem import porter

            self._stem = porter.PorterStemmer().stem

    def tokenize(self, text: str) -> list[str]:
        """Tokens of ``text``."""
        tokens = _UNICODE_TOKEN.findall(text.lower())
        if self._stem is not None:
            tokens = [self._stem(t) if len(t) > 3 else t for t in tokens]
        return tokens


@dataclass
class Rouge:
    """Mean per-example ROUGE F-measure (0-1); mean precision and recall in details.

    Options:
        use_stemmer: Porter-stem tokens (default True, as in published results).
        tokenizer: ``default`` (rouge-score's: ASCII letters and digits only) or ``unicode``.
    """

    rouge_type: str
    ci: CISettings = field(default_factory=CISettings)
    use_stemmer: bool = True
    tokenizer: RougeTokenizer = "default"

    def __post_init__(self) -> None:
        if self.tokenizer not in ("default", "unicode"):
            raise ConfigError(f"tokenizer must be default or unicode, got {self.tokenizer!r}")

    @property
    def name(self) -> str:
        """rouge1, rouge2, rougeL or rougeLsum."""
        return self.rouge_type

    def scorer(self) -> Any:
        """The ``rouge_scorer.RougeScorer`` these options describe."""
        from rouge_score import rouge_scorer

        tokenizer = UnicodeTokenizer(self.use_stemmer) if self.tokenizer == "unicode" else None
        return rouge_scorer.RougeScorer(
            [self.rouge_type], use_stemmer=self.use_stemmer, tokenizer=tokenizer
        )

    def compute(self, predictions: Sequence[str], references: References) -> Score:
        """Mean F-measure with a bootstrap CI over examples."""
        refs = reference_lists(predictions, references)
        scorer, key = self.scorer(), self.rouge_type
        scores = [
            (scorer.score(rs[0], p) if len(rs) == 1 else scorer.score_multi(rs, p))[key]
            for p, rs in zip(predictions, refs, strict=True)
        ]
        n = len(scores)
        details = {
            "precision": sum(s.precision for s in scores) / n,
            "recall": sum(s.recall for s in scores) / n,
        }
        sig = {
            "stem": self.use_stemmer,
            "tok": self.tokenizer,
            "multi": "max",
            "agg": "mean-f",
            "scale": "0-1",
            "rouge_score": version("rouge-score"),
        }
        return mean_score(key, [s.fmeasure for s in scores], self.ci, sig, details)


def _rouge_factory(rouge_type: str) -> Any:
    def factory(
        ci: CISettings = CISettings(),
        use_stemmer: bool = True,
        tokenizer: RougeTokenizer = "default",
    ) -> Rouge:
        return Rouge(rouge_type, ci=ci, use_stemmer=use_stemmer, tokenizer=tokenizer)

    factory.__doc__ = Rouge.__doc__
    return factory


register_metric("rouge1", _rouge_factory("rouge1"))
register_metric("rouge2", _rouge_factory("rouge2"))
register_metric("rougeL", _rouge_factory("rougeL"))
register_metric("rougeLsum", _rouge_factory("rougeLsum"))
