"""Pure arithmetic the loop relies on: the learning-rate schedule and the precision choice.

Kept apart from the loop and tested on their own, so a recipe cannot drift from them.
"""

from __future__ import annotations

import math

from ladder.train.config import MixedPrecision, TrainConfig

__all__ = ["CPU_BF16_MIN_SPEEDUP", "lr_at", "resolve_mixed_precision"]


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


# bf16 autocast on a CPU must beat fp32 by this much on the probe
# (:func:`ladder.train.meters.bf16_autocast_speedup`) before ``auto`` picks it: the probe's
# gain shrinks by about half in a whole training step (the fp32 loss, attention and the
# optimizer do not speed up), and bf16 rounding is only worth a clear gain.
CPU_BF16_MIN_SPEEDUP = 1.5


def resolve_mixed_precision(
    requested: MixedPrecision, *, cuda_bf16: bool, cpu_bf16_speedup: float | None = None
) -> str:
    """The precision accelerate should use: ``auto`` becomes bf16 only where it is faster.

    bf16 autocast pays off on CUDA GPUs with native bf16 (Ampere and newer). On a CPU it
    depends on the instruction set (AVX512-BF16, AMX) and on the model's width, so ``auto``
    picks bf16 there only from a measurement: ``cpu_bf16_speedup`` (how many times faster
    the probe trained under bf16 autocast) at least :data:`CPU_BF16_MIN_SPEEDUP`. Without a
    measurement (fine-tuning does not take one) a CPU trains in fp32.

    Args:
        requested: the config value (``auto``, ``no``, ``bf16`` or ``fp16``).
        cuda_bf16: whether a CUDA device with bf16 support is in use.
        cpu_bf16_speedup: the CPU probe's bf16 / fp32 speed ratio; None when not measured.
    """
    if requested != "auto":
        return requested
    if cuda_bf16:
        return "bf16"
    faster = cpu_bf16_speedup is not None and cpu_bf16_speedup >= CPU_BF16_MIN_SPEEDUP
    return "bf16" if faster else "no"
