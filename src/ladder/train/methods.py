"""Loading a base model for training and making it trainable by method.

- ``full``: every parameter trains.
- ``freeze``: transfer learning; only the last k blocks and/or the output head train.
- ``lora``: LoRA adapters (Hu et al. 2021) through PEFT on the chosen layers.
- ``qlora``: the base quantised to 4-bit NormalFloat with double quantisation through
  bitsandbytes, LoRA adapters on top (Dettmers et al. 2023).

Weights load from local safetensors only, never with remote code (the ``hf:`` backend's
rules, through the same checks in :mod:`ladder.models.hf_checkpoint`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ladder.errors import ConfigError, ModelLoadError, UnsupportedError
from ladder.models.hf_checkpoint import check_weights, read_config
from ladder.quiet import peft_quietly
from ladder.train.finetune_config import FinetuneConfig, LoraSettings

__all__ = [
    "count_4bit_layers",
    "decoder_blocks",
    "load_base",
    "lora_targets",
    "prepare",
    "resolve_checkpoint",
    "training_device",
]


def resolve_checkpoint(spec: str) -> Path:
    """The local checkpoint folder a model spec names (``hf:DIR`` or ``builtin:NAME``).

    Raises:
        ConfigError: another backend (an API model has no weights to train).
        ModelLoadError: the folder is not a usable safetensors checkpoint.
    """
    prefix, _, rest = spec.partition(":")
    if prefix == "hf":
        path = Path(rest).expanduser()
    elif prefix == "builtin":
        from ladder.models.builtin import builtin_path, get_preset, is_trained

        get_preset(rest)
        if not is_trained(rest):
            raise ModelLoadError(
                f"builtin:{rest} is not trained yet: run `ladder pretrain --preset {rest}`"
            )
        path = builtin_path(rest)
    else:
        raise ConfigError(
            f"--model {spec!r}: fine-tuning needs local weights; give hf:DIR or builtin:NAME"
        )
    config = read_config(path)
    check_weights(path, allow_pickle=False)
    if config.get("is_encoder_decoder"):
        raise UnsupportedError(
            f"{path} is an encoder-decoder model; ladder fine-tunes decoder-only (causal) LMs"
        )
    return path


def training_device() -> str:
    """This process's device: its own GPU under torchrun, else the only one, else CPU."""
    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"


def load_base(path: Path, method: str) -> tuple[Any, Any]:
    """(model, tokenizer) for training; the model in fp32, or NF4 for qlora."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    kwargs: dict[str, Any] = {}
    if method == "qlora":
        kwargs = {"quantization_config": _nf4_config(), "device_map": {"": training_device()}}
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=torch.float32,
            use_safetensors=True,
            trust_remote_code=False,
            local_files_only=True,
            **kwargs,
        )
    except (AssertionError, RuntimeError, ValueError) as exc:
        if method == "qlora":
            raise UnsupportedError(
                f"{path}: bitsandbytes cannot quantise this model to 4 bits ({exc}); "
                "use --method lora"
            ) from None
        raise ModelLoadError(f"cannot load {path}: {exc}") from None
    if method == "qlora":
        _keep_trainable_layout(model)
    return model, tokenizer


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


def prepare(model: Any, cfg: FinetuneConfig, path: Path) -> Any:
    """Make ``model`` trainable for ``cfg.method``; returns the model to train.

    Raises:
        UnsupportedError: qlora on a model with no layer bitsandbytes can quantise.
        ConfigError: freeze with nothing left to train, unknown LoRA target modules.
    """
    method = cfg.method
    if method == "full" or (method == "dpo" and cfg.dpo.weights == "full"):
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if method == "freeze":
        return _freeze(model, cfg.freeze.last_blocks, cfg.freeze.train_head)
    if method == "qlora":
        if count_4bit_layers(model) == 0:
            raise UnsupportedError(
                f"{path}: --method qlora found no linear layer bitsandbytes can quantise "
                "(the output head is kept in full precision); use --method lora or full"
            )
        from peft import prepare_model_for_kbit_training

        # Norms and embeddings to fp32, input gradients on; no activation checkpointing.
        with peft_quietly():
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return _add_lora(model, cfg.lora, method, path)


def _add_lora(model: Any, lora: LoraSettings, method: str, path: Path) -> Any:
    from peft import LoraConfig, get_peft_model

    targets = lora_targets(model, lora, method)
    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,  # type: ignore[arg-type]  # PEFT takes a float; its hint says int
        lora_dropout=lora.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
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


def lora_targets(model: Any, lora: LoraSettings, method: str) -> str | list[str]:
    """The LoRA target modules: as given, or a sensible default for the architecture.

    ``auto`` is PEFT's per-architecture default (the attention query and value projections,
    as in the LoRA paper) for lora, and ``all-linear`` for qlora, as QLoRA recommends
    (adapters on every linear layer recover full fine-tuning quality).
    """
    if lora.target_modules != "auto":
        return lora.target_modules
    if method == "qlora":
        return "all-linear"
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    found = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model.config.model_type)
    return list(found) if found else "all-linear"


def _freeze(model: Any, last_blocks: int, train_head: bool) -> Any:
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
    n_layers = getattr(model.config, "num_hidden_layers", None)
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    matching = [m for m in lists if len(m) == n_layers] or lists
    if not matching:
        raise UnsupportedError(f"cannot find the transformer blocks of {type(model).__name__}")
    return max(matching, key=len)
