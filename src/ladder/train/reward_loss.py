"""Reward-model training: the Bradley–Terry loss on preference pairs, as an objective of the
one loop.

A reward model r (a sequence classifier with one output, read at the last non-pad token)
is trained so that, for a prompt x, the chosen reply y_w outscores the rejected y_l:

    P(y_w ≻ y_l | x) = σ(r(x, y_w) - r(x, y_l))        (Bradley & Terry 1952)

and the loss is its negative log-likelihood, ``-log σ(r_w - r_l)`` per pair, as in
Ouyang et al. 2022 (InstructGPT, eq. 1) with one comparison per prompt. It starts at log 2
when the head outputs the same reward for every sequence (``ladder finetune --method
reward`` zeroes the new head, so it does) and falls as the margin grows. Batches are
:func:`ladder.train.batches.collate_pairs`' rows ``[chosen..., rejected...]``, the layout
DPO trains on, so the same preference files and batching serve both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ladder.data.formats import Encoded
from ladder.train.batches import score_pairs

__all__ = ["BradleyTerryObjective", "bradley_terry_loss", "pair_rewards", "pairwise_accuracy"]


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Per-pair loss ``-log σ(r_chosen - r_rejected)``; inputs (N,) rewards, output (N,)."""
    return -F.logsigmoid(chosen.float() - rejected.float())


def _rewards(
    model: torch.nn.Module, batch: Mapping[str, torch.Tensor], forward_kwargs: Mapping[str, Any]
) -> torch.Tensor:
    """(B,) rewards: the single logit of each row (the model pools the last non-pad token)."""
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **forward_kwargs
    ).logits  # (B, 1)
    return logits[:, 0]


class BradleyTerryObjective:
    """The loop's objective for reward models on preference pairs; its validation figure is
    the pairwise accuracy."""

    validation_metric = "preference_accuracy"

    def units(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Number of pairs in the batch (rows are chosen then rejected)."""
        return torch.tensor(batch["input_ids"].size(0) // 2, device=batch["input_ids"].device)

    def loss_sum(
        self,
        model: torch.nn.Module,
        batch: Mapping[str, torch.Tensor],
        forward_kwargs: Mapping[str, Any],
    ) -> torch.Tensor:
        """Summed Bradley–Terry loss of the batch's pairs."""
        rewards = _rewards(model, batch, forward_kwargs)  # (2N,)
        n = rewards.size(0) // 2
        return bradley_terry_loss(rewards[:n], rewards[n:]).sum()

    def validation_value(self, model: torch.nn.Module, items: Any, pad_id: int) -> float:
        """Share of validation pairs where the chosen reply gets the higher reward."""
        return pairwise_accuracy(model, items, pad_id=pad_id)


def pair_rewards(
    model: torch.nn.Module,
    pairs: Sequence[tuple[Encoded, Encoded]],
    *,
    pad_id: int,
    batch_size: int = 8,
) -> torch.Tensor:
    """(N, 2) rewards of (chosen, rejected) under ``model``, in eval mode."""
    return score_pairs(
        model,
        pairs,
        lambda m, batch: _rewards(m, batch, {"use_cache": False}),
        pad_id=pad_id,
        batch_size=batch_size,
    )


def pairwise_accuracy(
    model: torch.nn.Module, pairs: Sequence[tuple[Encoded, Encoded]], *, pad_id: int
) -> float:
    """Share of pairs whose chosen reply gets the strictly higher reward (ties count wrong)."""
    rewards = pair_rewards(model, pairs, pad_id=pad_id)
    return float((rewards[:, 0] > rewards[:, 1]).float().mean())
