"""``ladder export --format gguf``: a Llama-family checkpoint as one GGUF file for llama.cpp
and Ollama, plus an Ollama ``Modelfile``.

The ``gguf`` package writes the container; what goes in it is decided here:

- tensor names: Hugging Face ``model.layers.N.self_attn.q_proj.weight`` becomes llama.cpp's
  ``blk.N.attn_q.weight`` and so on (:data:`TENSOR_NAMES`);
- the query and key projections are permuted: Hugging Face's Llama rotates the two halves
  of each head (``rotate_half``), llama.cpp rotates adjacent pairs, so each head's rows are
  re-ordered from ``[x0..x(d/2-1), y0..y(d/2-1)]`` to ``[x0, y0, x1, y1, ...]``
  (RoPE: Su et al. 2021);
- the tokenizer: a byte-level BPE (GPT-2 style, as Llama 3 and ladder's built-in models
  use) as ``tokenizer.ggml.*`` tokens, token types, merges and special ids, plus the chat
  template;
- weights: ``f32`` (lossless: llama.cpp then computes in f32 and decodes the same tokens
  as the Hugging Face model), ``f16`` (norms stay f32) or ``q8_0`` (blocks of 32 int8
  values with an f16 scale; matrices whose rows are not a multiple of 32 stay f16).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ladder.errors import ConfigError, UnsupportedError
from ladder.fsutil import atomic_dir

__all__ = ["QUANTS", "TENSOR_NAMES", "ExportResult", "export_gguf", "gguf_name", "permute_rope"]

QUANTS = ("f32", "f16", "q8_0")
ARCHITECTURES = ("llama",)

# Hugging Face Llama tensor names -> llama.cpp names ({n} is the layer).
TENSOR_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "model.layers.{n}.input_layernorm.weight": "blk.{n}.attn_norm.weight",
    "model.layers.{n}.self_attn.q_proj.weight": "blk.{n}.attn_q.weight",
    "model.layers.{n}.self_attn.k_proj.weight": "blk.{n}.attn_k.weight",
    "model.layers.{n}.self_attn.v_proj.weight": "blk.{n}.attn_v.weight",
    "model.layers.{n}.self_attn.o_proj.weight": "blk.{n}.attn_output.weight",
    "model.layers.{n}.post_attention_layernorm.weight": "blk.{n}.ffn_norm.weight",
    "model.layers.{n}.mlp.gate_proj.weight": "blk.{n}.ffn_gate.weight",
    "model.layers.{n}.mlp.up_proj.weight": "blk.{n}.ffn_up.weight",
    "model.layers.{n}.mlp.down_proj.weight": "blk.{n}.ffn_down.weight",
}
_LAYER = re.compile(r"^model\.layers\.(\d+)\.")


@dataclass(frozen=True)
class ExportResult:
    """What was written."""

    gguf: Path
    modelfile: Path
    tensors: int
    bytes: int


def gguf_name(hf_name: str) -> str | None:
    """llama.cpp's name for a Hugging Face Llama tensor, or None when it has none."""
    match = _LAYER.match(hf_name)
    key = _LAYER.sub("model.layers.{n}.", hf_name) if match else hf_name
    target = TENSOR_NAMES.get(key)
    if target is None:
        return None
    return target.format(n=match.group(1)) if match else target


