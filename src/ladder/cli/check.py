"""``ladder check``: the regression gate — a new run against a baseline run, for CI."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from pydantic import BaseModel, ConfigDict, Field

from ladder.cli._common import err_console, field_help
from ladder.errors import ConfigError
from ladder.fsutil import atomic_write_text

__all__ = ["CheckFlags", "check"]


class CheckFlags(BaseModel):
    """The options of ``ladder check`` (their descriptions are its ``--help``)."""

    model_config = ConfigDict(extra="forbid")

    baseline: Path = Field(
        ...,
        description="The baseline run: a climb folder (its recommended rung, or --rung) or a "
        "rung folder with predictions.jsonl.",
    )
    task: Path | None = Field(
        None,
        description="The task file: its metric, bootstrap and gate.margin (default: the "
        "baseline climb's task.resolved.yaml); with --model, run the new side now.",
    )
    model: str | None = Field(
        None, description="Run --rung of --task on this model now as the new run."
    )
    rung: str | None = Field(
        None,
        description="Which rung: in a climb folder, the row to compare (default: the "
        "recommended one); with --model, the rung to run (default: the task's first).",
    )
    margin: float | None = Field(
        None, ge=0, description="Allowed drop before the gate fails (replaces gate.margin)."
    )
    out: Path | None = Field(
        None, description="Folder for the new run's predictions (default: runs/check-TASK)."
    )
    json_out: bool = Field(False, description="Print the verdict as JSON.")


F = CheckFlags


def check(
    new: Path | None = typer.Argument(
        None, help="The new run: a climb folder or a rung folder (or use --task and --model)."
    ),
    baseline: Path = typer.Option(..., "--baseline", help=field_help(F, "baseline")),
    task: Path | None = typer.Option(None, "--task", help=field_help(F, "task")),
    model: str | None = typer.Option(None, "--model", help=field_help(F, "model")),
    rung: str | None = typer.Option(None, "--rung", help=field_help(F, "rung")),
    margin: float | None = typer.Option(None, "--margin", help=field_help(F, "margin")),
    out: Path | None = typer.Option(None, "--out", help=field_help(F, "out")),
    json_out: bool = typer.Option(False, "--json", help=field_help(F, "json_out")),
) -> None:
    """Gate a new run against a baseline on the same records: exit 1 on a significant
    regression beyond the task's gate.margin (paired bootstrap), 0 otherwise."""
    from ladder.climb.gate import compare_runs, find_run, pick_spec, run_now
    from ladder.climb.task import load_task

    if margin is not None and margin < 0:
        raise ConfigError(f"--margin {margin}: must be 0 or more")
    if (new is None) == (model is None):
        raise ConfigError("ladder check: give the new run as a folder, or --task and --model")
    if model is not None and task is None:
        raise ConfigError("--model needs --task: the task whose rung runs on the model")
    base = find_run(baseline, rung, what="--baseline")
    loaded = load_task(task) if task is not None else None
    if loaded is not None and model is not None:
        folder = out or Path("runs") / f"check-{loaded.spec.name}"
        say = (lambda _line: None) if json_out else (lambda line: err_console.print(line))
        fresh = run_now(loaded, model, rung, folder, say)
    else:
        assert new is not None  # checked above
        fresh = find_run(new, rung, what="new run")
    result = compare_runs(base, fresh, pick_spec([base, fresh], loaded), margin=margin)
    if json_out:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        verdict = "FAIL" if result.failed else "pass"
        # Plain lines, never wrapped: a CI log is read and grepped whole.
        typer.echo(f"{verdict}: {result.reason()}")
        typer.echo(result.flips.summary())
        for flip in result.flips.broken[:10]:
            typer.echo(f"  broken {flip.id}: {flip.input!r} — {flip.before} → {flip.after}")
    if model is not None:
        atomic_write_text(fresh.folder / "check.json", json.dumps(result.to_json(), indent=2))
    raise typer.Exit(result.exit_code)
