"""``ladder synth``: grow a fine-tuning dataset from seed tasks (self-instruct)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ladder.cli._common import ENGINE_HELP, build, config_option, console, engine_spec, err_console
from ladder.data.synth.config import SynthConfig

__all__ = ["S", "synth"]

S = SynthConfig


def synth(
    seeds: str = config_option(S, "seeds", "--seeds"),
    model: str = config_option(S, "model", "--model"),
    out: str = config_option(S, "out", "--out"),
    n: int = config_option(S, "n", "--n"),
    seed: int = config_option(S, "seed", "--seed"),
    batch_size: int = config_option(S, "batch_size", "--batch-size"),
    tasks_per_prompt: int = config_option(S, "tasks_per_prompt", "--tasks-per-prompt"),
    examples_per_prompt: int = config_option(S, "examples_per_prompt", "--examples-per-prompt"),
    max_rounds: int = config_option(S, "max_rounds", "--max-rounds"),
    rouge_threshold: float = config_option(S, "rouge_threshold", "--rouge-threshold"),
    data_format: str = config_option(S, "format", "--format"),
    temperature: float = config_option(S, "temperature", "--temperature"),
    max_tokens: int = config_option(S, "max_tokens", "--max-tokens"),
    cache: bool = config_option(S, "cache", "--cache/--no-cache"),
    resume: bool = config_option(S, "resume", "--resume"),
    engine: str = typer.Option("ladder", "--engine", help=ENGINE_HELP),
) -> None:
    """Grow a dataset from a few seed tasks with any model as the generator (self-instruct)."""
    cfg = build(
        SynthConfig,
        seeds=seeds,
        model=engine_spec(model, engine),
        out=out,
        n=n,
        seed=seed,
        batch_size=batch_size,
        tasks_per_prompt=tasks_per_prompt,
        examples_per_prompt=examples_per_prompt,
        max_rounds=max_rounds,
        rouge_threshold=rouge_threshold,
        format=data_format,
        temperature=temperature,
        max_tokens=max_tokens,
        cache=cache,
        resume=resume,
    )
    from ladder.data.synth.run import synthesize

    with _round_progress(cfg.n, cfg.max_rounds) as progress:
        result = synthesize(cfg, progress=progress)
    if result.resumed_from_round:
        console.print(f"Resumed after round {result.resumed_from_round}.")
    _print_report(result.report)
    console.print(f"Wrote {result.paths.out} and {result.paths.report}")
    if result.report["kept"] < cfg.n:
        err_console.print(
            f"[yellow]warning:[/] kept {result.report['kept']} of {cfg.n} after "
            f"{result.report['rounds']} rounds; see the report, then run again with --resume "
            "and a larger --max-rounds"
        )


@contextlib.contextmanager
def _round_progress(n: int, max_rounds: int) -> Iterator[Callable[[int, int], None] | None]:
    """One bar for the run (tasks kept of ``n``, rounds done), gone when it ends.

    A line per round said "kept 0" fifty times when a generator was poor. Off a terminal
    (a log file, a pipe) there is no bar at all: the report that follows says it all.
    """
    if not err_console.is_terminal:
        yield None
        return
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("kept, round {task.fields[rounds]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    with bar:
        task = bar.add_task("self-instruct", total=n, rounds=f"0/{max_rounds}")
        yield lambda rounds, kept: bar.update(
            task, completed=min(kept, n), rounds=f"{rounds}/{max_rounds}"
        )


def _print_report(report: dict[str, Any]) -> None:
    table = Table(title="self-instruct: what was kept and why the rest was dropped")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    table.add_column("example", overflow="fold")  # an excerpt; a long word folds
    examples = report["examples"]
    first_kept = examples["kept"][0]["instruction"] if examples["kept"] else ""
    table.add_row("kept", str(report["kept"]), _short(first_kept))
    for reason, count in report["dropped"].items():
        if count:
            shown = examples.get(reason) or [{"detail": ""}]
            table.add_row(f"dropped: {reason}", str(count), _short(shown[0]["detail"]))
    console.print(table)
    console.print(
        f"{report['judged']} tasks judged from {report['prompts']} prompts in "
        f"{report['rounds']} rounds ({report['stopped']})."
    )


def _short(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
