"""``ladder perplexity``: how well a local model predicts some text files."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from pydantic import BaseModel, Field
from rich.table import Table

from ladder.cli._common import build, console, field_help
from ladder.config import ModelOptions

__all__ = ["PerplexityConfig", "perplexity"]


class PerplexityConfig(BaseModel):
    """Sliding-window perplexity settings."""

    window: int | None = Field(
        None, ge=1, description="Tokens per window; default (and at most) the model's context."
    )
    stride: int | None = Field(
        None,
        ge=1,
        description="Tokens between window starts; each window scores only its new tokens "
        "with the overlap as context. Default: half the window.",
    )


def perplexity(
    model: str = typer.Argument(..., help="Local model spec: hf:PATH or builtin:NAME."),
    files: list[Path] = typer.Argument(..., help="UTF-8 text files to score."),
    window: int | None = typer.Option(None, help=field_help(PerplexityConfig, "window")),
    stride: int | None = typer.Option(None, help=field_help(PerplexityConfig, "stride")),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    dtype: str = typer.Option("auto", help=field_help(ModelOptions, "dtype")),
    device: str = typer.Option("auto", help=field_help(ModelOptions, "device")),
) -> None:
    """Perplexity of a local model on text files (sliding window for long texts)."""
    from ladder.evaluate.perplexity import perplexity_of_texts, read_texts
    from ladder.models import load_model

    settings = build(PerplexityConfig, window=window, stride=stride)
    options = build(ModelOptions, dtype=dtype, device=device)
    texts = read_texts(files)
    lm = load_model(model, **options.for_backend(model))
    results = perplexity_of_texts(lm, texts, window=settings.window, stride=settings.stride)
    if as_json:
        total = results[-1]
        payload = {
            "model": lm.info.name,
            "perplexity": total.perplexity,
            "tokens": total.tokens,
            "window": total.window,
            "stride": total.stride,
            "files": [r.to_dict() for r in results[:-1]],
        }
        print(json.dumps(payload))
        return
    table = Table(title=f"perplexity of {lm.info.name}")
    table.add_column("file", overflow="fold")  # paths fold in a narrow terminal, never cut
    for column in ("tokens", "perplexity"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(r.name, f"{r.tokens:,}", f"{r.perplexity:.3f}")
    console.print(table)
    console.print(f"[dim]window {results[-1].window}, stride {results[-1].stride}[/]")
