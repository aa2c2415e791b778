"""Model shapes: the one table of named shapes, config.json reading, parameter counts.

A :class:`ModelShape` is what a model's size is made of. :data:`SHAPES` holds every named
one: real architectures for ``ladder fit`` (``124m``, ``7b``, ``70b`` ...) and the
``ARCH-SIZE`` rows ``ladder pretrain`` builds from scratch (``llama-tiny``, ``t5-small``
...), which the built-in models (:mod:`ladder.models.builtin`) are trained from.

Pure Python (no torch): shapes come from :data:`SHAPES` or a checkpoint's ``config.json``;
the exact parameter count, when a checkpoint has them, from its safetensors headers.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from ladder.errors import ConfigError

__all__ = [
    "ARCHS",
    "FAMILY",
    "SHAPES",
    "SIZES",
    "Arch",
    "Family",
    "ModelShape",
    "block_linears",
    "count_params",
    "lora_param_count",
    "model_linears",
    "read_checkpoint",
]

Arch = Literal["llama", "gpt2", "bert", "t5"]
Family = Literal["decoder", "encoder", "encoder-decoder"]
ARCHS: tuple[Arch, ...] = ("llama", "gpt2", "bert", "t5")
SIZES = ("tiny", "small")  # the sizes ``ladder pretrain`` builds each architecture in
FAMILY: dict[str, Family] = {
    "llama": "decoder",
    "gpt2": "decoder",
    "bert": "encoder",
    "t5": "encoder-decoder",
}


@dataclass(frozen=True)
class ModelShape:
    """The shapes that decide memory and parameters. ``arch`` is ``llama`` (gated MLP,
    RMSNorm, no biases: Llama, Mistral, Qwen...), ``gpt2`` (GELU MLP, LayerNorm, biases,
    learned positions), ``bert`` (encoder-only: separate q/k/v with biases, LayerNorm,
    learned positions and token types, a masked-LM head) or ``t5`` (encoder-decoder: no
    biases, RMS-style norms, relative position buckets; ``layers`` counts the encoder,
    ``decoder_layers`` the decoder, whose blocks add cross-attention).

    A row ``ladder pretrain`` builds also has a ``size`` (``tiny``, ``small``) and a
    ``context``, the tokens of one training window; ``vocab`` is then the default
    vocabulary (the built-in corpus tokenizer's), and a run uses its tokenizer's."""

    name: str
    arch: Arch
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    tied: bool
    max_positions: int | None  # None: no fixed limit (t5's relative positions)
    exact_params: int | None = None  # from safetensors headers, when the checkpoint has them
    decoder_layers: int = 0  # t5 only
    type_vocab: int = 0  # bert only: token type (segment) embeddings
    rel_buckets: int = 0  # t5 only: relative attention buckets (first block of each stack)
    gated_ffn: bool = False  # t5 only: gated-gelu (T5 v1.1) instead of a plain ReLU MLP
    size: str = ""  # pretraining rows: the size preset (tiny, small); "" otherwise
    context: int = 0  # pretraining rows: tokens per training window; 0 otherwise

    @property
    def all_layers(self) -> int:
        """Transformer blocks in the whole model (encoder and decoder)."""
        return self.layers + self.decoder_layers

    @property
    def family(self) -> Family:
        """decoder, encoder or encoder-decoder."""
        return FAMILY[self.arch]

    def at_vocab(self, vocab: int | None) -> ModelShape:
        """This shape with a vocabulary of ``vocab`` tokens (None: unchanged)."""
        return self if vocab is None else replace(self, vocab=vocab)

    def parameters(self, vocab: int | None = None) -> int:
        """Parameter count at ``vocab`` (default: :attr:`vocab`); tied embeddings once."""
        return count_params(self.at_vocab(vocab))[0]


def _llama(
    name: str, dims: tuple[int, int, int, int, int, int], tied: bool, pos: int
) -> ModelShape:
    h, n, a, kv, f, v = dims
    return ModelShape(f"{name} shapes", "llama", h, n, a, kv, h // a, f, v, tied, pos)


def _pretrain(arch: Arch, size: str, dims: tuple[int, ...], decoder_layers: int = 0) -> ModelShape:
    hidden, layers, heads, kv_heads, ffn, context, vocab = dims
    extra: dict[str, Any] = {}
    if arch == "bert":
        extra = {"type_vocab": 2}
    elif arch == "t5":
        extra = {"decoder_layers": decoder_layers, "rel_buckets": 32}
    return ModelShape(
        f"{arch}-{size}", arch, hidden, layers, heads, kv_heads, hidden // heads, ffn, vocab,
        tied=True,  # untied, the output layer alone would add ~40% to a tiny model
        max_positions=None if arch == "t5" else context,
        size=size, context=context, **extra,
    )  # fmt: skip


# Real architectures: Llama-2 for 7b/13b/70b (Touvron et al. 2023); Llama-3.2 for 1b/3b and
# Llama-3.1 for 8b (Meta's model cards); GPT-2 small for 124m (Radford et al. 2019).
# dims: hidden, layers, heads, kv heads, ffn, vocab; then tied embeddings, max positions.
# Pretraining rows (ARCH-SIZE): hidden, layers, heads, kv heads, ffn, context, default
# vocabulary. llama-tiny and llama-small are the built-in models builtin:tiny and :small.
SHAPES: dict[str, ModelShape] = {
    "124m": ModelShape("GPT-2 124M shapes", "gpt2", 768, 12, 12, 12, 64, 3072, 50257, True, 1024),
    "1b": _llama("Llama-3.2-1B", (2048, 16, 32, 8, 8192, 128256), True, 131072),
    "3b": _llama("Llama-3.2-3B", (3072, 28, 24, 8, 8192, 128256), True, 131072),
    "7b": _llama("Llama-2-7B", (4096, 32, 32, 32, 11008, 32000), False, 4096),
    "8b": _llama("Llama-3.1-8B", (4096, 32, 32, 8, 14336, 128256), False, 131072),
    "13b": _llama("Llama-2-13B", (5120, 40, 40, 40, 13824, 32000), False, 4096),
    "70b": _llama("Llama-2-70B", (8192, 80, 64, 8, 28672, 32000), False, 4096),
    "llama-tiny": _pretrain("llama", "tiny", (128, 4, 4, 4, 384, 128, 4096)),
    "llama-small": _pretrain("llama", "small", (256, 6, 8, 4, 768, 256, 8192)),
    "gpt2-tiny": _pretrain("gpt2", "tiny", (128, 4, 4, 4, 512, 128, 4096)),
    "gpt2-small": _pretrain("gpt2", "small", (256, 6, 8, 8, 1024, 256, 8192)),
    "bert-tiny": _pretrain("bert", "tiny", (128, 4, 4, 4, 512, 128, 4096)),
    "bert-small": _pretrain("bert", "small", (256, 6, 8, 8, 1024, 256, 8192)),
    "t5-tiny": _pretrain("t5", "tiny", (128, 2, 4, 4, 512, 128, 4096), decoder_layers=2),
    "t5-small": _pretrain("t5", "small", (256, 3, 8, 8, 1024, 256, 8192), decoder_layers=3),
}  # fmt: skip


def block_linears(shape: ModelShape) -> list[tuple[str, int, int]]:
    """The linear layers of one (encoder) transformer block as (group, d_in, d_out)."""
    h, f = shape.hidden, shape.ffn
    if shape.arch == "gpt2":  # c_attn (fused q,k,v), attn.c_proj, c_fc, mlp.c_proj
        return [("attention", h, 3 * h), ("attention", h, h), ("mlp", h, f), ("mlp", f, h)]
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    attention = [("attention", h, q), ("attention", h, kv), ("attention", h, kv)]
    attention.append(("attention", q, h))
    if shape.arch == "bert":  # query, key, value, attention.output; intermediate, output
        return [*attention, ("mlp", h, f), ("mlp", f, h)]
    if shape.arch == "t5":  # q, k, v, o; wi (wi_0 and wi_1 when gated), wo
        return [*attention, *[("mlp", h, f)] * (2 if shape.gated_ffn else 1), ("mlp", f, h)]
    return [*attention, ("mlp", h, f), ("mlp", h, f), ("mlp", f, h)]


def model_linears(shape: ModelShape) -> list[tuple[str, int, int]]:
    """Every linear layer of the transformer blocks, all layers, as (group, d_in, d_out).

    A T5 decoder block is an encoder block plus cross-attention (q, k, v, o).
    """
    linears = block_linears(shape) * shape.layers
    if shape.decoder_layers:
        q = shape.heads * shape.head_dim
        cross = [("attention", shape.hidden, q)] * 3 + [("attention", q, shape.hidden)]
        linears += (block_linears(shape) + cross) * shape.decoder_layers
    return linears


def count_params(shape: ModelShape) -> tuple[int, int]:
    """(total, linear) parameters; ``linear`` = the blocks' linear weights, what int8/nf4
    quantise. The rest (embeddings, lm_head, norms, biases) stays 16-bit under bitsandbytes.

    Llama-style: V*h embeddings + L*(attention + 3*h*ffn + 2h norms) + h + V*h lm_head
    unless tied. GPT-2: also learned positions and biases (124,439,808 for GPT-2 small).
    BERT: word, position and token-type embeddings with a LayerNorm; per layer the biases
    and two LayerNorms; the MLM head's transform (h*h + h), LayerNorm and output bias V.
    T5: the shared embedding; one norm weight per sub-layer (2 per encoder block, 3 per
    decoder block) and per stack; relative-position buckets x heads in each stack's first block.
    """
    h, f, n = shape.hidden, shape.ffn, shape.layers
    linear = sum(d_in * d_out for _, d_in, d_out in model_linears(shape))
    embeddings = shape.vocab * h * (1 if shape.tied else 2)
    if shape.arch == "gpt2":  # 2 LayerNorms (w+b), biases 3h + h + f + h; wpe; ln_f
        other = embeddings + (shape.max_positions or 0) * h + n * (4 * h + 5 * h + f) + 2 * h
    elif shape.arch == "bert":
        positions = ((shape.max_positions or 0) + shape.type_vocab) * h + 2 * h
        q = shape.heads * shape.head_dim
        biases = q + 2 * shape.kv_heads * shape.head_dim + h + f + h
        head = h * h + h + 2 * h + shape.vocab  # transform dense, LayerNorm, decoder bias
        other = embeddings + positions + n * (biases + 4 * h) + head
    elif shape.arch == "t5":
        norms = (2 * n + 3 * shape.decoder_layers + 2) * h
        buckets = shape.rel_buckets * shape.heads * (2 if shape.decoder_layers else 1)
        other = embeddings + norms + buckets
    else:  # 2 RMSNorms per block, one final
        other = embeddings + n * 2 * h + h
    total = shape.exact_params or linear + other
    return total, min(linear, total)


def lora_param_count(shape: ModelShape, rank: int, targets: str) -> int:
    """LoRA parameters: r*(d_in + d_out) per adapted layer (A: d_in x r, B: r x d_out)."""
    groups = {"attention"} if targets == "attention" else {"attention", "mlp"}
    return sum(rank * (i + o) for g, i, o in model_linears(shape) if g in groups)


def read_checkpoint(path: Path) -> ModelShape:
    """Shapes from ``path/config.json`` (or a config file itself): Llama-style keys
    (hidden_size, num_hidden_layers...), GPT-2-style (n_embd, n_layer...), BertConfig
    (``model_type: bert``), T5Config (d_model, d_kv, num_layers...), a multimodal model's
    ``text_config``; the exact count from safetensors headers when present."""
    if not path.exists():
        raise ConfigError(f"{path}: no such checkpoint folder; check the path or pass a size")
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"{path}: no config.json there; point at a Hugging Face checkpoint")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{file}: not valid JSON ({exc}); fix or re-save it") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a JSON object of model settings")
    text = raw.get("text_config")
    if "hidden_size" not in raw and "n_embd" not in raw and isinstance(text, dict):
        raw = {"tie_word_embeddings": raw.get("tie_word_embeddings"), **text}
    kind = raw.get("model_type")
    if kind == "t5" or ("d_model" in raw and "hidden_size" not in raw):
        shape = _t5_shape(raw, file)
    elif kind == "bert":
        shape = _bert_shape(raw, file)
    else:
        shape = _gpt2_shape(raw, file) if "n_embd" in raw else _llama_shape(raw, file)
    return replace(shape, exact_params=_safetensors_params(path) if path.is_dir() else None)


def _int(raw: dict[str, Any], key: str, file: Path, default: int | None = None) -> int:
    value = raw.get(key)
    if value is None and default is not None:
        return default
    if value is None:
        raise ConfigError(f"{file}: missing field {key!r}, needed to size the model; add it")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{file}: field {key!r} must be a positive integer, got {value!r}")
    return value


def _llama_shape(raw: dict[str, Any], file: Path) -> ModelShape:
    if "hidden_size" not in raw:
        raise ConfigError(
            f"{file}: missing field 'hidden_size' (or GPT-2's 'n_embd'); fit reads Llama- "
            "and GPT-2-style configs; for others pass a size such as 7b"
        )
    h, a = _int(raw, "hidden_size", file), _int(raw, "num_attention_heads", file)
    n, f = _int(raw, "num_hidden_layers", file), _int(raw, "intermediate_size", file)
    kv, hd = _int(raw, "num_key_value_heads", file, a), _int(raw, "head_dim", file, h // a or 1)
    tied = bool(raw.get("tie_word_embeddings", False))  # LlamaConfig's default
    pos = _int(raw, "max_position_embeddings", file, 0) or None
    name = f"{file.parent.name} ({raw.get('model_type', 'llama-style')})"
    return ModelShape(name, "llama", h, n, a, kv, hd, f, _int(raw, "vocab_size", file), tied, pos)


def _gpt2_shape(raw: dict[str, Any], file: Path) -> ModelShape:
    h, a, n = _int(raw, "n_embd", file), _int(raw, "n_head", file), _int(raw, "n_layer", file)
    f, v, pos = (
        _int(raw, "n_inner", file, 4 * h),
        _int(raw, "vocab_size", file),
        _int(raw, "n_positions", file),
    )
    tied = raw.get("tie_word_embeddings") is not False  # GPT2Config ties by default
    name = f"{file.parent.name} ({raw.get('model_type', 'gpt2-style')})"
    return ModelShape(name, "gpt2", h, n, a, a, h // a or 1, f, v, tied, pos)


def _bert_shape(raw: dict[str, Any], file: Path) -> ModelShape:
    h, a = _int(raw, "hidden_size", file), _int(raw, "num_attention_heads", file)
    n, f = _int(raw, "num_hidden_layers", file), _int(raw, "intermediate_size", file)
    pos, v = _int(raw, "max_position_embeddings", file, 512), _int(raw, "vocab_size", file)
    types = raw.get("type_vocab_size", 2)
    types = types if isinstance(types, int) and not isinstance(types, bool) else 2
    tied = raw.get("tie_word_embeddings") is not False  # BertConfig ties by default
    name = f"{file.parent.name} (bert)"
    return ModelShape(name, "bert", h, n, a, a, h // a or 1, f, v, tied, pos, type_vocab=types)


def _t5_shape(raw: dict[str, Any], file: Path) -> ModelShape:
    h, a = _int(raw, "d_model", file), _int(raw, "num_heads", file)
    n, v = _int(raw, "num_layers", file), _int(raw, "vocab_size", file)
    hd, f = _int(raw, "d_kv", file), _int(raw, "d_ff", file)
    dec = _int(raw, "num_decoder_layers", file, n)  # T5Config: same as the encoder
    buckets = _int(raw, "relative_attention_num_buckets", file, 32)
    gated = str(raw.get("feed_forward_proj", "relu")).startswith("gated-")
    tied = raw.get("tie_word_embeddings") is not False  # T5Config ties by default
    name = f"{file.parent.name} (t5)"
    return ModelShape(
        name, "t5", h, n, a, a, hd, f, v, tied, None,
        decoder_layers=dec, rel_buckets=buckets, gated_ffn=gated,
    )  # fmt: skip


def _safetensors_params(folder: Path) -> int | None:
    """Exact parameter count from safetensors headers (8-byte length, then JSON); None when
    there are none or one cannot be read, and the config's shapes count instead."""
    index = folder / "model.safetensors.index.json"
    try:
        if index.is_file():
            files = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        elif (folder / "model.safetensors").is_file():
            files = {"model.safetensors"}
        else:
            return None
        total = 0
        for name in sorted(files):
            with open(folder / name, "rb") as fh:
                (length,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(min(length, 100_000_000)))
            total += sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
        return total or None
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None
