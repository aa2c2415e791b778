"""Next-token loss with gradient-accumulation scaling, as pure tested functions.

The mean loss of a batch is the sum of per-token losses divided by the number of target
tokens. Split into micro-batches with different numbers of targets (padding, ``-100``
prompt masking), averaging each micro-batch's mean and then averaging those is *not* the
batch mean: short micro-batches get too much weight. So every micro-batch divides its loss
*sum* by the target count of the whole accumulation window; the micro-batch losses then add
up to exactly the full-batch mean, and so do their gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["IGNORE_INDEX", "count_targets", "next_token_loss"]

IGNORE_INDEX = -100  # labels with this value are not predicted (prompt tokens, padding)


def count_targets(labels: torch.Tensor) -> torch.Tensor:
    """Number of predicted tokens in ``labels`` (B, T): positions 1..T-1 not set to -100."""
    return (labels[:, 1:] != IGNORE_INDEX).sum()


def next_token_loss(
    logits: torch.Tensor, labels: torch.Tensor, normalizer: torch.Tensor | float = 1.0
) -> torch.Tensor:
    """Sum of next-token cross-entropies over the target tokens, divided by ``normalizer``.

    Args:
        logits: (B, T, V) model outputs; position t predicts token t+1.
        labels: (B, T) token ids, ``-100`` where nothing is predicted.
        normalizer: the target count of the whole accumulation window (see the module
            docstring); 1 returns the plain sum, as evaluation wants.

    Returns:
        A scalar fp32 tensor.
    """
    vocab = logits.size(-1)
    # Upcast: a bf16 softmax over a large vocabulary loses precision the optimizer feels.
    shifted_logits = logits[:, :-1, :].float().reshape(-1, vocab)  # (B*(T-1), V)
    shifted_labels = labels[:, 1:].reshape(-1)  # (B*(T-1),)
    total = F.cross_entropy(
        shifted_logits, shifted_labels, ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return total / normalizer
