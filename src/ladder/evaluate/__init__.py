"""Evaluation: metrics with confidence intervals and signatures, and the statistics behind them.

from ladder.evaluate import get_metric
score = get_metric("squad_f1").compute(predictions, references)
score.value, score.ci_low, score.ci_high, score.signature
"""

# The built-in metrics join the registry from here, like any other (the registry names none).
from ladder.evaluate import metrics, toxicity  # noqa: F401
from ladder.evaluate.registry import Metric, get_metric, metric_names, register_metric
from ladder.evaluate.score import CISettings, Score
from ladder.evaluate.stats import PairedResult, bootstrap_ci, corpus_bootstrap_ci, paired_bootstrap

__all__ = [
    "CISettings",
    "Metric",
    "PairedResult",
    "Score",
    "bootstrap_ci",
    "corpus_bootstrap_ci",
    "get_metric",
    "metric_names",
    "paired_bootstrap",
    "register_metric",
]
