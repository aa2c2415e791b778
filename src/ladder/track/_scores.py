"""How a :class:`~ladder.evaluate.score.Score` is logged: shared by every tracker."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: importing ladder.evaluate costs ~0.15 s
    from ladder.evaluate.score import Score

__all__ = ["score_fields"]


def score_fields(score: Score, prefix: str = "") -> tuple[dict[str, float], dict[str, str]]:
    """The metrics and tags a :class:`Score` is logged as.

    ``{prefix}{metric}`` is the value; ``.ci_low`` / ``.ci_high`` are added when there is an
    interval; the tag ``{prefix}{metric}.signature`` says how the number was made. Non-finite
    ends are left out.
    """
    key = f"{prefix}{score.metric}"
    metrics = {key: float(score.value)}
    for end, value in (("ci_low", score.ci_low), ("ci_high", score.ci_high)):
        if value is not None and math.isfinite(value):
            metrics[f"{key}.{end}"] = float(value)
    return metrics, {f"{key}.signature": score.signature}
