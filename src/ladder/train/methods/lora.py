"""``lora``: LoRA adapters (Hu et al. 2021) through PEFT on a frozen base.

Each adapted layer computes W x + (alpha / r) · B A x with only A and B trained; the run
saves the adapters and, by default, the adapters merged into the base. :class:`LoraMethod`
is also the shape of LoRA's variants that differ only in PEFT settings (DoRA:
:mod:`ladder.train.methods.dora`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ladder.errors import ConfigError
from ladder.train.methods.registry import MemoryProfile, register_method

if TYPE_CHECKING:
    from ladder.train.config import TrainConfig
    from ladder.train.finetune_config import FinetuneConfig, LoraSettings

__all__ = ["LORA", "LoraMethod", "add_lora", "lora_targets"]


@dataclass(frozen=True)
class LoraMethod:
    """LoRA adapters on a full-precision base; ``use_dora`` turns them into DoRA."""

    name: str
    description: str
    train_defaults: Mapping[str, Any]
    memory: MemoryProfile
    use_dora: bool = False
    needs_preference: bool = False

    def saves_adapter(self, cfg: FinetuneConfig) -> bool:
        """Always: ``OUT/adapter``, merged into ``OUT/model`` unless ``merge: false``."""
        return True

    def load(self, path: Path) -> tuple[Any, Any]:
        """The base in fp32."""
        from ladder.train.methods.loading import load_base

        return load_base(path)

    def prepare(self, model: Any, cfg: FinetuneConfig, path: Path) -> Any:
        """The base wrapped by PEFT with adapters on ``cfg.lora``'s target modules.

        Raises:
            ConfigError: target modules the model does not have.
        """
        return add_lora(model, cfg.lora, path, use_dora=self.use_dora)

    def training_config(self, tcfg: TrainConfig) -> tuple[TrainConfig, list[str]]:
        """Unchanged."""
        return tcfg, []


def add_lora(
    model: Any,
    lora: LoraSettings,
    path: Path,
    *,
    use_dora: bool = False,
    all_linear_by_default: bool = False,
) -> Any:
    """``model`` wrapped by PEFT with LoRA (or DoRA) adapters; the base weights frozen.

    PEFT changes ``model``'s layers in place; the returned ``PeftModel`` is what trains.

    Args:
        model: a transformers causal LM.
        lora: rank, alpha, dropout and target modules.
        path: the checkpoint folder, to name in errors.
        use_dora: decompose each adapted weight into magnitude and direction (Liu et al. 2024).
        all_linear_by_default: ``target_modules: auto`` means every linear layer (QLoRA).

    Raises:
        ConfigError: target modules the model does not have.
    """
    from peft import LoraConfig, get_peft_model

    from ladder.quiet import peft_quietly

    targets = lora_targets(model, lora, all_linear_by_default=all_linear_by_default)
    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,  # type: ignore[arg-type]  # PEFT takes a float; its hint says int
        lora_dropout=lora.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
        use_dora=use_dora,
        # GPT-2 style Conv1D layers store weights transposed: say so, rather than have PEFT
        # switch it on with a warning on every such model.
        fan_in_fan_out=_has_conv1d(model),
    )
    try:
        with peft_quietly():
            return get_peft_model(model, config)
    except ValueError as exc:
        raise ConfigError(f"lora.target_modules {targets!r} for {path}: {exc}") from None


def _has_conv1d(model: Any) -> bool:
    from transformers.pytorch_utils import Conv1D

    return any(isinstance(module, Conv1D) for module in model.modules())


def lora_targets(
    model: Any, lora: LoraSettings, *, all_linear_by_default: bool = False
) -> str | list[str]:
    """The LoRA target modules: as given, or a sensible default for the architecture.

    ``auto`` is PEFT's per-architecture default (the attention query and value projections,
    as in the LoRA paper), or ``all-linear`` with ``all_linear_by_default``, as QLoRA
    recommends (adapters on every linear layer recover full fine-tuning quality).
    """
    if lora.target_modules != "auto":
        return lora.target_modules
    if all_linear_by_default:
        return "all-linear"
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    found = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model.config.model_type)
    # PEFT has no row for Phi-3, whose fused qkv_proj holds the query and value projections.
    fused = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()} & {"qkv_proj"}
    return list(found) if found else sorted(fused) or "all-linear"


LORA = LoraMethod(
    name="lora",
    description="LoRA (Hu et al. 2021): low-rank adapters on a frozen base",
    # Adapters start at zero and tolerate a higher rate than full fine-tuning.
    train_defaults=MappingProxyType({"lr": 2e-4}),
    memory=MemoryProfile(trains="adapters"),
)
register_method(LORA)
