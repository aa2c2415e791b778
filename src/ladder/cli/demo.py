"""``ladder demo``: the ladder on two example tasks with the built-in model, from scratch.

On a fresh machine it trains ``builtin:tiny`` (first run only, ~3 minutes on 2 cores),
then climbs ``examples/tagger`` (extract model names as a JSON list) and ``examples/rag-qa``
(questions about a knowledge base of invented facts) with it, every rung (``--all``). Each
task's generator writes its data when it is missing. It prints each leaderboard, the
recommendation and where the HTML report is (which shows the plan made before each climb,
from short probes, beside what every rung measured, and the per-item flips between rungs),
then one closing summary (per task: the
recommended rung, its score and CI, the report) and where the runs are tracked. The lesson, with
real numbers: a 1.4M-parameter model is useless when only prompted, and fine-tuning (or
retrieval, with a model that can read) is what makes it work.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from pydantic import BaseModel, Field

from ladder.cli._common import console, err_console, field_help
from ladder.errors import ConfigError

if TYPE_CHECKING:
    from ladder.climb.climb import ClimbResult

__all__ = ["DEMO_TASKS", "DemoConfig", "demo", "resolve_task", "summary_lines", "tracking_uri"]

DEMO_TASKS = ("examples/tagger/task.yaml", "examples/rag-qa/task.yaml")
_CHECKOUT = Path(__file__).resolve().parents[3]  # the source tree of an editable install


class DemoConfig(BaseModel):
    """The demo's settings."""

    preset: str = Field(
        "tiny", description="Built-in model to train (first run only) and climb with."
    )
    task: list[Path] = Field(
        default_factory=lambda: [Path(t) for t in DEMO_TASKS],
        description="Task file to climb (repeat for several); default: the tagger and "
        "rag-qa examples.",
    )
    out: Path = Field(
        Path("runs/demo"),
        description="Folder for the climbs' results (OUT/climb-TASKNAME); a demo run "
        "replaces the previous demo's results there.",
    )
    track: str | None = Field(
        None,
        description="Tracking URI; default $LADDER_TRACKING_URI, else the MLflow store "
        "ladder-runs.db in the current folder.",
    )


def resolve_task(path: Path) -> Path:
    """``path`` as given, else inside ladder's source checkout (for ``make demo``).

    Raises:
        ConfigError: neither exists.
    """
    for candidate in (path, _CHECKOUT / path):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"--task {path}: no such task file; run the demo from the ladder checkout or pass "
        "--task PATH/task.yaml"
    )


def tracking_uri(flag: str | None) -> str:
    """The flag, else ``$LADDER_TRACKING_URI``, else the MLflow store in this folder."""
    from ladder.track import default_tracking_uri

    return flag or default_tracking_uri()


def demo(
    preset: str = typer.Option("tiny", help=field_help(DemoConfig, "preset")),
    task: list[Path] | None = typer.Option(None, "--task", help=field_help(DemoConfig, "task")),
    out: Path = typer.Option(Path("runs/demo"), "--out", help=field_help(DemoConfig, "out")),
    track: str | None = typer.Option(None, "--track", help=field_help(DemoConfig, "track")),
) -> None:
    """Train the built-in model if needed, then climb the tagger and rag-qa examples with it."""
    from ladder.cli.climb import print_result
    from ladder.climb.climb import ClimbOptions, climb
    from ladder.climb.plan import make_plan, write_plan
    from ladder.climb.plan_report import plan_summary
    from ladder.climb.task import load_task
    from ladder.models import builtin

    tasks = [resolve_task(t) for t in (task or [Path(t) for t in DEMO_TASKS])]
    started = time.perf_counter()
    if builtin.is_trained(preset):
        console.print(f"[dim]builtin:{preset} is cached at {builtin.builtin_path(preset)}[/]")
    else:
        console.print(f"[bold]Training builtin:{preset}[/] (first run only; it is cached after)")
        from ladder.train.pretrain_run import train_builtin

        train_builtin(preset, progress=True)
    uri = tracking_uri(track)
    results: list[ClimbResult] = []
    for file in tasks:
        name = file.stem if file.stem != "task" else file.parent.name
        folder = out / f"climb-{name}"
        command = f"ladder climb {file} --all --model builtin:{preset} --out {folder} --overwrite"
        console.print(f"\n{command}", style="bold", markup=False)
        options = ClimbOptions(
            out=folder,
            all_rungs=True,
            overwrite=True,
            models=[f"builtin:{preset}"],
            tracking_uri=uri,
            log=lambda line: err_console.print(f"[dim]{line}[/]"),
        )
        # The plan first (a few records and steps per rung), so the report shows it beside
        # what each rung then measured.
        plan = make_plan(load_task(file), options.models, log=options.log)
        write_plan(folder, plan)
        result = climb(file, options)
        print_result(result, times=True)
        console.print(f"Plan: {plan_summary(plan, result.rows)}", markup=False)
        console.print(f"Report: {result.report}", markup=False)
        results.append(result)
    seconds = time.perf_counter() - started
    console.print(f"\nSummary (demo done in {seconds:.0f} s)", style="bold", markup=False)
    for line in summary_lines(results):
        console.print(line, markup=False)
    console.print(f"Runs tracked in: {uri}", markup=False)
    console.print("  list them: ladder runs; browse them: ladder ui", markup=False)
    console.print("Next: point a climb at a real model, e.g. ladder climb TASK --model hf:/path")


def summary_lines(results: Sequence[ClimbResult]) -> list[str]:
    """The demo's closing summary: per task, the recommended rung, its score with the 95% CI
    and the report's path (without a recommendation, the best-scoring rung, marked so).

    One short line per fact, so an 80-column terminal shows each whole.
    """
    from ladder.climb.report_tables import fmt

    lines = []
    for result in results:
        rec = result.recommendation
        done = [r for r in result.rows if r.done and r.score.value is not None]
        best = rec or max(done, key=lambda r: r.score.value or 0.0, default=None)
        name = result.task.spec.name
        if best is None:
            lines.append(f"  {name}: no rung finished")
        else:
            s = best.score
            verdict = "recommended" if rec else "nothing good enough; the best is"
            lines.append(f"  {name}: {verdict} {best.rung} ({best.model})")
            ci = f"[{fmt(s.ci_low)}, {fmt(s.ci_high)}]"
            lines.append(f"    {s.metric} {fmt(s.value)}, 95% CI {ci}")
        lines.append(f"    report: {result.report}")
    return lines
