"""The ``grpo`` rung: reinforcement learning on a reward after SFT, then ask zero-shot.

**grpo** (Group Relative Policy Optimization: Shao et al. 2024) samples ``group_size``
answers to each train-split prompt, scores them with ``reward`` and trains LoRA adapters
towards the better ones of each group, with a KL penalty (``beta``) to where it started
(:mod:`ladder.train.grpo_loss`). Like ``dpo`` it starts, by default (``start: sft``), from
the checkpoint of the last fine-tuning rung below it on the same model, and from the base
when there is none (or with ``start: base``); its cost includes that checkpoint's training.

Own options: ``reward`` (``metric``: the task's own metric against each record's reference,
the default; ``metric:NAME``; ``hf:PATH[:LABEL]``: a local sequence classifier such as a
reward model; a metric reward reads each sampled answer as the climb reads a test answer:
the task's output parsing and its ``metric_options``), ``group_size``, ``beta``, ``steps``
(optimizer steps; ``train.max_steps``), ``max_new_tokens`` (longest sampled answer),
``start`` (:mod:`ladder.climb.after_sft`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ladder.climb.after_sft import check_start, train_after_sft
from ladder.climb.finetune_rungs import (
    OPTIONS,
    answer_tuned,
    chat_records,
    check_trainable,
    trained_once,
)
from ladder.climb.rungs import RungContext, RungResult, register_rung
from ladder.climb.task import LoadedTask
from ladder.errors import ConfigError

__all__ = ["GRPO_OPTIONS", "GRPORung", "grpo_settings"]

GRPO_OPTIONS = (
    *(o for o in OPTIONS if o not in ("freeze", "retrieve")),
    "reward",
    "group_size",
    "beta",
    "steps",
    "max_new_tokens",
    "start",
)


@dataclass(frozen=True)
class GRPORung:
    """GRPO from the SFT checkpoint below (or the base), then answer (module docstring)."""

    options: Mapping[str, Any]

    @classmethod
    def build(cls, name: str, options: Mapping[str, Any]) -> GRPORung:
        """The rung with the task file's ``options``."""
        check_start(name, options)
        reward = str(options.get("reward", "metric"))
        if reward.partition(":")[0] not in ("metric", "hf"):
            raise ConfigError(
                f"rung {name}: option 'reward' is {reward!r}; use metric, metric:NAME or "
                "hf:PATH[:LABEL]"
            )
        return cls(dict(options))

    def run(self, task: LoadedTask, model: str, ctx: RungContext) -> RungResult:
        """Train on the train split's prompts from the SFT checkpoint (or the base), answer."""
        check_trainable("grpo", model)
        summary = trained_once(ctx, lambda: self._train(task, model, ctx))
        return answer_tuned(task, ctx, self.options, summary)

    def _train(self, task: LoadedTask, model: str, ctx: RungContext) -> dict[str, Any]:
        rows = chat_records(task)  # the reference answer is what a metric reward reads
        grpo = grpo_settings(task, self.options)
        steps = {"max_steps": self.options["steps"]} if "steps" in self.options else {}
        return train_after_sft(
            task,
            model,
            ctx,
            self.options,
            method="grpo",
            records=rows,
            data=("prompts.jsonl", "chat"),
            settings=grpo,
            describe=lambda start: (
                f"reinforcing {start} with {grpo['reward']} on {len(rows)} prompts"
            ),
            train=steps,
        )


def grpo_settings(task: LoadedTask, options: Mapping[str, Any]) -> dict[str, Any]:
    """The ``grpo:`` settings of the rung's run: its reward, and for a metric reward the
    task's output parsing and (for the task's own metric) its ``metric_options``, so that a
    sampled answer is scored exactly as the climb scores a test answer."""
    spec = task.spec
    reward = str(options.get("reward", "metric"))
    if reward == "metric":
        reward = f"metric:{spec.metric_name()}"
    grpo: dict[str, Any] = {"reward": reward}
    if reward.startswith("metric:"):
        grpo["output"] = spec.output.model_dump(exclude_none=True)
        if reward == f"metric:{spec.metric_name()}":
            grpo["metric_options"] = dict(spec.metric_options)
    return grpo | {k: options[k] for k in ("group_size", "beta", "max_new_tokens") if k in options}


# Replaces the plain fine-tuning rung that finetune_rungs registers for every method.
register_rung("grpo", GRPORung.build, options=GRPO_OPTIONS, needs_train=True)
