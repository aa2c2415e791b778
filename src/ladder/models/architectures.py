"""Architectures to pretrain from scratch: the ``ARCH-SIZE`` rows of
:data:`ladder.models.shapes.SHAPES` as transformers configs and models.

Four families, each an ordinary transformers model class, so the result is a normal HF
checkpoint:

- ``llama`` (the default): decoder-only, RMSNorm, SwiGLU MLP, rotary positions, grouped
  KV heads (Touvron et al. 2023); causal-LM objective. ``LlamaForCausalLM``.
- ``gpt2``: decoder-only, LayerNorm, GELU MLP, learned positions (Radford et al. 2019);
  causal-LM objective. ``GPT2LMHeadModel``.
- ``bert``: encoder-only (Devlin et al. 2019); masked-LM objective. ``BertForMaskedLM``.
- ``t5``: encoder-decoder with relative position buckets (Raffel et al. 2020); span
  corruption objective. ``T5ForConditionalGeneration``.

Sizes ``tiny`` (~1.4M parameters at a 4,096-token vocabulary) and ``small`` (~7M at 8,192);
``llama-tiny`` and ``llama-small`` are the built-in models. The vocabulary comes from the
tokenizer, so parameter counts are shown for a stated vocabulary. Everything here but
:func:`hf_config` and :func:`build_model` is plain Python (``ladder fit`` and ``ladder
pretrain --list`` use it without torch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ladder.errors import ConfigError
from ladder.models.builtin import builtin_path
from ladder.models.shapes import ARCHS, SHAPES, SIZES, ModelShape, read_checkpoint

if TYPE_CHECKING:
    import torch

__all__ = [
    "OBJECTIVE",
    "SpecialIds",
    "architecture_rows",
    "build_model",
    "get_architecture",
    "hf_config",
    "pretrain_shapes",
    "resolve_model",
]

OBJECTIVE = {
    "decoder": "causal LM",
    "encoder": "masked LM",
    "encoder-decoder": "span corruption",
}


def pretrain_shapes() -> dict[str, ModelShape]:
    """The rows of :data:`ladder.models.shapes.SHAPES` that ``ladder pretrain`` builds,
    by ``ARCH-SIZE`` name."""
    return {name: shape for name, shape in SHAPES.items() if shape.size}


def get_architecture(arch: str, size: str, **dims: int | None) -> ModelShape:
    """The ``arch``/``size`` row with any of ``dims`` (hidden, layers, heads, kv_heads,
    ffn, context, decoder_layers) replaced.

    Raises:
        ConfigError: unknown arch or size, or dimensions that do not divide (hidden by
            heads, heads by kv_heads) or that the family does not have.
    """
    base = pretrain_shapes().get(f"{arch}-{size}")
    if base is None:
        raise ConfigError(
            f"model: no architecture {arch!r} of size {size!r}: arch is one of "
            f"{', '.join(ARCHS)} and size one of {', '.join(SIZES)}"
        )
    given: dict[str, Any] = {k: v for k, v in dims.items() if v is not None}
    if "heads" in given and "kv_heads" not in given:
        given["kv_heads"] = (
            given["heads"] if arch != "llama" else min(base.kv_heads, given["heads"])
        )
    spec = replace(base, **given)
    _check(spec, given)
    # What follows from the dimensions: the heads' width, and the positions of a model
    # with learned or rotary ones (t5's relative buckets have no limit).
    positions = None if spec.arch == "t5" else spec.context
    return replace(spec, head_dim=spec.hidden // spec.heads, max_positions=positions)


def _check(spec: ModelShape, given: dict[str, int]) -> None:
    if spec.hidden % spec.heads:
        raise ConfigError(
            f"model.hidden ({spec.hidden}) must be a multiple of model.heads ({spec.heads})"
        )
    if spec.arch == "llama" and spec.heads % spec.kv_heads:
        raise ConfigError(
            f"model.heads ({spec.heads}) must be a multiple of model.kv_heads ({spec.kv_heads})"
        )
    if spec.arch != "llama" and spec.kv_heads != spec.heads:
        raise ConfigError(f"model.kv_heads: {spec.arch} has no grouped KV heads; leave it out")
    if spec.arch != "t5" and given.get("decoder_layers"):
        raise ConfigError(f"model.decoder_layers: only t5 has a decoder stack, not {spec.arch}")


def architecture_rows(vocab: int | None = None) -> list[dict[str, Any]]:
    """One row per pretraining shape for ``ladder pretrain --list``: arch, size, family,
    objective, layers, hidden, heads, ffn, context, vocab and parameters."""
    rows = []
    for spec in pretrain_shapes().values():
        v = vocab or spec.vocab
        layers = f"{spec.layers}+{spec.decoder_layers}" if spec.decoder_layers else str(spec.layers)
        heads = (
            f"{spec.heads}/{spec.kv_heads}kv" if spec.kv_heads != spec.heads else str(spec.heads)
        )
        rows.append(
            {
                "arch": spec.arch,
                "size": spec.size,
                "family": spec.family,
                "objective": OBJECTIVE[spec.family],
                "layers": layers,
                "hidden": spec.hidden,
                "heads": heads,
                "ffn": spec.ffn,
                "context": spec.context,
                "vocab": v,
                "parameters": spec.parameters(v),
            }
        )
    return rows


@dataclass(frozen=True)
class SpecialIds:
    """The token ids a model config records (None where the tokenizer has none)."""

    bos: int | None
    eos: int | None
    pad: int | None


def hf_config(spec: ModelShape, vocab: int, ids: SpecialIds) -> Any:
    """The transformers config of ``spec`` at vocabulary ``vocab`` (tied embeddings)."""
    import transformers as tf

    common: dict[str, Any] = {"vocab_size": vocab, "pad_token_id": ids.pad, "eos_token_id": ids.eos}
    if spec.arch == "llama":
        return tf.LlamaConfig(
            hidden_size=spec.hidden,
            intermediate_size=spec.ffn,
            num_hidden_layers=spec.layers,
            num_attention_heads=spec.heads,
            num_key_value_heads=spec.kv_heads,
            max_position_embeddings=spec.context,
            tie_word_embeddings=True,
            bos_token_id=ids.bos,
            **common,
        )
    if spec.arch == "gpt2":
        return tf.GPT2Config(
            n_embd=spec.hidden,
            n_layer=spec.layers,
            n_head=spec.heads,
            n_inner=spec.ffn,
            n_positions=spec.context,
            tie_word_embeddings=True,
            bos_token_id=ids.bos,
            **common,
        )
    if spec.arch == "bert":
        return tf.BertConfig(
            hidden_size=spec.hidden,
            num_hidden_layers=spec.layers,
            num_attention_heads=spec.heads,
            intermediate_size=spec.ffn,
            max_position_embeddings=spec.context,
            tie_word_embeddings=True,
            **common,
        )
    return tf.T5Config(
        d_model=spec.hidden,
        d_kv=spec.hidden // spec.heads,
        d_ff=spec.ffn,
        num_layers=spec.layers,
        num_decoder_layers=spec.decoder_layers,
        num_heads=spec.heads,
        **{"tie_word_embeddings": True, "decoder_start_token_id": ids.pad, **common},
    )


def build_model(spec: ModelShape, vocab: int, ids: SpecialIds, seed: int) -> torch.nn.Module:
    """A freshly initialised model of ``spec`` (same weights for the same seed), with a
    generation config naming the special tokens."""
    import torch
    import transformers as tf

    classes = {
        "llama": tf.LlamaForCausalLM,
        "gpt2": tf.GPT2LMHeadModel,
        "bert": tf.BertForMaskedLM,
        "t5": tf.T5ForConditionalGeneration,
    }
    torch.manual_seed(seed)
    model = classes[spec.arch](hf_config(spec, vocab, ids))
    if spec.family != "encoder":
        model.generation_config = tf.GenerationConfig(
            bos_token_id=ids.bos,
            eos_token_id=ids.eos,
            pad_token_id=ids.pad,
            **({"decoder_start_token_id": ids.pad} if spec.arch == "t5" else {}),
        )
    return model


def resolve_model(spec: str) -> ModelShape:
    """A size preset, a pretraining architecture (``llama-tiny``, ``bert-small`` ...),
    ``hf:PATH``, ``builtin:NAME`` or a checkpoint folder, as shapes. A size wins over a
    folder of the same name (write ``./7b`` or ``hf:7b`` for the folder).

    Raises:
        ConfigError: an unknown size, a missing folder, or an unusable config.json.
    """
    prefix, sep, rest = spec.partition(":")
    if sep and prefix == "hf":
        return read_checkpoint(Path(rest).expanduser())
    if sep and prefix == "builtin":
        folder = builtin_path(rest)
        if not folder.is_dir():
            raise ConfigError(f"{spec}: no {folder}; `ladder demo` builds builtin:tiny")
        return read_checkpoint(folder)
    key = spec.strip().lower()
    sizes = ", ".join(name for name, shape in SHAPES.items() if not shape.size)
    if (shape := SHAPES.get(key)) is not None:
        # A pretraining row's vocabulary is only its default: say which one was counted.
        return replace(shape, name=f"{shape.name} (vocab {shape.vocab:,})") if shape.size else shape
    if Path(spec).expanduser().exists():
        return read_checkpoint(Path(spec).expanduser())
    if re.fullmatch(r"\d+(\.\d+)?[kmbt]", key):
        raise ConfigError(f"no preset for size {spec!r}: use one of {sizes}, or a checkpoint")
    raise ConfigError(
        f"{spec!r} is neither a size ({sizes}) nor an existing checkpoint folder; "
        "pass one of those, a folder holding config.json, hf:PATH or builtin:NAME"
    )
