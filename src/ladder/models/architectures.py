"""Architectures to pretrain from scratch, as presets of transformers configs.

Four families, each an ordinary transformers model class, so the result is a normal HF
checkpoint:

- ``llama`` (the default): decoder-only, RMSNorm, SwiGLU MLP, rotary positions, grouped
  KV heads (Touvron et al. 2023); causal-LM objective. ``LlamaForCausalLM``.
- ``gpt2``: decoder-only, LayerNorm, GELU MLP, learned positions (Radford et al. 2019);
  causal-LM objective. ``GPT2LMHeadModel``.
- ``bert``: encoder-only (Devlin et al. 2019); masked-LM objective. ``BertForMaskedLM``.
- ``t5``: encoder-decoder with relative position buckets (Raffel et al. 2020); span
  corruption objective. ``T5ForConditionalGeneration``.

Sizes ``tiny`` (~1.4M parameters at a 4,096-token vocabulary) and ``small`` (~7M at 8,192),
like the built-in presets of :mod:`ladder.models.builtin`. The vocabulary comes from the
tokenizer, so parameter counts are shown for a stated vocabulary. The dimensions are plain
Python (``ladder fit`` and ``ladder pretrain --list`` use them without torch); only
:func:`build_model` imports transformers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ladder.errors import ConfigError
from ladder.home import home_subdir
from ladder.models.shapes import PRESETS, ModelShape, count_params, read_checkpoint

if TYPE_CHECKING:
    import torch

__all__ = [
    "ARCHITECTURES",
    "ARCHS",
    "FAMILY",
    "OBJECTIVE",
    "SIZES",
    "Arch",
    "Architecture",
    "Family",
    "SpecialIds",
    "architecture_rows",
    "build_model",
    "get_architecture",
    "hf_config",
    "preset_shape",
    "resolve_model",
]

Arch = Literal["llama", "gpt2", "bert", "t5"]
Family = Literal["decoder", "encoder", "encoder-decoder"]
ARCHS: tuple[Arch, ...] = ("llama", "gpt2", "bert", "t5")
SIZES = ("tiny", "small")
FAMILY: dict[str, Family] = {
    "llama": "decoder",
    "gpt2": "decoder",
    "bert": "encoder",
    "t5": "encoder-decoder",
}
OBJECTIVE = {
    "decoder": "causal LM",
    "encoder": "masked LM",
    "encoder-decoder": "span corruption",
}


@dataclass(frozen=True)
class Architecture:
    """The dimensions of a model to pretrain. ``vocab`` is the default vocabulary size (the
    built-in corpus tokenizer's); a run uses its tokenizer's."""

    arch: Arch
    size: str
    hidden: int
    layers: int  # decoder blocks; for t5 the encoder blocks
    heads: int
    kv_heads: int
    ffn: int
    context: int  # tokens per training window and the model's positions
    vocab: int
    decoder_layers: int = 0  # t5 only

    @property
    def family(self) -> Family:
        """decoder, encoder or encoder-decoder."""
        return FAMILY[self.arch]

    @property
    def name(self) -> str:
        """``ARCH-SIZE``, e.g. ``llama-tiny``."""
        return f"{self.arch}-{self.size}"

    def shape(self, vocab: int | None = None) -> ModelShape:
        """The :class:`ModelShape` ``ladder fit`` does its arithmetic on."""
        v = vocab or self.vocab
        extra: dict[str, Any] = {}
        if self.arch == "bert":
            extra = {"type_vocab": 2}
        elif self.arch == "t5":
            extra = {"decoder_layers": self.decoder_layers, "rel_buckets": 32}
        return ModelShape(
            name=f"{self.name} (vocab {v:,})",
            arch=self.arch,
            hidden=self.hidden,
            layers=self.layers,
            heads=self.heads,
            kv_heads=self.kv_heads,
            head_dim=self.hidden // self.heads,
            ffn=self.ffn,
            vocab=v,
            tied=True,
            max_positions=None if self.arch == "t5" else self.context,
            **extra,
        )

    def parameters(self, vocab: int | None = None) -> int:
        """Parameter count at ``vocab`` (default: :attr:`vocab`); tied embeddings once."""
        return count_params(self.shape(vocab))[0]


def _arch(arch: Arch, size: str, dims: tuple[int, ...], decoder_layers: int = 0) -> Architecture:
    hidden, layers, heads, kv_heads, ffn, context, vocab = dims
    return Architecture(arch, size, hidden, layers, heads, kv_heads, ffn, context, vocab,
                        decoder_layers)  # fmt: skip


# dims: hidden, layers, heads, kv heads, ffn, context, default vocabulary.
# llama-tiny/small are the built-in presets' shapes (models/builtin.py).
ARCHITECTURES: dict[str, Architecture] = {
    "llama-tiny": _arch("llama", "tiny", (128, 4, 4, 4, 384, 128, 4096)),
    "llama-small": _arch("llama", "small", (256, 6, 8, 4, 768, 256, 8192)),
    "gpt2-tiny": _arch("gpt2", "tiny", (128, 4, 4, 4, 512, 128, 4096)),
    "gpt2-small": _arch("gpt2", "small", (256, 6, 8, 8, 1024, 256, 8192)),
    "bert-tiny": _arch("bert", "tiny", (128, 4, 4, 4, 512, 128, 4096)),
    "bert-small": _arch("bert", "small", (256, 6, 8, 8, 1024, 256, 8192)),
    "t5-tiny": _arch("t5", "tiny", (128, 2, 4, 4, 512, 128, 4096), decoder_layers=2),
    "t5-small": _arch("t5", "small", (256, 3, 8, 8, 1024, 256, 8192), decoder_layers=3),
}


def get_architecture(arch: str, size: str, **dims: int | None) -> Architecture:
    """The ``arch``/``size`` preset with any of ``dims`` (hidden, layers, heads, kv_heads,
    ffn, context, decoder_layers) replaced.

    Raises:
        ConfigError: unknown arch or size, or dimensions that do not divide (hidden by
            heads, heads by kv_heads) or that the family does not have.
    """
    key = f"{arch}-{size}"
    if key not in ARCHITECTURES:
        raise ConfigError(
            f"model: no architecture {arch!r} of size {size!r}: arch is one of "
            f"{', '.join(ARCHS)} and size one of {', '.join(SIZES)}"
        )
    base = ARCHITECTURES[key]
    given: dict[str, Any] = {k: v for k, v in dims.items() if v is not None}
    if "heads" in given and "kv_heads" not in given:
        given["kv_heads"] = (
            given["heads"] if arch != "llama" else min(base.kv_heads, given["heads"])
        )
    spec = replace(base, **given)
    _check(spec, given)
    return spec


def _check(spec: Architecture, given: dict[str, int]) -> None:
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


def preset_shape(name: str) -> ModelShape | None:
    """The shape of architecture ``ARCH-SIZE`` (for ``ladder fit llama-tiny``); None if unknown."""
    arch = ARCHITECTURES.get(name.strip().lower())
    return arch.shape() if arch is not None else None


def architecture_rows(vocab: int | None = None) -> list[dict[str, Any]]:
    """One row per preset for ``ladder pretrain --list``: arch, size, family, objective,
    layers, hidden, heads, ffn, context, vocab and parameters."""
    rows = []
    for spec in ARCHITECTURES.values():
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


def hf_config(spec: Architecture, vocab: int, ids: SpecialIds) -> Any:
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


def build_model(spec: Architecture, vocab: int, ids: SpecialIds, seed: int) -> torch.nn.Module:
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
        folder = home_subdir("models") / f"builtin-{rest}"
        if not folder.is_dir():
            raise ConfigError(f"{spec}: no {folder}; `ladder demo` builds builtin:tiny")
        return read_checkpoint(folder)
    key, sizes = spec.strip().lower(), ", ".join(PRESETS)
    if key in PRESETS:
        return PRESETS[key]
    if (shape := preset_shape(key)) is not None:  # ARCH-SIZE: llama-tiny, t5-small
        return shape
    if Path(spec).expanduser().exists():
        return read_checkpoint(Path(spec).expanduser())
    if re.fullmatch(r"\d+(\.\d+)?[kmbt]", key):
        raise ConfigError(f"no preset for size {spec!r}: use one of {sizes}, or a checkpoint")
    raise ConfigError(
        f"{spec!r} is neither a size ({sizes}) nor an existing checkpoint folder; "
        "pass one of those, a folder holding config.json, hf:PATH or builtin:NAME"
    )
