"""How ``ladder runs`` shows runs: a table when it fits the terminal, else a stacked list.

Run ids are what a user copies into ``ladder runs --compare``, so they are always shown
whole: a layout that would have to cut one gives way to one that does not.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ladder.track import RunRow

KEY_METRICS = 3  # metrics shown per run in the list


def print_runs(console: Console, rows: list[RunRow], uri: str) -> None:
    """The run list: one table row per run, or, when that is wider than the terminal, a
    block of lines per run (children indented under their parent)."""
    table = _list_table(rows, uri)
    unbounded = console.options.update(max_width=1_000_000)  # its natural width, not capped
    if console.measure(table, options=unbounded).maximum <= console.width:
        console.print(table)
        return
    console.print(f"runs in {uri}", markup=False, highlight=False)
    for row in rows:
        pad = "  " * row.depth + ("└ " if row.depth else "")
        more = "  " * row.depth + ("  " if row.depth else "") + "  "
        console.print(Text(pad + row.name, style="bold"))
        console.print(f"{more}id {row.run_id}", markup=False, highlight=False)
        facts = [row.experiment, row.status, _start(row), _duration(row)]
        console.print(more + " · ".join(f for f in facts if f), markup=False, highlight=False)
        if metrics := _metrics_text(row):
            console.print(more + metrics, markup=False, highlight=False)


def print_compared(console: Console, rows: list[RunRow]) -> None:
    """The compared runs, numbered with their full ids, then their params and metrics in
    one column per run (values wrap rather than being cut)."""
    for number, row in enumerate(rows, 1):
        console.print(f"[{number}] {row.name}  {row.run_id}", markup=False, highlight=False)
    table = Table(title="compare", title_justify="left")
    table.add_column("", overflow="fold")
    for number, row in enumerate(rows, 1):
        table.add_column(f"[{number}] {row.name}", overflow="fold")
    for key in sorted({k for r in rows for k in r.params}):
        table.add_row(f"param {key}", *(r.params.get(key, "-") for r in rows))
    for key in sorted({k for r in rows for k in r.metrics}):
        table.add_row(f"metric {key}", *(_num(r.metrics.get(key)) for r in rows))
    console.print(table)


def _list_table(rows: list[RunRow], uri: str) -> Table:
    table = Table(title=f"runs in {uri}", title_justify="left")
    for column in ("run", "id", "experiment", "status", "start", "duration", "key metrics"):
        table.add_column(column, justify="right" if column == "duration" else "left")
    for row in rows:
        table.add_row(
            "  " * row.depth + ("└ " if row.depth else "") + row.name,
            row.run_id,
            row.experiment,
            row.status,
            _start(row) or "-",
            _duration(row) or "-",
            _metrics_text(row),
        )
    return table


def _start(row: RunRow) -> str:
    if not row.start_ms:
        return ""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(row.start_ms / 1000))


def _duration(row: RunRow) -> str:
    return "" if row.duration_s is None else f"{row.duration_s:.1f}s"


def _metrics_text(row: RunRow) -> str:
    """A few metrics: values before their CI ends, in name order."""
    main = sorted(k for k in row.metrics if not k.endswith((".ci_low", ".ci_high")))
    return ", ".join(f"{k}={_num(row.metrics[k])}" for k in main[:KEY_METRICS])


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
