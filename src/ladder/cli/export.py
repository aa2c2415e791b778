"""``ladder export``: a checkpoint as GGUF (llama.cpp, Ollama), f32 down to K-quants."""

from __future__ import annotations

from pathlib import Path

import typer

from ladder.cli._common import console

__all__ = ["export"]


def export(
    model: str = typer.Argument(
        ...,
        help="Model: hf:PATH or builtin:NAME (llama, mistral, qwen2, qwen3, gemma3_text, phi3).",
    ),
    format: str = typer.Option("gguf", "--format", help="Output format: gguf."),
    quant: str = typer.Option(
        "f16",
        "--quant",
        help="Weights: f32 (lossless), f16, q8_0, or a K-quant made by llama.cpp: q4_k_m, "
        "q5_k_m, q6_k (needs the llama extra).",
    ),
    check_text: Path | None = typer.Option(
        None,
        "--check-text",
        help="K-quants: text to compare perplexity on, f16 vs the quant (default: a "
        "built-in sample).",
    ),
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
    text = None
    if check_text is not None:
        from ladder.evaluate.perplexity import read_texts

        text = read_texts([check_text])[0][1]
    folder = out or Path(f"{checkpoint_dir(model).resolve().name}-gguf")
    result = export_gguf(model, folder, quant=quant, check_text=text)
    console.print(
        f"wrote {result.gguf} ({result.bytes / 1e6:.2f} MB, {result.tensors} tensors) "
        f"and {result.modelfile}",
        markup=False,
        highlight=False,
    )
    if result.perplexity is not None:
        base, quantized = result.perplexity
        console.print(
            f"perplexity f16 {base:.3f} -> {quant} {quantized:.3f} "
            f"({(quantized / base - 1) * 100:+.2f}%, llama.cpp)",
            markup=False,
            highlight=False,
        )
