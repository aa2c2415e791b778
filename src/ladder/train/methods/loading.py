"""The base model a method starts from, loaded for training on this process's device.

Weights load from local safetensors only, never with remote code (the ``hf:`` backend's
rules; the folder was checked by :func:`ladder.train.finetune.resolve_checkpoint`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ladder.errors import ModelLoadError

__all__ = ["load_base", "trainable_count", "training_device"]


def training_device() -> str:
    """This process's device: its own GPU under torchrun, else the only one, else CPU."""
    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"


def load_base(path: Path, **load_options: Any) -> tuple[Any, Any]:
    """(model in fp32, tokenizer) from the checkpoint folder ``path``.

    Args:
        path: a checkpoint folder :func:`ladder.train.finetune.resolve_checkpoint` accepted.
        load_options: more ``from_pretrained`` arguments (a quantisation config ...).

    Raises:
        ModelLoadError: transformers cannot load it.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=torch.float32,
            use_safetensors=True,
            trust_remote_code=False,
            local_files_only=True,
            **load_options,
        )
    except (AssertionError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"cannot load {path}: {exc}") from None
    return model, tokenizer


def trainable_count(model: torch.nn.Module) -> int:
    """How many parameters of ``model`` get gradients."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
