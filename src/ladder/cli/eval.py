"""``ladder eval``: run an evaluation task (lm-evaluation-harness style YAML) on a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import typer
from pydantic import BaseModel, ConfigDict, Field
from rich.table import Table

from ladder.cli._common import (
    ENGINE_HELP,
    TRACK_HELP,
    build,
    config_option,
    console,
    engine_spec,
    field_help,
    open_tracker,
    print_tracked,
)
from ladder.config import ModelOptions

__all__ = ["EvalConfig", "eval_task"]


class EvalConfig(BaseModel):
    """How ``ladder eval`` runs a task."""

    model_config = ConfigDict(extra="forbid")

    limit: int | None = Field(None, ge=1, description="Evaluate only the first N documents.")
    batch_size: int | None = Field(
        None,
        ge=1,
        description="Requests per forward pass (default: the backend's); scores "
        "do not depend on it.",
    )
    out: Path | None = Field(
        None, description="Folder for samples.jsonl (one line per document) and summary.json."
    )
    resamples: int = Field(
        1000, ge=0, description="Bootstrap resamples for the confidence interval (0: no CI)."
    )
    mc_mode: Literal["auto", "loglikelihood", "generate"] | None = Field(
        None,
        description="How multiple choice is answered (default: the task's multiple_choice.mode, "
        "auto): loglikelihood, generate (ask for the letter; acc only), or auto "
        "(generate when the backend gives no log-likelihoods).",
    )
    cache: bool = Field(
        True,
        description="Answer repeated requests from the response cache in the home folder "
        "($LADDER_HOME/cache/responses.sqlite); --no-cache neither reads nor writes it.",
    )


def eval_task(
    task_yaml: Path = typer.Argument(..., help="Task YAML file (see docs/evaluation.md)."),
    model: str = typer.Option(
        ...,
        "--model",
        help="Model spec: hf:PATH, builtin:NAME or openai:MODEL@URL (multiple_choice needs "
        "log-likelihoods).",
    ),
    limit: int | None = config_option(EvalConfig, "limit", "--limit"),
    batch_size: int | None = config_option(EvalConfig, "batch_size", "--batch-size"),
    out: Path | None = config_option(EvalConfig, "out", "--out"),
    resamples: int = config_option(EvalConfig, "resamples", "--resamples"),
    mc_mode: str | None = config_option(EvalConfig, "mc_mode", "--mc-mode"),
    cache: bool = config_option(EvalConfig, "cache", "--cache/--no-cache"),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object: task, model, n, metrics."
    ),
    dtype: str = typer.Option("auto", help=field_help(ModelOptions, "dtype")),
    device: str = typer.Option("auto", help=field_help(ModelOptions, "device")),
    track: str | None = typer.Option(None, "--track", help=TRACK_HELP),
    engine: str = typer.Option("ladder", "--engine", help=ENGINE_HELP),
) -> None:
    """Evaluate a model on a task: multiple choice by log-likelihood, or generation."""
    from ladder.cache_store import ResponseCache
    from ladder.evaluate.harness import evaluate_task, write_outputs
    from ladder.evaluate.score import CISettings
    from ladder.evaluate.tasks import load_task
    from ladder.models import load_model

    config = build(
        EvalConfig,
        limit=limit,
        batch_size=batch_size,
        out=out,
        resamples=resamples,
        mc_mode=mc_mode,
        cache=cache,
    )
    options = build(ModelOptions, dtype=dtype, device=device)
    task = load_task(task_yaml)  # before loading weights: a bad task fails fast
    model = engine_spec(model, engine)
    lm = load_model(model, **options.for_backend(model))
    ci = CISettings(resamples=config.resamples, seed=task.seed)
    uri, tracker = open_tracker(track)  # a store that cannot open stops here, before the work
    with tracker.run(f"eval {task.task}", tags={"task": task.task, "verb": "eval"}) as run:
        result = evaluate_task(
            lm,
            task,
            limit=config.limit,
            batch_size=config.batch_size,
            ci=ci,
            cache=ResponseCache() if config.cache else None,
            mc_mode=config.mc_mode,
        )
        if config.out is not None:
            write_outputs(result, config.out)
        run.log_params({"task": result.task, "model": result.model, "n": result.n,
                        "num_fewshot": task.num_fewshot})  # fmt: skip
        for score in result.scores.values():
            run.log_score(score)
        if config.out is not None:
            run.log_artifact(config.out)
    if as_json:
        typer.echo(json.dumps(result.summary()))
        return
    mode = f" · {result.mode} mode" if result.mode == "generate" else ""
    title = f"{result.task} · {result.model} · {result.n} docs{mode}"
    table = Table(title=title, title_justify="left")
    for column in ("metric", "value", "95% CI"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, score in result.scores.items():
        ci_text = "-" if score.ci_low is None else f"[{score.ci_low:.4g}, {score.ci_high:.4g}]"
        table.add_row(name, f"{score.value:.4g}", ci_text)
    for name in result.not_defined:
        table.add_row(name, "not defined", "-")
    console.print(table)
    for name, why in result.not_defined.items():
        console.print(f"{name}: {why}", soft_wrap=True)
    for score in result.scores.values():
        console.print(f"[dim]{score.signature}[/]", soft_wrap=True)
    if result.cache is not None:
        hits, misses = result.cache["hits"], result.cache["misses"]
        console.print(f"[dim]response cache: {hits} answered from cache, {misses} computed[/]")
    if config.out is not None:
        console.print(f"[dim]samples and summary written to {config.out}[/]")
    print_tracked(uri)
