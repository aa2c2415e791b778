"""``ladder quantize``: int8 / nf4 / fp4 (bitsandbytes) or CPU dynamic int8, measured."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ladder.cli._common import console

__all__ = ["quantize"]


def quantize(
    model: str = typer.Argument(..., help="Model: hf:PATH or builtin:NAME (local weights)."),
    to: str = typer.Option(..., "--to", help="int8, nf4, fp4 (bitsandbytes) or dynamic-int8."),
    out: Path = typer.Option(..., "--out", help="Folder for the quantised checkpoint."),
    text: list[Path] = typer.Option(
        [], "--text", help="Text files for the perplexity check (default: stdlib docstrings)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Quantise a local model; report size, memory, tokens/s and perplexity before and after."""
    from ladder.evaluate.perplexity import read_texts
    from ladder.quantize import quantize as run

    report = run(model, to, out, texts=read_texts(text) if text else None)
    data = report.to_dict()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table(title=f"{to}: {out}")
    for column in ("", "before", "after", "ratio"):
        table.add_column(column)
    for field, label in (
        ("disk_bytes", "size on disk (MB)"),
        ("memory_bytes", "weights in memory (MB)"),
        ("tokens_per_s", "tokens/s (greedy)"),
        ("perplexity", "perplexity"),
    ):
        a, b = data["before"][field], data["after"][field]
        scale = 1e6 if field.endswith("bytes") else 1.0
        shown = [f"{v / scale:.3f}" if v is not None else "-" for v in (a, b)]
        ratio = f"{b / a:.2f}" if a and b is not None else "-"
        table.add_row(label, *shown, ratio)
    console.print(table)
    if not report.reloadable:
        console.print("dynamic-int8 is applied at load time; only the report was saved.")
