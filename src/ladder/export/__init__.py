"""GGUF export for llama.cpp and Ollama: :func:`export_gguf` writes the file and a Modelfile.

:mod:`ladder.export.writer` drives it; :mod:`ladder.export.families` holds one row per
model family and :mod:`ladder.export.vocab` writes the tokenizer.
"""

from ladder.export.families import family_names, permute_rope, register_family
from ladder.export.writer import QUANTS, ExportResult, export_gguf, gguf_name

__all__ = [
    "QUANTS",
    "ExportResult",
    "export_gguf",
    "family_names",
    "gguf_name",
    "permute_rope",
    "register_family",
]
