"""``ladder export --format gguf``: a checkpoint as one GGUF file for llama.cpp and Ollama,
plus an Ollama ``Modelfile``.

The ``gguf`` package writes the container and knows every architecture's tensor names;
what goes in it is decided here and in the two modules beside this one:

- :mod:`ladder.export.families`: which llama.cpp architecture runs a ``model_type``, and
  what differs per family (RoPE layout, norm offsets, sliding windows);
- :mod:`ladder.export.vocab`: the tokenizer (byte-level BPE or SentencePiece-style), its
  special ids and chat template;
- weights: ``f32`` (lossless: llama.cpp then computes in f32 and decodes the same tokens
  as the Hugging Face model), ``f16`` (norms stay f32) or ``q8_0`` (blocks of 32 int8
  values with an f16 scale; matrices whose rows are not a multiple of 32 stay f16).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ladder.errors import ConfigError, UnsupportedError
from ladder.export.families import (
    GGUFFamily,
    family_for,
    head_dim,
    permute_rope,
    rope_dims,
    rope_theta,
)
from ladder.export.kquants import KQUANTS, gguf_perplexity, quantize_gguf
from ladder.export.modelfile import modelfile as render_modelfile
from ladder.export.vocab import write_vocab
from ladder.fsutil import atomic_dir

__all__ = ["QUANTS", "ExportResult", "export_gguf", "gguf_name"]

#: Written by ladder itself, then made by llama.cpp's quantizer from the f16 file.
QUANTS = ("f32", "f16", "q8_0", *KQUANTS)


@dataclass(frozen=True)
class ExportResult:
    """What was written."""

    gguf: Path
    modelfile: Path
    tensors: int
    bytes: int
    #: For a K-quant: perplexity of the check text under the f16 file and under this one.
    perplexity: tuple[float, float] | None = None


def gguf_name(hf_name: str, model_type: str = "llama", layers: int = 1000) -> str | None:
    """llama.cpp's name for a Hugging Face tensor of a ``model_type`` model, or None."""
    import gguf

    if "rotary_emb" in hf_name:
        return None  # recomputed by llama.cpp from rope.freq_base
    family = family_for(model_type, Path(hf_name))
    names = gguf.get_tensor_name_map(_arch(family.arch), layers)
    name: str | None = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    return name


def _arch(name: str) -> Any:
    import gguf

    return next(arch for arch, text in gguf.MODEL_ARCH_NAMES.items() if text == name)


def export_gguf(
    spec: str, out: str | Path, *, quant: str = "f16", check_text: str | None = None
) -> ExportResult:
    """Write ``NAME-QUANT.gguf`` and a ``Modelfile`` into the folder ``out`` (atomically).

    A K-quant is made by llama.cpp from an f16 export, and both are scored on
    ``check_text`` (default: a few standard-library docstrings) so the result carries the
    perplexity the quantization costs.

    Raises:
        ConfigError: an unknown quant, or a spec that is not a local checkpoint.
        UnsupportedError: a model_type with no row in :mod:`ladder.export.families`, a
            tokenizer :mod:`ladder.export.vocab` cannot write, or a K-quant without
            llama-cpp-python.
    """
    if quant not in QUANTS:
        raise ConfigError(f"--quant {quant!r} is not one of {', '.join(QUANTS)}")
    from ladder.quantize import checkpoint_dir

    source = checkpoint_dir(spec)
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    family = family_for(config.get("model_type"), source)
    name = source.resolve().name
    perplexity = None
    with atomic_dir(out) as tmp:
        target = tmp / f"{name}-{quant}.gguf"
        if quant in KQUANTS:
            reference = tmp / f".{name}-f16.gguf"
            count = _write(source, config, family, reference, name, "f16")
            quantize_gguf(reference, target, quant)
            text = check_text or _sample_text()
            perplexity = (gguf_perplexity(reference, text), gguf_perplexity(target, text))
            reference.unlink()
        else:
            count = _write(source, config, family, target, name, quant)
        size = target.stat().st_size
        modelfile = tmp / "Modelfile"
        modelfile.write_text(render_modelfile(target.name, source), encoding="utf-8")
    folder = Path(out)
    return ExportResult(folder / target.name, folder / "Modelfile", count, size, perplexity)


def _sample_text() -> str:
    from ladder.quantize import default_texts

    return "\n\n".join(text for _, text in default_texts())


def _write(
    source: Path, config: dict[str, Any], family: GGUFFamily, target: Path, name: str, quant: str
) -> int:
    import gguf

    writer = gguf.GGUFWriter(str(target), arch=family.arch)
    layers = int(config["num_hidden_layers"])
    rows = int(config["vocab_size"])
    _hyperparameters(writer, config, family, name, quant)
    write_vocab(writer, source, rows)
    names = gguf.get_tensor_name_map(_arch(family.arch), layers)
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    count = 0
    for hf_name, array in _weights(source):
        if "rotary_emb" in hf_name:
            continue  # recomputed by llama.cpp from rope.freq_base
        gguf_tensor = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_tensor is None:
            raise UnsupportedError(f"{source}: tensor {hf_name} has no llama.cpp counterpart")
        if family.permute_rope and gguf_tensor.endswith(("attn_q.weight", "attn_q.bias")):
            array = permute_rope(array, heads)
        elif family.permute_rope and gguf_tensor.endswith(("attn_k.weight", "attn_k.bias")):
            array = permute_rope(array, kv_heads)
        if family.norm_shift and hf_name.endswith("norm.weight"):
            array = array + np.float32(family.norm_shift)
        if gguf_tensor == "token_embd.weight" and array.shape[0] < rows:
            raise UnsupportedError(f"{source}: {hf_name} has fewer rows than vocab_size")
        data, raw = _encode(array, quant)
        writer.add_tensor(gguf_tensor, data, raw_dtype=raw)
        count += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return count


def _hyperparameters(
    writer: Any, config: dict[str, Any], family: GGUFFamily, name: str, quant: str
) -> None:
    import gguf

    heads = int(config["num_attention_heads"])
    width = head_dim(config)
    mark = family.name_mark
    writer.add_name(name if mark is None or mark in name.lower() else f"{name}-{mark}")
    writer.add_context_length(int(config.get("max_position_embeddings", 2048)))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(heads)
    writer.add_head_count_kv(int(config.get("num_key_value_heads") or heads))
    writer.add_key_length(width)
    writer.add_value_length(width)
    writer.add_rope_dimension_count(rope_dims(config))
    writer.add_rope_freq_base(rope_theta(config, family.rope_kind))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(int(config["vocab_size"]))
    if family.metadata is not None:
        family.metadata(writer, config)
    file_type = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[quant]
    writer.add_file_type(int(file_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


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
