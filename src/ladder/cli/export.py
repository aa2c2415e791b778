"""``ladder export``: a Llama-family checkpoint as GGUF (llama.cpp, Ollama)."""

from __future__ import annotations

from pathlib import Path

import typer

from ladder.cli._common import console

__all__ = ["export"]


def export(
    model: str = typer.Argument(..., help="Model: hf:PATH or builtin:NAME (Llama family)."),
    format: str = typer.Option("gguf", "--format", help="Output format: gguf."),
    quant: str = typer.Option("f16", "--quant", help="Weights: f32 (lossless), f16 or q8_0."),
    out: Path | None = typer.Option(
        None, "--out", help="Folder for the .gguf file and Modelfile (default: ./NAME-gguf)."
    ),
) -> None:
    """Export a model for llama.cpp / Ollama: one GGUF file plus an Ollama Modelfile."""
    from ladder.errors import ConfigError
    from ladder.export import export_gguf
    from ladder.quantize import checkpoint_dir

    if format != "gguf":
        raise ConfigError(f"--format {format!r}: only gguf is supported")
    folder = out or Path(f"{checkpoint_dir(model).resolve().name}-gguf")
    result = export_gguf(model, folder, quant=quant)
    console.print(
        f"wrote {result.gguf} ({result.bytes / 1e6:.2f} MB, {result.tensors} tensors) "
        f"and {result.modelfile}",
        markup=False,
        highlight=False,
    )
