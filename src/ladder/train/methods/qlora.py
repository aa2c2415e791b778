"""``qlora``: the base quantised to 4-bit NormalFloat with double quantisation through
bitsandbytes, LoRA adapters on top (Dettmers et al. 2023)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ladder.errors import ModelLoadError, UnsupportedError
from ladder.train.methods.lora import add_lora
from ladder.train.methods.registry import MemoryProfile, register_method

if TYPE_CHECKING:
    import torch

    from ladder.train.config import TrainConfig
    from ladder.train.finetune_config import FinetuneConfig

__all__ = ["QLORA", "QLoraMethod", "count_4bit_layers"]


class QLoraMethod:
    """LoRA on every linear layer of an NF4 base; the run saves the adapters."""

    name = "qlora"
    description = "QLoRA: NF4 + double quantisation base, LoRA adapters (Dettmers et al. 2023)"
    train_defaults: Mapping[str, Any] = MappingProxyType({"lr": 2e-4})
    needs_preference = False
    memory = MemoryProfile(
        trains="adapters",
        weight_dtypes=("nf4",),
        dtype_advice="qlora means an nf4 base; use method lora",
        default_dtype="nf4",
    )

    def saves_adapter(self, cfg: FinetuneConfig) -> bool:
        """Always; merging reloads the base in full precision (no rounding to 4 bits)."""
        return True

    def load(self, path: Path) -> tuple[Any, Any]:
        """The base with its linear layers in NF4, placed on this process's device.

        Raises:
            UnsupportedError: bitsandbytes cannot quantise this model.
        """
        from ladder.train.methods.loading import load_base, training_device

        try:
            model, tokenizer = load_base(
                path, quantization_config=_nf4_config(), device_map={"": training_device()}
            )
        except ModelLoadError as exc:
            raise UnsupportedError(
                f"{path}: bitsandbytes cannot quantise this model to 4 bits ({exc}); "
                "use --method lora"
            ) from None
        _keep_trainable_layout(model)
        return model, tokenizer

    def prepare(self, model: Any, cfg: FinetuneConfig, path: Path) -> Any:
        """Norms and embeddings to fp32, then LoRA adapters (all linear layers by default).

        Raises:
            UnsupportedError: no layer bitsandbytes could quantise.
        """
        if count_4bit_layers(model) == 0:
            raise UnsupportedError(
                f"{path}: --method qlora found no linear layer bitsandbytes can quantise "
                "(the output head is kept in full precision); use --method lora or full"
            )
        from peft import prepare_model_for_kbit_training

        from ladder.quiet import peft_quietly

        # Norms and embeddings to fp32, input gradients on; no activation checkpointing.
        with peft_quietly():
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        return add_lora(model, cfg.lora, path, all_linear_by_default=True)

    def training_config(self, tcfg: TrainConfig) -> tuple[TrainConfig, list[str]]:
        """Paged AdamW on CUDA (optimizer states page to CPU memory under pressure)."""
        import torch

        if not torch.cuda.is_available():
            return tcfg, ["paged AdamW needs a CUDA GPU; training with torch AdamW on this device"]
        if tcfg.optimizer == "adamw":
            return tcfg.model_copy(update={"optimizer": "paged_adamw"}), []
        return tcfg, []


def _keep_trainable_layout(model: Any) -> None:
    """Stop bitsandbytes repacking 4-bit weights for its CPU inference kernel.

    bitsandbytes 0.50 repacks a ``Linear4bit`` weight for its AVX512-BF16 kernel on the
    first eval-mode forward on CPU, and keeps it repacked when training resumes; that
    kernel has no autograd, so every gradient below the layer would silently be wrong
    after the first validation pass. Training keeps the standard layout throughout.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def _nf4_config() -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    on_gpu = torch.cuda.is_available()
    compute = torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",  # 4-bit NormalFloat (QLoRA, section 3)
        bnb_4bit_use_double_quant=True,  # quantise the quantisation constants too
        bnb_4bit_compute_dtype=compute,
    )


def count_4bit_layers(model: torch.nn.Module) -> int:
    """How many bitsandbytes ``Linear4bit`` layers the model holds."""
    import bitsandbytes as bnb

    return sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())


QLORA = QLoraMethod()
register_method(QLORA)
