"""``ladder export``: a checkpoint as GGUF (llama.cpp, Ollama), f32 down to K-quants;
``--check TASK`` scores the file against the checkpoint on a climb task's test split."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ladder.cli._common import console

if TYPE_CHECKING:
    from ladder.climb.parity import ExportCheck
    from ladder.climb.task import LoadedTask

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
    check: Path | None = typer.Option(
        None,
        "--check",
        help="A climb task.yaml: score the exported file (through llama.cpp) and the "
        "checkpoint (through hf:) zero-shot on its test split, with the paired verdict; "
        "exit 1 when the file drops quality.",
    ),
) -> None:
    """Export a model for llama.cpp / Ollama: one GGUF file plus an Ollama Modelfile."""
    from ladder.errors import ConfigError
    from ladder.export import export_gguf
    from ladder.quantize import checkpoint_dir

    if format != "gguf":
        raise ConfigError(f"--format {format!r}: only gguf is supported")
    task = None if check is None else _check_inputs(check, model)  # before anything is written
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
    if task is not None:
        from ladder.climb.parity import check_export

        checked = check_export(task, model, result.gguf, folder / f"check-{task.spec.name}")
        _print_check(checked)
        if not checked.verdict.keeps:
            raise typer.Exit(1)


def _check_inputs(path: Path, model: str) -> LoadedTask:
    """The task of ``--check``, loaded; ``model`` loadable as a spec (it is scored as given);
    llama.cpp present to score the file. Each failure is one line."""
    from ladder.climb.parity import llama_cpp_missing
    from ladder.climb.task import load_task
    from ladder.errors import UnsupportedError
    from ladder.models import check_model

    task = load_task(path)
    check_model(model)
    missing = llama_cpp_missing()
    if missing is not None:
        raise UnsupportedError(f"--check scores the file through llama.cpp: {missing}")
    return task


def _print_check(checked: ExportCheck) -> None:
    """Both scores with their CIs and speeds, then the verdict, one line each."""
    score = checked.source.score
    lines = [f"check: {score.n} test records, zero-shot, {score.metric} with its CI"]
    for row in (checked.source, checked.exported):
        s, speed = row.score, row.timing.tokens_per_s
        rate = "–" if speed is None else f"{speed:.1f}"
        lines.append(
            f"  {row.model}: {s.value:.3f} [{s.ci_low:.3f}, {s.ci_high:.3f}], {rate} tokens/s"
        )
    verdict = "keeps quality" if checked.verdict.keeps else "drops quality"
    lines.append(f"gguf vs checkpoint: {verdict}: {checked.verdict.reason}")
    lines.append(f"predictions in {checked.folder}")
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)  # paths whole
