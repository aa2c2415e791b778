"""``ladder climb`` and ``ladder select``: the ladder on a task file, and model selection."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from pydantic import BaseModel, ConfigDict, Field

from ladder.cli._common import console, err_console, field_help
from ladder.fsutil import atomic_write_text

if TYPE_CHECKING:
    from ladder.climb.climb import ClimbResult
    from ladder.climb.plan import Bounds

__all__ = ["ClimbFlags", "climb", "print_plan", "print_result", "select"]


class ClimbFlags(BaseModel):
    """The options of ``ladder climb`` (their descriptions are its ``--help``)."""

    model_config = ConfigDict(extra="forbid")

    all_rungs: bool = Field(
        False, description="Run every rung, not only up to the first good-enough one."
    )
    plan: bool = Field(
        False,
        description="Do not climb: probe each rung on each model briefly and print the "
        "planned wall time, peak memory and cost (low / expected / high), written to "
        "OUT/plan.json; the report of the climb into OUT then shows them beside what it "
        "measured.",
    )
    json_out: Path | None = Field(
        None,
        description="Write the leaderboard to this JSON file: rows, recommendation, cheaper "
        "variants, run ids and data hashes.",
    )
    no_optimise: bool = Field(
        False,
        description="Do not try cheaper variants (smaller model, fewer shots, shorter prompt, "
        "int8, GGUF) of the recommended rung.",
    )
    resume: bool = Field(
        False,
        description="Keep the finished rungs of an earlier climb of the same task and data "
        "in --out and run only the rest.",
    )
    overwrite: bool = Field(
        False,
        description="Replace the earlier climb in --out: each rung's old outputs go as it "
        "runs again (other models' rungs stay). Without it, or --resume, a climb refuses a "
        "folder that holds one.",
    )
    out: Path | None = Field(
        None,
        description="Folder for state, predictions, checkpoints and "
        "the report (default: runs/climb-TASKNAME).",
    )
    model: list[str] | None = Field(
        None, description="Candidate model spec, replacing the task's models (repeat for several)."
    )
    judge: str | None = Field(
        None,
        description="Judge model spec (openai:MODEL@URL, hf:DIR): grade every rung's answers "
        "with it, a judge column next to the metric (replaces the task's judge.model; the "
        "task's judge section sets the rubric).",
    )
    engine: str | None = Field(
        None,
        description="What runs the models: ladder or vllm (local checkpoints served by vLLM; "
        "a LoRA rung answers with its adapter, unmerged); default: the task's engine field.",
    )
    track: str | None = Field(
        None,
        description="Tracking URI (sqlite:///runs.db, http://host:5000, jsonl:events.jsonl, "
        "or none); default $LADDER_TRACKING_URI, else ./ladder-runs.db (MLflow, SQLite).",
    )


F = ClimbFlags


def climb(
    task: Path = typer.Argument(..., help="The task file (task.yaml)."),
    all_rungs: bool = typer.Option(False, "--all", help=field_help(F, "all_rungs")),
    plan: bool = typer.Option(False, "--plan", help=field_help(F, "plan")),
    json_out: Path | None = typer.Option(None, "--json", help=field_help(F, "json_out")),
    resume: bool = typer.Option(False, "--resume", help=field_help(F, "resume")),
    overwrite: bool = typer.Option(False, "--overwrite", help=field_help(F, "overwrite")),
    out: Path | None = typer.Option(None, "--out", help=field_help(F, "out")),
    model: list[str] | None = typer.Option(None, "--model", help=field_help(F, "model")),
    track: str | None = typer.Option(None, "--track", help=field_help(F, "track")),
    no_optimise: bool = typer.Option(False, "--no-optimise", help=field_help(F, "no_optimise")),
    judge: str | None = typer.Option(None, "--judge", help=field_help(F, "judge")),
    engine: str | None = typer.Option(None, "--engine", help=field_help(F, "engine")),
) -> None:
    """Climb the ladder on a task: cheapest rung first, stop at the first good-enough one."""
    from ladder.climb.climb import ClimbOptions
    from ladder.climb.climb import climb as run_climb
    from ladder.track import default_tracking_uri

    track = track or default_tracking_uri()
    _train_builtins(task, model or [])
    folder = out or Path("runs") / f"climb-{task.stem if task.stem != 'task' else task.parent.name}"
    if plan:
        print_plan(task, model or (), folder)
        return
    options = ClimbOptions(
        out=folder,
        all_rungs=all_rungs,
        resume=resume,
        overwrite=overwrite,
        models=model or (),
        optimise=not no_optimise,
        tracking_uri=track,
        judge=judge,
        engine=engine,
        log=lambda line: err_console.print(f"[dim]{line}[/]"),
    )
    try:
        result = run_climb(task, options)
    except KeyboardInterrupt:
        # Finished rungs are saved after each one (and a fine-tuning rung's checkpoints).
        words = ["ladder", "climb", str(task), *(["--all"] if all_rungs else [])]
        words += [w for m in model or () for w in ("--model", m)]
        words += ["--judge", judge] if judge else []
        words += ["--engine", engine] if engine else []
        again = shlex.join([*words, "--out", str(folder), "--resume"])
        # One unwrapped line: the command must copy and paste whole.
        typer.echo(f"interrupted; the finished rungs are kept. Resume with: {again}", err=True)
        raise typer.Exit(130) from None
    print_result(result)
    _plan_line(result)
    if result.stopped:
        console.print(f"Stopped: {result.stopped}", markup=False)
    console.print(f"Report: {result.report}", markup=False)
    if track.strip().lower() != "none":
        console.print(f"Runs: {track} (list them: ladder runs; browse: ladder ui)", markup=False)
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(result.to_json(), indent=2) + "\n")
        console.print(f"Leaderboard: {json_out}", markup=False)


def _train_builtins(task: Path, models: list[str]) -> None:
    """Train the built-in models the climb will use that this machine does not have yet
    (a fresh LADDER_HOME), with a progress bar, instead of stopping on the model check."""
    from ladder.climb.task.schema import TaskSpec
    from ladder.config import load_yaml
    from ladder.errors import LadderError
    from ladder.models.builtin import untrained

    if not models:
        try:
            models = load_yaml(task, TaskSpec).models
        except LadderError:
            return  # the climb reports a bad task file in its own words
    if untrained(models):
        from ladder.train.pretrain_run import train_missing_builtins

        train_missing_builtins(models, log=lambda line: err_console.print(line, markup=False))


def print_plan(task: Path, models: Sequence[str], folder: Path) -> None:
    """Plan the climb (:mod:`ladder.climb.plan`), print it, and write ``folder/plan.json``."""
    from rich.table import Table

    from ladder.climb.plan import make_plan, write_plan
    from ladder.climb.task import load_task

    loaded = load_task(task)
    say = lambda line: err_console.print(f"[dim]{line}[/]")  # noqa: E731
    plan = make_plan(loaded, list(models) or loaded.spec.models, log=say)
    table = Table(title=f"plan: {loaded.spec.name} (low / expected / high)")
    for col in ("rung", "model", "wall s", "peak MiB", "cost $", "how"):
        table.add_column(col, overflow="fold")
    for p in plan.rungs:
        table.add_row(
            p.rung,
            p.model,
            _three(p.wall_s, "{:.1f}"),
            _three(p.peak_bytes, "{:.0f}", 2**20),
            _three(p.cost_usd, "{:.6f}"),
            p.note,
        )
    console.print(table)
    total = plan.total_wall_s()
    console.print(
        f"Every rung: {_three(total, '{:.0f}')} s (a climb stops at the first good-enough "
        "rung unless --all; cheaper variants are not planned)",
        markup=False,
    )
    console.print(f"Plan: {write_plan(folder, plan)}", markup=False)


def _three(bounds: Bounds | None, form: str, unit: float = 1.0) -> str:
    if bounds is None:
        return "–"
    return " / ".join(form.format(v / unit) for v in (bounds.low, bounds.expected, bounds.high))


def _plan_line(result: ClimbResult) -> None:
    """One line on how the climb's times compare with the plan in its folder, if any."""
    from ladder.climb.plan import read_plan
    from ladder.climb.plan_report import plan_summary

    plan = read_plan(result.out, result.task.fingerprint())
    if plan is not None:
        console.print(f"Plan: {plan_summary(plan, result.rows)}", markup=False)


