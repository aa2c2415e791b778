"""``ladder prompt run`` and ``ladder prompt compare``: templates and strategies over a dataset."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel, ConfigDict, Field
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from ladder.cli._common import (
    ENGINE_HELP,
    build,
    config_option,
    console,
    engine_spec,
    err_console,
    field_help,
)
from ladder.config import ModelOptions
from ladder.models.base import LanguageModel

__all__ = ["PromptRunOptions", "compare", "run"]

app = typer.Typer(
    help="Run prompt templates and strategies over a dataset, and compare them.",
    no_args_is_help=True,
)


class PromptRunOptions(BaseModel):
    """Options shared by ``ladder prompt run`` and ``ladder prompt compare``."""

    model_config = ConfigDict(extra="forbid")

    data: Path = Field(description="Records to run on: JSONL (one object per line) or CSV.")
    out: Path | None = Field(
        None,
        description="Results file (run, default prompt-results.jsonl) or folder (compare, "
        "default prompt-compare).",
    )
    limit: int | None = Field(None, ge=1, description="Run only the first N records.")
    batch_size: int | None = Field(
        None, ge=1, description="Records per batch (default: the config's, 8)."
    )
    resume: bool = Field(
        False, description="Keep the rows an interrupted run wrote and run only the rest."
    )
    cache: bool = Field(
        True,
        description="Answer repeated requests from the response cache in the home folder; "
        "--no-cache neither reads nor writes it.",
    )


def _open_model(cache: bool, options: ModelOptions) -> Callable[[str], LanguageModel]:
    def open_model(spec: str) -> LanguageModel:
        from ladder.cache import CachedModel
        from ladder.cache_store import ResponseCache
        from ladder.models import load_model

        model = load_model(spec, **options.for_backend(spec))
        return CachedModel(model, ResponseCache()) if cache else model

    return open_model


def _records(data: Path, limit: int | None) -> list[Any]:
    from ladder.prompts.runner import load_records

    records = load_records(data)
    return records[:limit] if limit else records


def _progress() -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )


@app.command("run")
def run(
    config: Path = typer.Argument(
        ..., help="Run config YAML (template, strategy, examples, params) or a template file."
    ),
    model: str = typer.Option(..., "--model", help="Model spec: hf:PATH, builtin:NAME, ..."),
    data: Path = config_option(PromptRunOptions, "data", "--data"),
    out: Path | None = config_option(PromptRunOptions, "out", "--out"),
    limit: int | None = config_option(PromptRunOptions, "limit", "--limit"),
    batch_size: int | None = config_option(PromptRunOptions, "batch_size", "--batch-size"),
    resume: bool = config_option(PromptRunOptions, "resume", "--resume"),
    cache: bool = config_option(PromptRunOptions, "cache", "--cache/--no-cache"),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
    dtype: str = typer.Option("auto", help=field_help(ModelOptions, "dtype")),
    device: str = typer.Option("auto", help=field_help(ModelOptions, "device")),
    engine: str = typer.Option("ladder", "--engine", help=ENGINE_HELP),
) -> None:
    """Run a template + strategy over every record; write results JSONL and a summary."""
    from ladder.prompts.runner import load_run, run_records, summary_path

    opts = build(
        PromptRunOptions,
        data=data,
        out=out,
        limit=limit,
        batch_size=batch_size,
        resume=resume,
        cache=cache,
    )
    overrides = {"batch_size": opts.batch_size} if opts.batch_size else {}
    prompt_run = load_run(config, **overrides)
    records = _records(opts.data, opts.limit)
    model_options = build(ModelOptions, dtype=dtype, device=device)
    lm = _open_model(opts.cache, model_options)(engine_spec(model, engine))
    target = opts.out or Path("prompt-results.jsonl")
    with _progress() as bar:
        task = bar.add_task(prompt_run.template.name, total=len(records))
        summary = run_records(
            lm,
            prompt_run,
            records,
            target,
            resume=opts.resume,
            progress=lambda n: bar.advance(task, n),
        )
    if as_json:
        typer.echo(json.dumps(summary.to_dict()))
        return
    table = Table(title=f"{summary.run} · {summary.model}", title_justify="left")
    for column in ("rows", "score", "tokens in/out", "cost (USD)", "latency p50/p95 s"):
        table.add_column(column, justify="right")
    table.add_row(*_summary_cells(summary.to_dict()))
    console.print(table)
    console.print(f"[dim]results: {target} · summary: {summary_path(target)}[/]")


@app.command("compare")
def compare(
    configs: list[Path] = typer.Argument(
        ..., help="Run configs or templates to compare (each one a column group)."
    ),
    model: list[str] = typer.Option(..., "--model", help="Model spec; repeat for several."),
    strategy: list[str] = typer.Option(
        [],
        "--strategy",
        help="Strategy name to try with every config (repeatable; default: each config's own).",
    ),
    data: Path = config_option(PromptRunOptions, "data", "--data"),
    out: Path | None = config_option(PromptRunOptions, "out", "--out"),
    limit: int | None = config_option(PromptRunOptions, "limit", "--limit"),
    batch_size: int | None = config_option(PromptRunOptions, "batch_size", "--batch-size"),
    resume: bool = config_option(PromptRunOptions, "resume", "--resume"),
    cache: bool = config_option(PromptRunOptions, "cache", "--cache/--no-cache"),
    dtype: str = typer.Option("auto", help=field_help(ModelOptions, "dtype")),
    device: str = typer.Option("auto", help=field_help(ModelOptions, "device")),
) -> None:
    """Run every model × config × strategy on one dataset; print a side-by-side table."""
    from ladder.prompts.compare import compare as run_matrix
    from ladder.prompts.runner import load_run

    opts = build(
        PromptRunOptions,
        data=data,
        out=out,
        limit=limit,
        batch_size=batch_size,
        resume=resume,
        cache=cache,
    )
    overrides: dict[str, Any] = {"batch_size": opts.batch_size} if opts.batch_size else {}
    names: list[str | None] = list(strategy) or [None]
    runs = [
        load_run(path, **overrides, **({"strategy": name} if name else {}))
        for path in configs
        for name in names
    ]
    records = _records(opts.data, opts.limit)
    model_options = build(ModelOptions, dtype=dtype, device=device)
    folder = opts.out or Path("prompt-compare")
    with _progress() as bar:
        task = bar.add_task("compare", total=len(records) * len(runs) * len(model))
        cells = run_matrix(
            model,
            runs,
            records,
            folder,
            open_model=_open_model(opts.cache, model_options),
            resume=opts.resume,
            progress=lambda n: bar.advance(task, n),
        )
    table = Table(title=f"{len(records)} records", title_justify="left")
    for column in ("model", "template", "strategy"):
        # Model specs (URLs, paths) and template@version names fold, never cut.
        table.add_column(column, overflow="fold")
    for column in ("rows", "score", "tokens in/out", "cost (USD)", "latency p50/p95 s"):
        table.add_column(column, justify="right")
    for cell in cells:
        row = cell.row()
        table.add_row(
            cell.model,
            f"{row['template']}@{row['template_version']}",
            row["strategy"],
            *_summary_cells(cell.summary.to_dict()),
        )
    console.print(table)
    console.print(f"[dim]written: {folder / 'compare.jsonl'}, {folder / 'compare.md'}[/]")


def _summary_cells(summary: dict[str, Any]) -> list[str]:
    score = summary.get("score") or {}
    value = score.get("value")
    shown = "-" if value is None else f"{score['metric']} {value:.4g}"
    if score.get("ci_low") is not None:
        shown += f" [{score['ci_low']:.3g}, {score['ci_high']:.3g}]"
    p50, p95 = summary["latency_p50_s"], summary["latency_p95_s"]
    latency = "-" if p50 is None else f"{p50:.3g}/{p95:.3g}"
    return [
        str(summary["rows"]),
        shown,
        f"{summary['prompt_tokens']}/{summary['completion_tokens']}",
        f"{summary['cost_usd']:.4g}",
        latency,
    ]
