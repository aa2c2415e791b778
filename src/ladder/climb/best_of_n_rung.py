"""The ``best_of_n`` rung: n sampled answers per test record, the highest-reward one kept.

It sits after the prompting rungs (zero-shot's prompt, sampled n times) and before
fine-tuning: it buys quality with inference compute and a reward model, not training.
Options (task.yaml)::

    rungs:
      - {rung: best_of_n, n: 4, reward: "hf:runs/rm/model", temperature: 0.8}

``reward``: a reward spec of :mod:`ladder.evaluate.reward` (``hf:PATH`` or
``hf:PATH:LABEL``); ``metric`` is refused here, since it would pick answers by the test
references it is then scored on. ``n`` (default 4), ``temperature`` (default 0.8),
``seed`` (default the task's), ``max_tokens``, ``batch_size``. Sample 0 is drawn with the
seed itself; the rung's cost counts all n samples and the reward's scoring time.
Method: best-of-n against a reward model (Stiennon et al. 2020; Nakano et al. 2021).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ladder.climb.prompt_rungs import prompt_params, task_records, task_template
from ladder.climb.rungs import RungContext, RungResult, register_rung
from ladder.climb.task import LoadedTask
from ladder.errors import ConfigError
from ladder.evaluate.reward import RewardContext

__all__ = ["BestOfNRung", "task_reward_context"]

_OPTIONS = ("n", "reward", "temperature", "seed", "max_tokens", "batch_size")


def check_options(options: Mapping[str, Any], where: str) -> None:
    """One-line errors for a missing or test-reading reward and impossible sampling."""
    from ladder.prompts.best_of_n import check_best_of

    spec = options.get("reward")
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"{where}: rung best_of_n needs reward: hf:PATH (a reward model)")
    if spec.split(":", 1)[0] == "metric":
        raise ConfigError(
            f"{where}: rung best_of_n cannot use reward {spec!r}: it would choose answers by "
            "the test references it is scored on; use a reward model hf:PATH"
        )
    try:
        n, temperature = int(options.get("n", 4)), float(options.get("temperature", 0.8))
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: rung best_of_n: n must be a whole number and "
                          "temperature a number") from None  # fmt: skip
    check_best_of(n, temperature, where=f"{where}: rung best_of_n n")


def task_reward_context(task: LoadedTask) -> RewardContext:
    """What ``reward: metric`` means for ``task``: its metric and options, answers parsed as
    its output type (as :func:`ladder.climb.scoring.task_score` parses them). For rungs that
    reward answers on records with references, e.g. training on the train split."""
    from ladder.climb.task import parse_output

    spec = task.spec
    return RewardContext(
        metric=spec.metric_name(),
        metric_options=dict(spec.metric_options),
        parse=lambda text: parse_output(text, spec.output),
    )


@dataclass(frozen=True)
class BestOfNRung:
    """Best-of-n sampling over the task's zero-shot prompt (see the module docstring)."""

    options: Mapping[str, Any]

    @classmethod
    def build(cls, name: str, options: Mapping[str, Any]) -> BestOfNRung:
        """The rung with the task file's ``options``."""
        return cls(dict(options))

    def run(self, task: LoadedTask, model: str, ctx: RungContext) -> RungResult:
        """Sample n answers per test record and keep the highest-reward one."""
        from ladder.cost import cost_of
        from ladder.evaluate.reward import load_reward
        from ladder.prompts.best_of_n import best_of_n

        n = int(self.options.get("n", 4))
        reward = load_reward(str(self.options["reward"]), task_reward_context(task))
        lm = ctx.models.get(model)
        template = task_template(task.spec)
        prompts = [template.render(d) for d in task_records(task.test)]
        params = prompt_params(task, self.options).model_copy(
            update={"temperature": float(self.options.get("temperature", 0.8)),
                    "seed": int(self.options.get("seed", task.spec.seed))}
        )  # fmt: skip
        size = int(self.options.get("batch_size", 8))
        local = lm.info.capabilities.local_compute
        ctx.log(f"best_of_n: {n} samples per record, reward {reward.name}")
        outputs, latencies, rows = [], [], []
        tokens_in = tokens_out = 0
        cost = scoring = 0.0
        for start in range(0, len(prompts), size):
            chunk = prompts[start : start + size]
            began = time.perf_counter()
            picked = best_of_n(lm, chunk, params, reward, n)
            spent = time.perf_counter() - began
            share = len(chunk) if local else 1  # a local batch's time is split between its records
            mine = [sum(c.latency_s for c in r.candidates) / share for r in picked]
            scoring += max(0.0, spent - sum(mine)) if local else 0.0  # the reward's own time
            latencies += mine
            for result in picked:
                outputs.append(result.best.text)
                rows.append({"output": result.best.text, "kept": result.index,
                             "rewards": result.rewards,
                             "samples": [c.text for c in result.candidates]})  # fmt: skip
                for c in result.candidates:
                    tokens_in += c.prompt_tokens
                    tokens_out += c.completion_tokens
                    cost += cost_of(lm.info, c, gpu_seconds=c.latency_s / share)
        _write_rows(ctx, rows)
        return RungResult(
            model=model,
            outputs=outputs,
            answers=[None] * len(outputs),
            latencies=latencies,
            prompt_tokens=tokens_in,
            completion_tokens=tokens_out,
            token_cost_usd=cost,
            compute_seconds=(sum(latencies) if local else 0.0) + scoring,
            template_version=template.version,
        )


def _write_rows(ctx: RungContext, rows: list[dict[str, Any]]) -> None:
    from ladder.fsutil import atomic_write_text

    text = "".join(json.dumps(r) + "\n" for r in rows)
    atomic_write_text(ctx.out / "predictions.raw.jsonl", text)


register_rung("best_of_n", BestOfNRung.build, options=_OPTIONS, validate=check_options)
