"""Pure arithmetic the loop relies on: the learning-rate schedule and the precision choice.

Kept apart from the loop and tested on their own, so a recipe cannot drift from them.
"""

from __future__ import annotations

import math

from ladder.train.config import MixedPrecision, TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warmup, then cosine decay.

    Warmup rises linearly to ``cfg.lr`` over ``cfg.warmup_steps`` steps (step 0 already gets
    ``lr / warmup_steps``, so no step is wasted at lr 0). Then a half cosine falls from ``lr``
    to ``min_lr`` at ``max_steps`` (Loshchilov & Hutter 2017, SGDR, without restarts); past
    ``max_steps`` it stays at ``min_lr``.

    Args:
        step: index of the optimizer step about to be taken.
        cfg: the training config (``lr``, ``min_lr``, ``warmup_steps``, ``max_steps``).
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decay_steps = cfg.max_steps - cfg.warmup_steps
    if decay_steps <= 0:
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def resolve_mixed_precision(requested: MixedPrecision, *, cuda_bf16: bool) -> str:
    """The precision accelerate should use: ``auto`` becomes bf16 only where it is faster.

    bf16 autocast pays off on CUDA GPUs with native bf16 (Ampere and newer). On CPU the
    loop trains in fp32: bf16 speed there depends on the instruction set, and fp32 keeps
    CPU runs bit-for-bit reproducible across machines.

    Args:
        requested: the config value (``auto``, ``no``, ``bf16`` or ``fp16``).
        cuda_bf16: whether a CUDA device with bf16 support is in use.
    """
    if requested != "auto":
        return requested
    return "bf16" if cuda_bf16 else "no"
