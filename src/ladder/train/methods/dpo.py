"""``dpo``: Direct Preference Optimization (Rafailov et al. 2023) on preference pairs.

The loss and the reference log-probabilities are :mod:`ladder.train.preference`'s; this
module says what trains: LoRA adapters (``dpo.weights: lora``; the reference is then the
base, since the adapters start at zero) or all weights (``dpo.weights: full``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ladder.train.methods.full import train_everything
from ladder.train.methods.lora import add_lora
from ladder.train.methods.registry import MemoryProfile, register_method

if TYPE_CHECKING:
    from ladder.train.config import TrainConfig
    from ladder.train.finetune_config import FinetuneConfig

__all__ = ["DPO", "DPOMethod"]


class DPOMethod:
    """Preference tuning of LoRA adapters (default) or of all weights."""

    name = "dpo"
    description = "DPO (Rafailov et al. 2023): preference pairs; LoRA adapters or all weights"
    # For LoRA adapters; full-weight DPO wants ~5e-7..5e-6.
    train_defaults: Mapping[str, Any] = MappingProxyType({"lr": 5e-5})
    needs_preference = True
    # The estimate is for the default, adapters; chosen and rejected share one batch.
    memory = MemoryProfile(trains="adapters", sequences_per_item=2)

    def saves_adapter(self, cfg: FinetuneConfig) -> bool:
        """With ``dpo.weights: lora``."""
        return cfg.dpo.weights == "lora"

    def load(self, path: Path) -> tuple[Any, Any]:
        """The base in fp32."""
        from ladder.train.methods.loading import load_base

        return load_base(path)

    def prepare(self, model: Any, cfg: FinetuneConfig, path: Path) -> Any:
        """LoRA adapters from ``cfg.lora``, or every parameter with ``dpo.weights: full``."""
        if self.saves_adapter(cfg):
            return add_lora(model, cfg.lora, path)
        return train_everything(model)

    def training_config(self, tcfg: TrainConfig) -> tuple[TrainConfig, list[str]]:
        """Unchanged."""
        return tcfg, []


DPO = DPOMethod()
register_method(DPO)
