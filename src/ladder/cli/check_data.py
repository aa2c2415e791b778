"""``ladder check-data``: a task's data checked before a climb (what every climb runs first)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ladder.cli._common import console

if TYPE_CHECKING:
    from ladder.climb.datacheck import DataReport

__all__ = ["check_data"]

_SHOWN = 10  # leaked and duplicate records listed in the terminal (--json has them all)


def check_data(
    task: Path = typer.Argument(..., help="The task file (task.yaml)."),
    model: list[str] | None = typer.Option(
        None, "--model", help="Model spec to check lengths with, replacing the task's models."
    ),
    splits_only: bool = typer.Option(
        False, "--splits-only", help="Check the splits only: no model is loaded, no lengths."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Folder for datacheck.json (default: the climb's, runs/climb-TASKNAME).",
    ),
) -> None:
    """Check a task's data: leakage between splits, duplicates, labels, prompts the models'
    context would cut, and one record per rung as the model sees it and is trained on it.

    Exit 2 with one line when a rule the task's ``checks:`` makes an error is breached."""
    from ladder.climb.datacheck import DATACHECK_FILE, raise_on_errors, write_report
    from ladder.climb.datacheck_prompts import run_data_checks
    from ladder.climb.task import load_task

    loaded = load_task(task)
    models = [] if splits_only else (model or loaded.spec.models)
    report = run_data_checks(loaded, models)
    folder = out or Path("runs") / f"climb-{task.stem if task.stem != 'task' else task.parent.name}"
    written = write_report(report, folder / DATACHECK_FILE)
    if json_out:
        typer.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        _print(report)
        console.print(f"Written: {written}", markup=False)
    raise_on_errors(report)


def _print(report: DataReport) -> None:
    from rich.table import Table

    sizes = ", ".join(f"{k} {v}" for k, v in report.splits.items())
    console.print(f"ladder check-data: {report.task} ({sizes} records)", style="bold")
    for f in report.findings:
        colour = "red" if f.action == "error" else "yellow"
        console.print(f"[{colour}]{f.action}[/{colour}] ", end="")
        console.print(f.message, markup=False)
    if not report.findings:
        console.print("[green]no rule breached[/green]")
    if report.leakage:
        table = Table(title=f"leakage ({len(report.leakage)} records)")
        for col in ("split", "record", "repeats", "kind", "similarity"):
            table.add_column(col)
        for e in report.leakage[:_SHOWN]:
            other = f"{e['other_split']} {e['other_record']}"
            table.add_row(e["split"], e["record"], other, e["kind"], f"{e['similarity']:.2f}")
        console.print(table)
    if report.duplicates:
        table = Table(title=f"duplicates within a split ({len(report.duplicates)} records)")
        for col in ("split", "record", "repeats", "other reference"):
            table.add_column(col)
        for d in report.duplicates[:_SHOWN]:
            table.add_row(d["split"], d["record"], d["first"], "yes" if d["conflicting"] else "")
        console.print(table)
    _labels(report)
    _lengths(report)
    for example in report.examples:
        _example(example)


def _labels(report: DataReport) -> None:
    from rich.table import Table

    from ladder.climb.datacheck import commonest_shares

    table = Table(title="references per split (commonest first, share of the split)")
    table.add_column("split")
    table.add_column("distinct", justify="right")
    table.add_column("commonest", overflow="fold")
    for split, counts in report.labels.items():
        distinct = report.distinct_references[split]
        top = commonest_shares(counts, report.splits[split], distinct, width=30)
        table.add_row(split, str(distinct), top)
    console.print(table)


def _lengths(report: DataReport) -> None:
    from rich.table import Table

    if not report.lengths:
        return
    table = Table(title="prompt and training lengths (tokens)")
    for col in ("model", "rung", "prompt", "context", "longest", "test cut"):
        table.add_column(col, overflow="fold" if col == "model" else "ellipsis")
    for col in ("max_seq_len", "longest train", "train cut"):
        table.add_column(col, justify="right")
    for r in report.lengths:
        table.add_row(
            r["model"],
            r["rung"],
            r["prompt"],
            str(r["context"] or "–"),
            str(r["longest_prompt"]),
            f"{r['test_cut']}/{r['test_records']}",
            str(r["max_seq_len"] or "–"),
            str(r["longest_train"] or "–"),
            f"{r['train_cut']}/{r['train_records']}" if r["max_seq_len"] else "–",
        )
    console.print(table)


def _example(example: dict[str, Any]) -> None:
    head = f"{example['rung']} on {example['model']}"
    console.print(f"\n{head}: the first test prompt as the model sees it", style="bold")
    console.print(example["seen"], markup=False, highlight=False)
    if "loss_mask" in example:
        console.print(
            f"{head}: train record {example['train_record']} as trained "
            "([reverse]highlighted[/reverse]: the tokens the loss is on)",
            style="bold",
        )
        for run in example["loss_mask"]:
            style = "reverse" if run["trained"] else ""
            console.print(run["text"], style=style, end="", markup=False, highlight=False)
        console.print()
