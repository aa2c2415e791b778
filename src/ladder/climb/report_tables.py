"""The climb's tables: the terminal leaderboard and variants (rich), the HTML variants table.

Small shared formatting helpers (:func:`fmt`, :func:`mib`, :func:`e`) live here so the HTML
page (:mod:`ladder.climb.report`) and the terminal print the same numbers the same way.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

    from ladder.climb.climb import ClimbResult
    from ladder.climb.record import Row, Variant

__all__ = [
    "cheapest_keeper",
    "e",
    "fmt",
    "judge_cell",
    "mib",
    "run_cell",
    "short",
    "size",
    "terminal_table",
    "variants_html",
    "variants_table",
]


def e(value: Any) -> str:
    """HTML-escaped text of ``value``."""
    return html.escape(str(value), quote=True)


def fmt(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` decimals, or an en dash for none."""
    return "–" if value is None else f"{value:.{digits}f}"


def mib(value: int) -> str:
    """Bytes as whole MiB, or an en dash for none."""
    return f"{value / 2**20:.0f} MiB" if value else "–"


def size(value: int) -> str:
    """A file size in MB (kB under one MB), or an en dash for none."""
    if not value:
        return "–"
    return f"{value / 1e6:.1f} MB" if value >= 1e6 else f"{value / 1e3:.0f} kB"


def short(model: str, n: int = 28) -> str:
    """A model spec cut to its last ``n`` characters."""
    return model if len(model) <= n else "…" + model[-(n - 1) :]


def pct(value: float | None) -> str:
    """A share as a signed percentage (a saving; negative: dearer)."""
    return "–" if value is None else f"{value:+.0%}"


def run_cell(run_id: str) -> str:
    """An HTML cell with a run id (its first 12 characters, the whole one as the title)."""
    if not run_id:
        return "<td class='run'>–</td>"
    return f"<td class='run' title='{e(run_id)}'><code>{e(run_id[:12])}</code></td>"


def cheapest_keeper(variants: list[Variant]) -> Variant | None:
    """The cheapest variant that keeps quality, when one is cheaper than the winner."""
    keepers = [v for v in variants if v.keeps_quality and (v.savings.cost or 0.0) > 0]
    return min(keepers, key=lambda v: v.cost.usd) if keepers else None


def _delta(v: Variant) -> str:
    d = v.difference
    if d is None:
        return "–"
    return f"{d.delta:+.3f} [{fmt(d.ci_low)}, {fmt(d.ci_high)}]"


def variants_html(result: ClimbResult) -> str:
    """The "Cheaper variants" section: what was tried on the recommended row, and verdicts."""
    rec = result.recommendation
    head = (
        f"<p>Variants of {e(rec.rung)} on {e(rec.model)} ({e(rec.score.metric)} "
        f"{fmt(rec.score.value)}, ${rec.cost.usd:.6f}), each compared with it on the same "
        f"test records by a paired bootstrap; the difference is variant − recommended with its "
        f"{e(result.task.spec.confidence)} CI.</p>"
        if rec
        else ""
    )
    best = cheapest_keeper(result.variants)
    if best is not None:
        head += (
            f"<p id='cheapest-variant'>Cheapest that keeps quality: <b>{e(best.name)}</b> "
            f"(saves {pct(best.savings.cost)} of the cost, {pct(best.savings.latency)} of the "
            "p50 latency).</p>"
        )
    cells = ["variant", "kind", "model", "value", "95% CI", "difference [CI]", "verdict"]
    cells += ["cost $", "cost saving", "p50 s", "latency saving", "tokens/s", "file", "run"]
    out = [head, "<table class='variants'><tr>" + "".join(f"<th>{c}</th>" for c in cells)]
    out[-1] += "</tr>"
    for v in result.variants:
        if v.status != "done":
            out.append(
                f"<tr class='skipped'><td>{e(v.name)}</td><td>{e(v.kind)}</td>"
                f"<td>{e(v.model)}</td><td colspan='11'>skipped: {e(v.reason)}</td></tr>"
            )
            continue
        values = [
            v.name,
            v.kind,
            v.model,
            fmt(v.score.value),
            f"[{fmt(v.score.ci_low)}, {fmt(v.score.ci_high)}]",
            _delta(v),
            v.verdict,
            f"{v.cost.usd:.6f}",
            pct(v.savings.cost),
            fmt(v.timing.latency_p50, 4),
            pct(v.savings.latency),
            fmt(v.timing.tokens_per_s, 1),
        ]
        css = "keeps" if v.keeps_quality else "drops"
        out.append(
            f"<tr class='{css}' title='{e(v.reason)}'>"
            + "".join(f"<td>{e(x)}</td>" for x in values)
            + f"<td class='file' title='{e(v.weights.path)}'>{e(size(v.weights.bytes))}</td>"
            + run_cell(v.provenance.run_id)
            + "</tr>"
        )
    return "\n".join(out) + "</table>"


