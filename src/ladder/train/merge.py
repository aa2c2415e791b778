"""Fold LoRA adapters into their base weights, load adapters on top of a base, write model cards.

Merging computes W' = W + (alpha / r) · B A for every adapted layer (Hu et al. 2021,
section 4.1), so the merged model is an ordinary checkpoint with no inference overhead;
for DoRA adapters PEFT also folds in the magnitude: W' = m · V / ‖V‖ with V that sum.
The base is always loaded afresh in full precision, also after QLoRA: the 4-bit weights
were only the training-time copy, and merging into them would round the update away.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from ladder.errors import ConfigError, ModelLoadError
from ladder.fsutil import atomic_dir
from ladder.models.hf_checkpoint import check_weights, read_config
from ladder.train.methods import get_method, method_names

__all__ = [
    "ADAPTER_CONFIG",
    "adapter_base",
    "load_adapter_model",
    "load_base_with_adapter",
    "merge_adapter",
    "model_card",
]

ADAPTER_CONFIG = "adapter_config.json"


def merge_adapter(
    base: str | os.PathLike[str],
    adapter: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    card: dict[str, Any] | None = None,
) -> Path:
    """Write ``base`` with ``adapter`` folded in as a standard HF checkpoint at ``out``.

    The tokenizer (with its chat template) comes from the adapter folder when it has one,
    else from the base. ``out`` appears complete or not at all.

    Args:
        base: the base checkpoint folder.
        adapter: a PEFT adapter folder (``adapter_config.json`` + weights).
        out: where to write the merged checkpoint.
        card: model-card facts (see :func:`model_card`); a minimal card when None.

    Raises:
        ModelLoadError: the base or the adapter cannot be loaded.
    """
    model, tokenizer = load_base_with_adapter(base, adapter)
    merged = model.merge_and_unload()
    facts = card or {"base_model": str(base), "method": "lora", "adapter": str(adapter)}
    with atomic_dir(out) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(model_card({**facts, "merged": True}), encoding="utf-8")
    return Path(out)


def load_base_with_adapter(
    base: str | os.PathLike[str], adapter: str | os.PathLike[str]
) -> tuple[Any, Any]:
    """(PeftModel in eval mode on CPU in fp32, tokenizer) from local folders, safetensors only."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ladder.quiet import peft_quietly

    base_dir, adapter_dir = Path(base).expanduser(), Path(adapter).expanduser()
    read_config(base_dir)
    check_weights(base_dir, allow_pickle=False)
    if not (adapter_dir / ADAPTER_CONFIG).is_file():
        raise ModelLoadError(
            f"{adapter_dir} has no {ADAPTER_CONFIG}: not a LoRA adapter folder "
            "(ladder finetune writes one to OUT/adapter)"
        )
    model = AutoModelForCausalLM.from_pretrained(
        base_dir,
        dtype=torch.float32,
        use_safetensors=True,
        trust_remote_code=False,
        local_files_only=True,
    )
    try:
        with peft_quietly():
            peft_model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=False)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot apply adapter {adapter_dir} to {base_dir}: {exc}") from None
    has_tokenizer = any(adapter_dir.glob("tokenizer*"))
    tokenizer = AutoTokenizer.from_pretrained(
        adapter_dir if has_tokenizer else base_dir, local_files_only=True, trust_remote_code=False
    )
    peft_model.eval()
    return peft_model, tokenizer


def load_adapter_model(base: str | os.PathLike[str], adapter: str | os.PathLike[str]) -> Any:
    """A :class:`~ladder.models.hf.HFModel` serving ``base`` with ``adapter`` on top, unmerged."""
    from ladder.models.hf import HFModel

    model, tokenizer = load_base_with_adapter(base, adapter)
    return HFModel(model, tokenizer, name=f"{Path(base).name}+{Path(adapter).name}")


def adapter_base(adapter: str | os.PathLike[str]) -> str:
    """The base model path recorded in an adapter's config (PEFT's ``base_model_name_or_path``).

    Raises:
        ConfigError: the folder has no readable adapter config or it names no base.
    """
    file = Path(adapter) / ADAPTER_CONFIG
    try:
        base = json.loads(file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read the adapter config ({exc})") from None
    if not base:
        raise ConfigError(f"{file}: names no base model; pass --base")
    return str(base)


def model_card(facts: dict[str, Any]) -> str:
    """A Hugging Face model card (README.md): YAML metadata, then what was done and measured.

    ``facts`` keys used: base_model, method, settings, train, data (file, sha256, format,
    records), results (validation losses ...), adapter / merged flags.
    """
    method = facts.get("method", "unknown")
    library = "peft" if facts.get("adapter") and not facts.get("merged") else "transformers"
    meta = {
        "base_model": str(facts.get("base_model", "")),
        "library_name": library,
        "tags": ["ladder", f"ladder-{method}", "fine-tuned"],
    }
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).strip(),
        "---",
        "",
        f"# Fine-tuned with ladder ({method})",
        "",
        f"- **Base model**: `{facts.get('base_model', '')}`",
        f"- **Method**: {_method_line(method, facts)}",
    ]
    data = facts.get("data") or {}
    if data:
        lines += [
            f"- **Data**: `{data.get('file')}` ({data.get('format')}, {data.get('records')} "
            f"records; {data.get('train_items')} train / {data.get('validation_items')} "
            "validation items)",
            f"- **Data SHA-256**: `{data.get('sha256')}`",
        ]
    results = facts.get("results") or {}
    if results:
        lines += ["", "## Evaluation", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in results.items() if v is not None]
    hyper = {**(facts.get("settings") or {}), "train": facts.get("train")}
    lines += [
        "",
        "## Hyper-parameters",
        "",
        "```yaml",
        yaml.safe_dump(hyper, sort_keys=False).strip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def _method_line(method: str, facts: dict[str, Any]) -> str:
    # A card may name a method this install does not register (written elsewhere): as is.
    line = get_method(method).description if method in method_names() else method
    if facts.get("merged"):
        line += "; adapters merged into the base weights"
    return line


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
