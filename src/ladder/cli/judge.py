"""``ladder judge``: an LLM judge over a predictions file (grading, pairwise, faithfulness)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ladder.cli._common import ENGINE_HELP, build, config_option, console, engine_spec, field_help
from ladder.errors import ConfigError
from ladder.evaluate.judge_run import JudgeRunConfig, parse_fields

__all__ = ["judge"]


def judge(
    predictions: Path = config_option(JudgeRunConfig, "predictions", "--predictions"),
    judge_spec: str = config_option(JudgeRunConfig, "judge", "--judge"),
    mode: str = config_option(JudgeRunConfig, "mode", "--mode"),
    references: Path | None = config_option(JudgeRunConfig, "references", "--references"),
    contexts: Path | None = config_option(JudgeRunConfig, "contexts", "--contexts"),
    questions: Path | None = config_option(JudgeRunConfig, "questions", "--questions"),
    baseline: Path | None = config_option(JudgeRunConfig, "baseline", "--baseline"),
    rubric: str | None = config_option(JudgeRunConfig, "rubric", "--rubric"),
    claims: str = config_option(JudgeRunConfig, "claims", "--claims"),
    attempts: int = config_option(JudgeRunConfig, "attempts", "--attempts"),
    max_tokens: int = config_option(JudgeRunConfig, "max_tokens", "--max-tokens"),
    seed: int = config_option(JudgeRunConfig, "seed", "--seed"),
    resamples: int = config_option(JudgeRunConfig, "resamples", "--resamples"),
    out: Path | None = config_option(JudgeRunConfig, "out", "--out"),
    field: list[str] = typer.Option([], "--field", help=field_help(JudgeRunConfig, "field")),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print one JSON object: metric, value, ci_low, ci_high, signature, rows, errors.",
    ),
    engine: str = typer.Option("ladder", "--engine", help=ENGINE_HELP),
) -> None:
    """Judge predictions with an LLM: grade them, compare with a baseline, or check faithfulness."""
    from ladder.evaluate.judge_run import run_judge

    config = build(
        JudgeRunConfig,
        predictions=predictions,
        judge=engine_spec(judge_spec, engine),
        mode=mode,
        references=references,
        contexts=contexts,
        questions=questions,
        baseline=baseline,
        rubric=rubric,
        claims=claims,
        attempts=attempts,
        max_tokens=max_tokens,
        seed=seed,
        resamples=resamples,
        out=out,
        field=parse_fields(field),
    )
    result = run_judge(config)
    score, summary = result.score, result.summary()
    if summary["valid"] == 0:
        first = next(row["error"] for row in result.rows)
        where = f"; rows written to {config.out}" if config.out else ""
        raise ConfigError(f"all {summary['rows']} rows failed (row 1: {first}){where}")
    if as_json:
        counts = {k: summary[k] for k in ("mode", "rows", "valid", "errors")}
        typer.echo(json.dumps({**score.to_dict(), **counts}))
        return
    table = Table(title=f"{score.metric} · {config.mode} · {config.judge}", title_justify="left")
    for column in ("metric", "value", "95% CI", "valid rows", "errors"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    ci = "-" if score.ci_low is None else f"[{score.ci_low:.4g}, {score.ci_high:.4g}]"
    valid = f"{summary['valid']}/{summary['rows']}"
    table.add_row(score.metric, f"{score.value:.4g}", ci, valid, str(summary["errors"]))
    console.print(table)
    console.print(f"[dim]{score.signature}[/]", soft_wrap=True)
    if config.out is not None:
        console.print(f"[dim]judgments and summary written to {config.out}[/]")
