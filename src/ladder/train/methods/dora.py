"""``dora``: Weight-Decomposed Low-Rank Adaptation (Liu et al. 2024, "DoRA").

Each adapted weight is split into a magnitude (one value per output) and a direction:
W' = m · V / ‖V‖ with V = W + (alpha / r) · B A and the norm taken per output. LoRA's A and
B adapt the direction, and m trains too. It is PEFT's ``LoraConfig(use_dora=True)``: LoRA in every
other respect (settings under ``lora:``, adapters saved, merged by PEFT).
"""

from __future__ import annotations

from types import MappingProxyType

from ladder.train.methods.lora import LoraMethod
from ladder.train.methods.registry import MemoryProfile, register_method

__all__ = ["DORA"]

DORA = LoraMethod(
    name="dora",
    description="DoRA (Liu et al. 2024): LoRA on the weights' direction, a trained magnitude "
    "per output",
    train_defaults=MappingProxyType({"lr": 2e-4}),
    memory=MemoryProfile(trains="adapters", magnitudes=True),
    use_dora=True,
)
register_method(DORA)
