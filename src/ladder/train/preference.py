"""Direct Preference Optimization (Rafailov et al. 2023), as an objective of the one loop.

For a prompt x with a chosen reply y_w and a rejected reply y_l, DPO minimises

    -log σ(β [(log π(y_w|x) - log π_ref(y_w|x)) - (log π(y_l|x) - log π_ref(y_l|x))])

where π is the model being trained and π_ref a frozen reference (the model before
training). The reference log-probabilities never change, so they are computed once,
before training, and travel in the batches (``ref_logps``), as TRL's
``precompute_ref_log_probs`` does: no second model sits in memory while training. For
LoRA the reference is the base model (the adapters start at zero); for full DPO it is the
initial weights, i.e. a frozen copy.

Why not TRL's ``DPOTrainer``: it is a ``transformers.Trainer`` subclass, a second training
loop with its own checkpoints, accumulation and resume; its loss is not exposed as a
function we could call from ours. The loss is a few lines, tested here against the
formula and its known values (log 2 at the start, falling as the margin grows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ladder.data.formats import IGNORE_INDEX, Encoded
from ladder.train.batches import score_pairs

__all__ = ["DPOObjective", "dpo_loss", "preference_accuracy", "reference_logps", "sequence_logps"]


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of next-token log-probabilities of each row's target tokens.

    Args:
        logits: (B, T, V) model outputs.
        labels: (B, T) token ids, ``-100`` where nothing is predicted.

    Returns:
        (B,) fp32 log-probabilities of the replies.
    """
    targets = labels[:, 1:]  # (B, T-1)
    mask = targets != IGNORE_INDEX
    logp = torch.log_softmax(logits[:, :-1, :].float(), dim=-1)  # (B, T-1, V)
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    return (picked * mask).sum(dim=-1)


def dpo_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Per-pair DPO loss (Rafailov et al. 2023, eq. 7); all inputs (N,) log-probabilities."""
    margin = (chosen - ref_chosen) - (rejected - ref_rejected)  # (N,)
    return -F.logsigmoid(beta * margin)


class DPOObjective:
    """The loop's objective for preference pairs: rows ``[chosen..., rejected...]``."""

    def __init__(self, beta: float) -> None:
        """``beta``: how far the policy may move from the reference (higher: less far)."""
        self.beta = beta

    def units(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Number of pairs in the batch."""
        return torch.tensor(batch["input_ids"].size(0) // 2, device=batch["input_ids"].device)

    def loss_sum(
        self,
        model: torch.nn.Module,
        batch: Mapping[str, torch.Tensor],
        forward_kwargs: Mapping[str, Any],
    ) -> torch.Tensor:
        """Summed DPO loss of the batch's pairs."""
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **forward_kwargs
        ).logits  # (2N, T, V)
        logps = sequence_logps(logits, batch["labels"])  # (2N,)
        n = logps.size(0) // 2
        ref = batch["ref_logps"]
        return dpo_loss(logps[:n], logps[n:], ref[:n], ref[n:], self.beta).sum()


def reference_logps(
    model: torch.nn.Module,
    pairs: Sequence[tuple[Encoded, Encoded]],
    *,
    pad_id: int,
    batch_size: int = 8,
) -> torch.Tensor:
    """(N, 2) log-probabilities of (chosen, rejected) under ``model`` as it is now, eval mode."""
    return score_pairs(model, pairs, _reply_logps, pad_id=pad_id, batch_size=batch_size)


def _reply_logps(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """(B,) log-probabilities of each row's reply (no KV cache: one forward pass)."""
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).logits  # (B, T, V)
    return sequence_logps(logits, batch["labels"])


def preference_accuracy(
    model: torch.nn.Module,
    pairs: Sequence[tuple[Encoded, Encoded]],
    ref: torch.Tensor,
    *,
    pad_id: int,
) -> float:
    """Share of pairs whose implicit reward prefers the chosen reply (DPO's reward accuracy)."""
    now = reference_logps(model, pairs, pad_id=pad_id)  # (N, 2)
    margin = (now[:, 0] - ref[:, 0]) - (now[:, 1] - ref[:, 1])
    return float((margin > 0).float().mean())
