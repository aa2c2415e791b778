"""``grpo``: Group Relative Policy Optimization (Shao et al. 2024) of LoRA adapters.

The objective (sampling, rewards, group-normalised advantages, the clipped ratio and the
KL penalty) is :mod:`ladder.train.grpo_loss`'s; this module says what trains (LoRA
adapters, so the base with them switched off is the reference) and builds the reward from
``grpo.reward`` (:func:`ladder.evaluate.reward.load_reward`). It trains on instruction
records: each record's prompt is sampled from, its output is the reference a metric
reward compares with.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ladder.train.methods.lora import add_lora
from ladder.train.methods.registry import MemoryProfile, register_method

if TYPE_CHECKING:
    from ladder.evaluate.reward import Reward
    from ladder.train.config import TrainConfig
    from ladder.train.finetune_config import FinetuneConfig, GRPOSettings
    from ladder.train.grpo_loss import GRPOObjective

__all__ = ["GRPO", "GRPOMethod", "grpo_reward"]


class GRPOMethod:
    """RL on a reward: LoRA adapters, sampled groups, the base as the KL reference."""

    name = "grpo"
    description = (
        "GRPO (Shao et al. 2024): RL on a reward (a metric or a reward model); LoRA adapters"
    )
    train_defaults: Mapping[str, Any] = MappingProxyType({"lr": 1e-4})
    needs_preference = False
    # Counted for one sequence per prompt; the G sampled answers multiply activations.
    memory = MemoryProfile(trains="adapters")

    def saves_adapter(self, cfg: FinetuneConfig) -> bool:
        """Always: adapters (merged by PEFT when asked)."""
        return True

    def load(self, path: Path) -> tuple[Any, Any]:
        """The base in fp32."""
        from ladder.train.methods.loading import load_base

        return load_base(path)

    def prepare(self, model: Any, cfg: FinetuneConfig, path: Path) -> Any:
        """LoRA adapters from ``cfg.lora``."""
        return add_lora(model, cfg.lora, path)

    def training_config(self, tcfg: TrainConfig) -> tuple[TrainConfig, list[str]]:
        """Unchanged."""
        return tcfg, []

    def objective(self, cfg: FinetuneConfig) -> GRPOObjective:
        """GRPO with ``cfg.grpo``'s reward and settings; the tokenizer is the base's. It
        reports the mean reward of sampled answers to the validation prompts as
        ``mean_reward``."""
        from transformers import AutoTokenizer

        from ladder.models.builtin import builtin_path
        from ladder.train.grpo_loss import GRPOObjective

        settings = cfg.grpo
        prefix, _, rest = cfg.model.partition(":")  # finetune() has checked the spec
        folder = builtin_path(rest) if prefix == "builtin" else Path(rest).expanduser()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        return GRPOObjective(
            grpo_reward(settings),
            tokenizer,
            group_size=settings.group_size,
            beta=settings.beta,
            epsilon=settings.epsilon,
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            seed=cfg.train.seed if cfg.train else 0,
        )


def grpo_reward(settings: GRPOSettings) -> Reward:
    """The reward ``settings.reward`` names; a metric reward reads each answer as a climb
    scores a test answer: parsed as ``settings.output``, with ``settings.metric_options``."""
    from ladder.evaluate.reward import RewardContext, load_reward

    parse = None
    if settings.output is not None:
        from ladder.climb.task.output import parse_output
        from ladder.climb.task.schema import OutputSpec

        spec = OutputSpec.model_validate(settings.output)
        parse = functools.partial(parse_output, spec=spec)
    kind, _, name = settings.reward.partition(":")
    context = RewardContext(
        metric=name if kind == "metric" and name else None,
        metric_options=settings.metric_options,
        parse=parse,
    )
    return load_reward(settings.reward, context)


GRPO = GRPOMethod()
register_method(GRPO)
