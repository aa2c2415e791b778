"""How each transformers ``model_type`` becomes a llama.cpp architecture: one row per family.

A row says which llama.cpp architecture runs the model, and the few things that differ
between families once the tensor names are mapped (the ``gguf`` package's
``TensorNameMap`` knows the names of every architecture):

- RoPE layout: Hugging Face's Llama and Mistral rotate the two halves of each head
  (``rotate_half``), while llama.cpp's ``llama`` architecture rotates adjacent pairs, so
  their query and key rows are permuted on export (:func:`permute_rope`; RoPE: Su et al.
  2021). Qwen, Gemma and Phi-3 run as "NeoX" RoPE in llama.cpp, which rotates halves too:
  nothing to permute.
- Norm weights: Gemma's RMSNorm multiplies by ``1 + w``, llama.cpp's by ``w``, so one is
  added to every norm weight.
- Extra metadata: a sliding window, a partial rotary dimension.

A new family is one :class:`GGUFFamily` and one :func:`register_family` call (and one row
in the test matrix of tests/families.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ladder.errors import UnsupportedError

__all__ = [
    "GGUFFamily",
    "family_for",
    "family_names",
    "head_dim",
    "permute_rope",
    "register_family",
    "rope_dims",
    "rope_theta",
]

Metadata = Callable[[Any, dict[str, Any]], None]


@dataclass(frozen=True)
class GGUFFamily:
    """One transformers ``model_type`` as llama.cpp runs it.

    Attributes:
        model_type: transformers' name (``config.json``'s ``model_type``).
        arch: llama.cpp's architecture name (``general.architecture``).
        permute_rope: permute query/key rows from halves to adjacent pairs.
        norm_shift: added to every ``*norm.weight`` (Gemma: 1).
        rope_kind: which of ``rope_parameters``' entries holds the global RoPE base.
        name_mark: llama.cpp keys some tokenizer behaviour on ``general.name``: a name
            without this mark gets it appended.
        metadata: writes the family's extra keys (``writer``, ``config``).
    """

    model_type: str
    arch: str
    permute_rope: bool = False
    norm_shift: float = 0.0
    rope_kind: str = "full_attention"
    name_mark: str | None = None
    metadata: Metadata | None = field(default=None, compare=False)


_FAMILIES: dict[str, GGUFFamily] = {}


def register_family(family: GGUFFamily) -> None:
    """Make ``family.model_type`` checkpoints exportable."""
    _FAMILIES[family.model_type] = family


def family_names() -> list[str]:
    """The exportable ``model_type`` names, sorted."""
    return sorted(_FAMILIES)


def family_for(model_type: Any, source: Path) -> GGUFFamily:
    """The row for ``model_type``.

    Raises:
        UnsupportedError: no row: one line naming the model_type and the supported ones.
    """
    family = _FAMILIES.get(str(model_type))
    if family is None:
        raise UnsupportedError(
            f"{source}: model_type {model_type!r} cannot be exported to GGUF by ladder; "
            f"supported: {', '.join(family_names())}"
        )
    return family


def permute_rope(weight: np.ndarray, heads: int) -> np.ndarray:
    """Re-order each head's rows from halves (Hugging Face) to adjacent pairs (llama.cpp)."""
    rows = weight.shape[0]
    half = rows // heads // 2
    return weight.reshape(heads, 2, half, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def head_dim(config: dict[str, Any]) -> int:
    """Width of one attention head: ``head_dim`` when given (Qwen3, Gemma), else width/heads."""
    heads = int(config["num_attention_heads"])
    return int(config.get("head_dim") or int(config["hidden_size"]) // heads)


def rope_theta(config: dict[str, Any], kind: str = "full_attention") -> float:
    """The RoPE base: transformers 5 keeps it in ``rope_parameters`` (per layer kind for
    models that mix sliding and full attention), older configs in ``rope_theta``."""
    rope = config.get("rope_parameters") or {}
    if isinstance(rope.get(kind), dict):
        rope = rope[kind]
    return float(rope.get("rope_theta") or config.get("rope_theta") or 10000.0)


def _sliding_window(writer: Any, config: dict[str, Any]) -> None:
    window = config.get("sliding_window")
    if window and config.get("use_sliding_window", True):
        writer.add_sliding_window(int(window))


def _gemma3(writer: Any, config: dict[str, Any]) -> None:
    _sliding_window(writer, config)
    kinds = config.get("layer_types")
    if kinds:  # which layers attend within the window (the rest see everything)
        writer.add_sliding_window_pattern([k == "sliding_attention" for k in kinds])


def rope_dims(config: dict[str, Any]) -> int:
    """How many of a head's dimensions RoPE rotates (Phi models may rotate a part)."""
    rope = config.get("rope_parameters") or {}
    factor = float(rope.get("partial_rotary_factor") or config.get("partial_rotary_factor") or 1)
    return int(head_dim(config) * factor)


def _phi3(writer: Any, config: dict[str, Any]) -> None:
    _sliding_window(writer, config)
    original = config.get("original_max_position_embeddings")
    if original:
        writer.add_rope_scaling_orig_ctx_len(int(original))


for _family in (
    GGUFFamily("llama", "llama", permute_rope=True),
    GGUFFamily("mistral", "llama", permute_rope=True, metadata=_sliding_window),
    GGUFFamily("qwen2", "qwen2", metadata=_sliding_window),
    GGUFFamily("qwen3", "qwen3"),
    GGUFFamily("gemma3_text", "gemma3", norm_shift=1.0, metadata=_gemma3),
    # llama.cpp gives Phi-3's turn tokens (<|user|>, <|end|> ...) the "rstrip" of its
    # tokenizer (the whitespace after them is dropped) only when general.name says phi3: a
    # fine-tune under its own name would tokenize every chat prompt differently there.
    GGUFFamily("phi3", "phi3", name_mark="phi3", metadata=_phi3),
):
    register_family(_family)
