"""Best-of-n: sample n answers per prompt and keep the one a reward scores highest.

Sample ``i`` of every prompt is drawn with seed ``seed + i`` (``seed`` 0 when unset), so
sample 0 is exactly the answer a plain seeded call gives, and best-of-n can only keep it
or something the reward likes better. Ties go to the first sample. The n rounds are n
batched ``generate`` calls over all prompts, so any backend works; the rewards are one
:meth:`~ladder.evaluate.reward.Reward.score` call over every candidate. Used by ``ladder
generate --best-of`` and the climb's ``best_of_n`` rung (Nakano et al. 2021, WebGPT's
best-of-n against a reward model; Stiennon et al. 2020).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ladder.errors import ConfigError

if TYPE_CHECKING:
    from ladder.evaluate.reward import Reward
    from ladder.models.base import Completion, GenerationParams, LanguageModel, Prompt

__all__ = ["BestOfN", "best_of_n", "check_best_of"]


@dataclass(frozen=True)
class BestOfN:
    """One prompt's samples, their rewards and the one kept.

    Attributes:
        candidates: the n completions, sample 0 first.
        rewards: the reward of each candidate, in the same order.
        index: which candidate was kept (the first of the highest rewards).
    """

    candidates: list[Completion]
    rewards: list[float]
    index: int

    @property
    def best(self) -> Completion:
        """The kept completion."""
        return self.candidates[self.index]


def check_best_of(n: int, temperature: float, where: str = "--best-of") -> None:
    """Raise a one-line :class:`ConfigError` when ``n`` samples cannot differ or n < 1."""
    if n < 1:
        raise ConfigError(f"{where} {n}: give at least 1 sample")
    if n > 1 and temperature <= 0:
        raise ConfigError(
            f"{where} {n} samples at temperature {temperature:g} are all the same answer; "
            "set a temperature above 0 (e.g. 0.8)"
        )


def best_of_n(
    lm: LanguageModel,
    prompts: Sequence[Prompt],
    params: GenerationParams,
    reward: Reward,
    n: int,
    *,
    references: Sequence[Any] | None = None,
) -> list[BestOfN]:
    """For each prompt, ``n`` seeded samples and the highest-reward one.

    Args:
        lm: any model.
        prompts: texts or chat messages.
        params: decoding settings; the seed of sample ``i`` is ``params.seed + i``.
        reward: scores each (prompt, answer).
        n: samples per prompt.
        references: one per prompt, for rewards that need them (``metric``).

    Raises:
        ConfigError: ``n`` < 1, or n > 1 at temperature 0 (:func:`check_best_of`).
    """
    check_best_of(n, params.temperature)
    seed = params.seed if params.seed is not None else 0
    rounds = [
        lm.generate(list(prompts), params.model_copy(update={"seed": seed + i})) for i in range(n)
    ]
    per_prompt = [[rounds[i][p] for i in range(n)] for p in range(len(prompts))]
    scores = reward.score(
        [p for p in prompts for _ in range(n)],
        [c.text for cands in per_prompt for c in cands],
        [r for r in references for _ in range(n)] if references is not None else None,
    )
    out = []
    for p, cands in enumerate(per_prompt):
        rewards = scores[p * n : (p + 1) * n]
        out.append(BestOfN(cands, rewards, rewards.index(max(rewards))))
    return out
