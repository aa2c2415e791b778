"""``full``: full fine-tuning; every parameter trains (AdamW on all weights)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ladder.train.methods.registry import MemoryProfile, register_method

if TYPE_CHECKING:
    from ladder.train.config import TrainConfig
    from ladder.train.finetune_config import FinetuneConfig

__all__ = ["FULL", "FullMethod", "train_everything"]


def train_everything(model: Any) -> Any:
    """Switch gradients on for every parameter of ``model`` (in place); return it."""
    for p in model.parameters():
        p.requires_grad_(True)
    return model


class FullMethod:
    """Every parameter trains; the run saves full weights."""

    name = "full"
    description = "full fine-tuning (all parameters)"
    train_defaults: Mapping[str, Any] = MappingProxyType({"lr": 2e-5})
    needs_preference = False
    memory = MemoryProfile(
        trains="all",
        weight_dtypes=("fp32", "bf16", "fp16"),
        dtype_advice="quantised weights are not trained directly; use method qlora for a "
        "4-bit base",
    )

    def saves_adapter(self, cfg: FinetuneConfig) -> bool:
        """Never: the trained weights are the model."""
        return False

    def load(self, path: Path) -> tuple[Any, Any]:
        """The base in fp32."""
        from ladder.train.methods.loading import load_base

        return load_base(path)

    def prepare(self, model: Any, cfg: FinetuneConfig, path: Path) -> Any:
        """All parameters get gradients."""
        return train_everything(model)

    def training_config(self, tcfg: TrainConfig) -> tuple[TrainConfig, list[str]]:
        """Unchanged."""
        return tcfg, []


FULL = FullMethod()
register_method(FULL)
