"""``ladder prompt compare``: a matrix of models × templates × strategies on one dataset.

Each cell is an ordinary batch run (:func:`ladder.prompts.runner.run_records`) with its own
results file; the comparison adds one summary row per cell (``compare.jsonl``) and a
markdown page (``compare.md``) with the summary table and the answers side by side.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladder.fsutil import atomic_write_text
from ladder.models.base import LanguageModel
from ladder.prompts.runner import PromptRun, RunSummary, run_records

__all__ = ["Cell", "compare", "markdown"]


@dataclass
class Cell:
    """One model × run of the matrix, and where its rows are."""

    model: str
    run: PromptRun
    results: Path
    summary: RunSummary

    def row(self) -> dict[str, Any]:
        """The summary row written to ``compare.jsonl``."""
        score = self.summary.score or {}
        return {
            "model": self.model,
            "template": self.run.template.name,
            "template_version": self.run.template.version,
            "strategy": self.summary.run.split("/", 1)[1],
            "metric": score.get("metric"),
            "value": score.get("value"),
            "ci_low": score.get("ci_low"),
            "ci_high": score.get("ci_high"),
            "rows": self.summary.rows,
            "prompt_tokens": self.summary.prompt_tokens,
            "completion_tokens": self.summary.completion_tokens,
            "cost_usd": self.summary.cost_usd,
            "latency_p50_s": self.summary.latency_p50_s,
            "latency_p95_s": self.summary.latency_p95_s,
            "results": str(self.results),
        }


def compare(
    models: Sequence[str],
    runs: Sequence[PromptRun],
    records: Sequence[Any],
    out_dir: str | Path,
    *,
    open_model: Callable[[str], LanguageModel],
    resume: bool = False,
    progress: Callable[[int], None] | None = None,
    show: int = 5,
) -> list[Cell]:
    """Run every run in ``runs`` with every model in ``models`` over ``records``.

    Args:
        models: Model specs; each is opened once with ``open_model`` and used for all runs.
        runs: Template + strategy combinations (:func:`ladder.prompts.runner.load_run`).
        records: The dataset.
        out_dir: Gets ``runs/*.jsonl`` (one results file per cell), ``compare.jsonl`` and
            ``compare.md``.
        open_model: Loads a spec (the CLI wraps it in the response cache).
        resume: Passed to each cell's run.
        progress: Called with the number of records finished, across all cells.
        show: Records shown side by side in ``compare.md``.
    """
    out = Path(out_dir)
    cells: list[Cell] = []
    for spec in models:
        model = open_model(spec)
        for run in runs:
            path = out / "runs" / f"{_slug(spec)}__{_slug(run.name)}.jsonl"
            summary = run_records(model, run, records, path, resume=resume, progress=progress)
            cells.append(Cell(spec, run, path, summary))
    rows = [cell.row() for cell in cells]
    atomic_write_text(out / "compare.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    atomic_write_text(out / "compare.md", markdown(cells, show=show))
    return cells


def markdown(cells: Sequence[Cell], *, show: int = 5) -> str:
    """The summary table and the first ``show`` records' answers side by side."""
    lines = ["# Prompt comparison", ""]
    lines += [
        "| model | template | strategy | score | 95% CI | tokens in/out | cost (USD) | p50 s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cell in cells:
        r = cell.row()
        value = "-" if r["value"] is None else f"{r['value']:.4g}"
        ci = "-" if r["ci_low"] is None else f"[{r['ci_low']:.3g}, {r['ci_high']:.3g}]"
        p50 = "-" if r["latency_p50_s"] is None else f"{r['latency_p50_s']:.3g}"
        lines.append(
            f"| {_cell(r['model'])} | {_cell(r['template'])}@{r['template_version']} "
            f"| {_cell(r['strategy'])} | {value} | {ci} "
            f"| {r['prompt_tokens']}/{r['completion_tokens']} | {r['cost_usd']:.4g} | {p50} |"
        )
    if not cells or show <= 0:
        return "\n".join(lines) + "\n"
    columns = [f"{c.model} · {c.run.template.name} · {c.row()['strategy']}" for c in cells]
    answers = [_rows(c.results)[:show] for c in cells]
    lines += ["", "## Answers side by side", ""]
    lines += ["| # | input | " + " | ".join(_cell(c) for c in columns) + " |"]
    lines += ["|---|---|" + "---|" * len(columns)]
    for i, first in enumerate(answers[0]):
        shown = [_cell(_answer(col[i]) if i < len(col) else "") for col in answers]
        text = _cell(" ".join(str(v) for v in first["input"].values()))
        lines.append(f"| {i + 1} | {text} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _answer(row: dict[str, Any]) -> str:
    return str(row["answer"] if row.get("answer") is not None else row.get("output", ""))


def _cell(text: str, limit: int = 80) -> str:
    flat = " ".join(str(text).split()).replace("|", "\\|")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:80] or "x"