def permute_rope(weight: np.ndarray, heads: int) -> np.ndarray:
    """Re-order each head's rows from halves (Hugging Face) to adjacent pairs (llama.cpp)."""
    rows = weight.shape[0]
    half = rows // heads // 2
    return weight.reshape(heads, 2, half, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def export_gguf(spec: str, out: str | Path, *, quant: str = "f16") -> ExportResult:
    """Write ``NAME-QUANT.gguf`` and a ``Modelfile`` into the folder ``out`` (atomically).

    Raises:
        ConfigError: an unknown quant, or a spec that is not a local checkpoint.
        UnsupportedError: not a Llama-family model, or a tokenizer that is not byte-level BPE.
    """
    if quant not in QUANTS:
        raise ConfigError(f"--quant {quant!r} is not one of {', '.join(QUANTS)}")
    from ladder.quantize import checkpoint_dir

    source = checkpoint_dir(spec)
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") not in ARCHITECTURES:
        raise UnsupportedError(
            f"{source}: model_type {config.get('model_type')!r} cannot be exported to GGUF by "
            f"ladder; supported: {', '.join(ARCHITECTURES)}"
        )
    name = source.resolve().name
    with atomic_dir(out) as tmp:
        target = tmp / f"{name}-{quant}.gguf"
        count = _write(source, config, target, name, quant)
        size = target.stat().st_size
        modelfile = tmp / "Modelfile"
        modelfile.write_text(_modelfile(target.name, source), encoding="utf-8")
    folder = Path(out)
    return ExportResult(folder / target.name, folder / "Modelfile", count, size)


def _write(source: Path, config: dict[str, Any], target: Path, name: str, quant: str) -> int:
    import gguf

    writer = gguf.GGUFWriter(str(target), arch="llama")
    _hyperparameters(writer, config, name, quant)
    _tokenizer(writer, source)
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    count = 0
    for hf_name, array in _weights(source):
        gguf_tensor = gguf_name(hf_name)
        if gguf_tensor is None:
            if "rotary_emb" in hf_name:
                continue  # recomputed by llama.cpp from rope.freq_base
            raise UnsupportedError(f"{source}: tensor {hf_name} has no llama.cpp counterpart")
        if gguf_tensor.endswith("attn_q.weight"):
            array = permute_rope(array, heads)
        elif gguf_tensor.endswith("attn_k.weight"):
            array = permute_rope(array, kv_heads)
        data, raw = _encode(array, quant)
        writer.add_tensor(gguf_tensor, data, raw_dtype=raw)
        count += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return count


def _hyperparameters(writer: Any, config: dict[str, Any], name: str, quant: str) -> None:
    import gguf

    heads = int(config["num_attention_heads"])
    hidden = int(config["hidden_size"])
    head_dim = int(config.get("head_dim") or hidden // heads)
    rope = config.get("rope_parameters") or {}
    theta = float(rope.get("rope_theta") or config.get("rope_theta") or 10000.0)
    writer.add_name(name)
    writer.add_context_length(int(config.get("max_position_embeddings", 2048)))
    writer.add_embedding_length(hidden)
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(heads)
    writer.add_head_count_kv(int(config.get("num_key_value_heads") or heads))
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(theta)
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(int(config["vocab_size"]))
    file_type = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[quant]
    writer.add_file_type(int(file_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _tokenizer(writer: Any, source: Path) -> None:
    import gguf

    path = source / "tokenizer.json"
    if not path.is_file():
        raise UnsupportedError(
            f"{source}: no tokenizer.json; GGUF export needs a fast BPE tokenizer"
        )
    spec = json.loads(path.read_text(encoding="utf-8"))
    model = spec.get("model", {})
    if model.get("type") != "BPE" or "ByteLevel" not in json.dumps(spec.get("pre_tokenizer")):
        raise UnsupportedError(
            f"{path}: only byte-level BPE tokenizers (GPT-2 / Llama 3 style) can be exported"
        )
    vocab: dict[str, int] = dict(model["vocab"])
    added = {t["content"]: t for t in spec.get("added_tokens", [])}
    for content, token in added.items():
        vocab.setdefault(content, int(token["id"]))
    size = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [int(gguf.TokenType.UNUSED)] * size
    for text, index in vocab.items():
        tokens[index] = text
        special = added.get(text, {}).get("special", False)
        types[index] = int(gguf.TokenType.CONTROL if special else gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(
        "llama-bpe" if "Split" in json.dumps(spec["pre_tokenizer"]) else "gpt-2"
    )
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    _special_ids(writer, source, vocab)


def _special_ids(writer: Any, source: Path, vocab: dict[str, int]) -> None:
    config_file = source / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    for key, add in (
        ("bos_token", writer.add_bos_token_id),
        ("eos_token", writer.add_eos_token_id),
        ("pad_token", writer.add_pad_token_id),
    ):
        token = config.get(key)
        token = token.get("content") if isinstance(token, dict) else token
        if isinstance(token, str) and token in vocab:
            add(vocab[token])
    spec = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    # llama.cpp adds BOS (or EOS) when the metadata says so; the Hugging Face tokenizer adds
    # what its post-processor's template says, which may be nothing at all.
    bos, eos = (config.get(k) for k in ("bos_token", "eos_token"))
    bos = bos.get("content") if isinstance(bos, dict) else bos
    eos = eos.get("content") if isinstance(eos, dict) else eos
    first, last = _template_ends(spec.get("post_processor"))
    writer.add_add_bos_token(first is not None and first == bos)
    writer.add_add_eos_token(last is not None and last == eos)
    template = config.get("chat_template")
    template_file = source / "chat_template.jinja"
    if template is None and template_file.is_file():
        template = template_file.read_text(encoding="utf-8")
    if isinstance(template, str):
        writer.add_chat_template(template)


def _template_ends(processor: Any) -> tuple[str | None, str | None]:
    """The special tokens a ``tokenizer.json`` post-processor puts first and last around
    a single sequence (``TemplateProcessing``, possibly inside a ``Sequence``)."""
    if not isinstance(processor, dict):
        return None, None
    if processor.get("type") == "Sequence":
        for inner in processor.get("processors", []):
            ends = _template_ends(inner)
            if ends != (None, None):
                return ends
        return None, None
    if processor.get("type") != "TemplateProcessing":
        return None, None
    pieces = processor.get("single", [])

    def special(piece: Any) -> str | None:
        token = piece.get("SpecialToken") if isinstance(piece, dict) else None
        return token.get("id") if isinstance(token, dict) else None

    return (special(pieces[0]), special(pieces[-1])) if pieces else (None, None)


def _weights(source: Path) -> Any:
    from safetensors.numpy import load_file

    files = sorted(source.glob("*.safetensors"))
    if not files:
        raise UnsupportedError(f"{source}: no *.safetensors weights to export")
    for file in files:
        try:
            tensors = load_file(str(file))
        except (TypeError, ValueError):  # bf16 has no numpy dtype: go through torch
            from safetensors.torch import load_file as load_torch

            tensors = {k: v.float().numpy() for k, v in load_torch(str(file)).items()}
        for key in sorted(tensors):
            yield key, np.asarray(tensors[key], dtype=np.float32)


def _encode(array: np.ndarray, quant: str) -> tuple[np.ndarray, Any]:
    import gguf

    if array.ndim == 1 or quant == "f32":
        return array.astype(np.float32), None
    if quant == "q8_0" and array.shape[-1] % 32 == 0:
        return gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0), (
            gguf.GGMLQuantizationType.Q8_0
        )
    return array.astype(np.float16), None


def _modelfile(gguf_file: str, source: Path) -> str:
    eos = None
    config_file = source / "tokenizer_config.json"
    if config_file.is_file():
        token = json.loads(config_file.read_text(encoding="utf-8")).get("eos_token")
        eos = token.get("content") if isinstance(token, dict) else token
    lines = [
        "# Ollama: ollama create NAME -f Modelfile && ollama run NAME",
        "# The chat template travels inside the GGUF file (tokenizer.chat_template).",
        f"FROM ./{gguf_file}",
    ]
    if isinstance(eos, str):
        lines.append(f'PARAMETER stop "{eos}"')
    return "\n".join(lines) + "\n"