def print_result(result: ClimbResult, *, times: bool = False) -> None:
    """The leaderboard, (with ``times``) each rung's seconds, the recommendation and why,
    and the cheaper variants: what ``ladder climb`` and ``ladder demo`` show of a climb."""
    from ladder.climb.report import terminal_table, variants_table

    console.print(terminal_table(result))
    if times:
        seconds = ", ".join(f"{r.rung} {r.timing.wall_s:.0f}s" for r in result.rows)
        console.print(f"Time per rung: {seconds}", markup=False)
    rec = result.recommendation
    headline = f"Recommendation: {rec.rung} on {rec.model}" if rec else "Nothing good enough yet"
    console.print(headline, style="bold", markup=False)
    console.print(result.why, markup=False)
    cheaper = variants_table(result)
    if cheaper is not None:
        console.print(cheaper)


def select(
    task: Path = typer.Argument(..., help="The task file (task.yaml)."),
    model: list[str] | None = typer.Option(None, "--model", help=field_help(F, "model")),
    out: Path | None = typer.Option(None, "--out", help="Folder for the dev-split predictions."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the table to this JSON file."),
) -> None:
    """Compare candidate models on the task's dev split: quality, tokens/s, memory, cost."""
    from rich.table import Table

    from ladder.climb.select import select_models

    found = select_models(
        task, out or Path("runs") / f"select-{task.parent.name}", models=model or ()
    )
    table = Table(title=f"ladder select: {task}")
    for col in ("model", "metric", "value", "95% CI", "tokens/s", "peak mem", "params", "cost $"):
        # A model spec (URL, path) folds in a narrow terminal; numbers stay whole.
        table.add_column(col, overflow="fold" if col == "model" else "ellipsis")
    for c in found:
        ci = "–" if c.ci_low is None else f"[{c.ci_low:.3f}, {c.ci_high:.3f}]"
        tps = "–" if c.tokens_per_s is None else f"{c.tokens_per_s:,.1f}"
        table.add_row(
            c.model,
            c.metric,
            f"{c.value:.3f}",
            ci,
            tps,
            f"{c.peak_memory / 2**20:,.0f} MiB",
            f"{c.parameters:,}" if c.parameters else "–",
            f"{c.cost:.6f}",
        )
    console.print(table)
    if json_out is not None:
        atomic_write_text(json_out, json.dumps([c.to_dict() for c in found], indent=2) + "\n")
