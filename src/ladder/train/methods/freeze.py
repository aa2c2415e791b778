"""``freeze``: transfer learning; only the last ``freeze.last_blocks`` transformer blocks
and/or the output head train, the rest of the model stays as it was."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ladder.errors import ConfigError, UnsupportedError
from ladder.train.methods.registry import MemoryProfile, register_method

if TYPE_CHECKING:
    import torch

    from ladder.train.config import TrainConfig
    from ladder.train.finetune_config import FinetuneConfig

__all__ = ["FREEZE", "FreezeMethod", "decoder_blocks", "freeze_all_but"]


class FreezeMethod:
    """The top blocks and the head train; the run saves full weights."""

    name = "freeze"
    description = "transfer learning (last blocks and/or head trained)"
    train_defaults: Mapping[str, Any] = MappingProxyType({"lr": 1e-4})
    needs_preference = False
    memory = MemoryProfile(
        trains="last_blocks",
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
        """Gradients only for ``cfg.freeze.last_blocks`` blocks and, if asked, the head.

        Raises:
            ConfigError: more blocks asked for than the model has, or nothing left to train.
        """
        return freeze_all_but(model, cfg.freeze.last_blocks, cfg.freeze.train_head)

    def training_config(self, tcfg: TrainConfig) -> tuple[TrainConfig, list[str]]:
        """Unchanged."""
        return tcfg, []


def freeze_all_but(model: Any, last_blocks: int, train_head: bool) -> Any:
    """Freeze ``model`` (in place) except its last ``last_blocks`` blocks and, with
    ``train_head``, its output layer; return it.

    Raises:
        ConfigError: more blocks asked for than the model has, or nothing left to train.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    blocks = decoder_blocks(model)
    if last_blocks > len(blocks):
        raise ConfigError(
            f"freeze.last_blocks={last_blocks} but the model has {len(blocks)} blocks"
        )
    for block in list(blocks)[len(blocks) - last_blocks :]:
        for p in block.parameters():
            p.requires_grad_(True)
    if train_head:
        for p in model.get_output_embeddings().parameters():
            p.requires_grad_(True)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("freeze: nothing to train; set freeze.last_blocks > 0 or train_head")
    return model


def decoder_blocks(model: Any) -> torch.nn.ModuleList:
    """The model's stack of transformer blocks (the longest ``ModuleList`` it holds)."""
    import torch

    n_layers = getattr(model.config, "num_hidden_layers", None)
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    matching = [m for m in lists if len(m) == n_layers] or lists
    if not matching:
        raise UnsupportedError(f"cannot find the transformer blocks of {type(model).__name__}")
    return max(matching, key=len)


FREEZE = FreezeMethod()
register_method(FREEZE)
