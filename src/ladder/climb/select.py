"""``ladder select``: compare the task's candidate models on its dev split, in one table.

Each model answers the dev records zero-shot with the task's prompt; the table has its
score with a bootstrap CI, tokens per second (generated tokens over generation time), peak
memory while it ran (process RSS, see :mod:`ladder.climb.measure`), the parameter count,
and the cost of the dev split. The test split is left alone, for the climb.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladder.climb.measure import PeakMemory, percentile
from ladder.climb.prompt_rungs import answer_with_prompts, task_template
from ladder.climb.rungs import ModelCache, RungContext
from ladder.climb.scoring import task_score
from ladder.climb.task import load_task
from ladder.errors import ConfigError

__all__ = ["Candidate", "select_models"]


@dataclass
class Candidate:
    """One model on the dev split."""

    model: str
    metric: str
    value: float
    ci_low: float | None
    ci_high: float | None
    tokens_per_s: float | None
    peak_memory: int
    parameters: int | None
    cost: float
    latency_p50: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


def select_models(
    task_path: str | Path,
    out: str | Path,
    *,
    models: Sequence[str] = (),
    model_loader: Callable[[str], Any] | None = None,
) -> list[Candidate]:
    """Score every candidate model on the dev split; best first.

    Raises:
        ConfigError: the task has no ``data.dev`` (or any other task-file mistake).
    """

    task = load_task(task_path)
    spec = task.spec
    if not task.dev:
        raise ConfigError(f"{task.path}: field 'data.dev': select compares models on a dev split")
    dev_task = dataclasses.replace(task, test=task.dev)
    cache = ModelCache(model_loader)
    found = []
    for i, model in enumerate(models or spec.models):
        ctx = RungContext(Path(out) / f"{i:02d}", models=cache)
        with PeakMemory() as memory:
            lm = cache.get(model)
            result = answer_with_prompts(
                lm, task_template(spec), "zero_shot", dev_task, ctx, model_spec=model
            )
        _, score = task_score(spec, result, [r["answer"] for r in task.dev])
        seconds = sum(result.latencies)
        found.append(
            Candidate(
                model=model,
                metric=score.metric,
                value=score.value,
                ci_low=score.ci_low,
                ci_high=score.ci_high,
                tokens_per_s=result.completion_tokens / seconds if seconds > 0 else None,
                peak_memory=max(memory.peak_bytes, memory.gpu_peak_bytes),
                parameters=lm.info.parameters,
                cost=result.token_cost_usd + result.compute_seconds * spec.compute_hour_usd / 3600,
                latency_p50=percentile(result.latencies, 0.5),
            )
        )
        cache.drop(model)
    return sorted(found, key=lambda c: (-c.value, c.cost))