def terminal_table(result: ClimbResult) -> Table:
    """The leaderboard as a rich table, for the terminal.

    Built to fit an 80-column terminal with every rung name and number on its row's line:
    what all rows share (the model, the metric) goes into the title instead of a column,
    the metric names the score column, and the table has no outer edge. Several models or
    metrics bring their columns back (a model spec folds; it never cuts).
    """
    from rich.table import Table

    done = [r for r in result.rows if r.done]
    models = {r.model for r in result.rows}
    metrics = {r.score.metric for r in done} or {result.task.spec.metric_name()}
    one_model, one_metric = len(models) == 1, len(metrics) == 1
    title = " · ".join(
        [
            f"ladder climb: {result.task.spec.name}",
            *([next(iter(models))] if one_model and models else []),
        ]
    )
    table = Table(title=title, show_edge=False)
    table.add_column("rung")
    if not one_model:
        table.add_column("model", overflow="fold")
    if not one_metric:
        table.add_column("metric", overflow="fold")
    judged = any(r.judge is not None for r in result.rows)
    # A skipped rung's reason sits in the score column, which folds it.
    table.add_column(next(iter(metrics)) if one_metric else "value", overflow="fold")
    for col in ("95% CI", *(["judge"] if judged else []), "cost $", "p50 s", "mem", "good"):
        table.add_column(col, justify="right", no_wrap=col == "95% CI")
    for r in result.rows:
        first = [r.rung, *([] if one_model else [r.model])]
        if not r.done:
            reason = r.verdict.reason
            skipped = f"skipped: {reason}" if reason else "skipped"
            blanks = len(table.columns) - len(first) - 1 - (0 if one_metric else 1)
            table.add_row(*first, *([] if one_metric else [""]), skipped, *[""] * blanks)
            continue
        s = r.score
        table.add_row(
            *first,
            *([] if one_metric else [s.metric]),
            fmt(s.value),
            f"[{fmt(s.ci_low)}, {fmt(s.ci_high)}]",
            *([judge_cell(r)] if judged else []),
            f"{r.cost.usd:.6f}",
            fmt(r.timing.latency_p50, 3),
            mib(r.memory.peak_bytes),
            "[green]yes[/green]" if r.verdict.good_enough else "no",
        )
    return table


def judge_cell(r: Row) -> str:
    """The judge column of a row: mean grade [CI] (valid verdicts), or why there is none."""
    j = r.judge
    if j is None:
        return "–"
    if j.value is None:
        return f"no valid verdict ({j.valid})"
    valid = "" if j.valid.split("/")[0] == j.valid.split("/")[-1] else f" {j.valid}"
    return f"{j.value:.2f} [{fmt(j.ci_low, 2)}, {fmt(j.ci_high, 2)}]{valid}"


def variants_table(result: ClimbResult) -> Table | None:
    """The cheaper variants as a rich table (None when none were tried)."""
    from rich.table import Table

    if not result.variants:
        return None
    rec = result.recommendation
    title = f"cheaper variants of {rec.rung} on {rec.model}" if rec else "cheaper variants"
    table = Table(title=title)
    cols = ("variant", "value", "difference [CI]", "verdict", "cost $", "saving", "p50 s")
    for col in (*cols, "tok/s", "size"):
        left = col in ("variant", "verdict")
        # Variant names hold model specs, and a skipped one's verdict its reason: they fold.
        table.add_column(
            col, justify="left" if left else "right", overflow="fold" if left else "ellipsis"
        )
    for v in result.variants:
        if v.status != "done":
            skipped = f"skipped: {v.reason}" if v.reason else "skipped"
            table.add_row(v.name, "", "", skipped, *[""] * 5)
            continue
        colour = "green" if v.keeps_quality else "red"
        table.add_row(
            v.name,
            fmt(v.score.value),
            _delta(v),
            f"[{colour}]{v.verdict}[/{colour}]",
            f"{v.cost.usd:.6f}",
            pct(v.savings.cost),
            fmt(v.timing.latency_p50, 4),
            fmt(v.timing.tokens_per_s, 1),
            size(v.weights.bytes),
        )
    return table
