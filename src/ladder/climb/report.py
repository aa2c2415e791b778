"""The climb's report: one self-contained HTML file (inline SVG, no network) and a rich table.

The page holds the recommendation and why, the leaderboard, the cheaper variants of the
recommended rung (:mod:`ladder.climb.optimise`), three plots drawn as inline SVG — score
per rung with its CI bar and the good-enough line, quality against cost with the Pareto
frontier (variants as hollow diamonds), the training loss of every fine-tuning rung — and
example predictions, right and wrong, per rung, and the per-item flips between rungs
(:mod:`ladder.climb.flips`); after a ``ladder climb --plan`` into the same folder, the
planned time, memory and cost beside the measured (:mod:`ladder.climb.plan_report`).
Every number sits in a row that names the tracker run it came from (``run`` column); the
footer names the parent run, the task fingerprint and the data hashes. A few lines of
inline JavaScript mark each plot that laid out with a non-empty box (``data-rendered``), so
a headless browser can check it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ladder.climb.flips import climb_flips, flips_html
from ladder.climb.plan import read_plan
from ladder.climb.plan_report import plan_vs_measured_html
from ladder.climb.report_datacheck import datacheck_section
from ladder.climb.report_plots import frontier_plot, loss_plot, pareto_front, score_plot
from ladder.climb.report_tables import e as _e
from ladder.climb.report_tables import fmt as _fmt
from ladder.climb.report_tables import (
    judge_cell,
    run_cell,
    terminal_table,
    variants_html,
    variants_table,
)
from ladder.climb.report_tables import mib as _mib
from ladder.fsutil import atomic_write_text

if TYPE_CHECKING:
    from ladder.climb.climb import ClimbResult
    from ladder.climb.record import Row

__all__ = ["pareto_front", "render_html", "terminal_table", "variants_table", "write_report"]


def write_report(result: ClimbResult, path: Path) -> Path:
    """Write the HTML report of ``result`` to ``path`` (atomically); returns the path."""
    atomic_write_text(path, render_html(result))
    return path


def render_html(result: ClimbResult) -> str:
    """The whole page as one string."""
    spec = result.task.spec
    rows = [r for r in result.rows if r.done]
    rec = result.recommendation
    head = f"Recommendation: {rec.rung} on {rec.model}" if rec else "No rung is good enough yet"
    parts = [
        f"<h1>ladder climb: {_e(spec.name)}</h1>",
        f"<p class='desc'>{_e(spec.description)}</p>",
        f"<section id='recommendation'><h2>{_e(head)}</h2><p>{_e(result.why)}</p>",
        f"<p>{_e(result.stopped)}</p></section>" if result.stopped else "</section>",
        "<h2>Leaderboard</h2>",
        _leaderboard(result.rows),
    ]
    plan = read_plan(result.out, result.task.fingerprint())
    if plan is not None:  # a ladder climb --plan made into this folder
        parts += ["<h2>Plan against measured</h2>", plan_vs_measured_html(plan, result.rows)]
    if result.variants:
        parts += ["<h2>Cheaper variants</h2>", variants_html(result)]
    variants = [v for v in result.variants if v.status == "done"]
    parts += [
        "<h2>Score per rung</h2>",
        score_plot(rows, spec.good_enough, spec.metric_name()),
        "<h2>Quality against cost</h2>",
        frontier_plot(rows, spec.metric_name(), variants),
    ]
    losses = [r for r in rows if r.training.losses]
    if losses:
        parts += ["<h2>Training loss of the fine-tuning rungs</h2>", loss_plot(losses)]
    parts += datacheck_section(result.out)  # what the data checks found before the climb
    parts += ["<h2>Example predictions</h2>", _examples(rows)]
    parts += ["<h2>Per-item flips</h2>", flips_html(climb_flips(result.rows, rec))]
    runs = (
        f"climb run {_e(result.run_id)}; each row's run holds its params (rung settings, "
        "template version, data sha256), metrics and artifacts (predictions, resolved task)"
        if result.run_id
        else "not tracked: pass --track (or set LADDER_TRACKING_URI) to record runs"
    )
    judged = (
        ""
        if result.judge is None
        else f"judge column: {_e(result.judge.key)} (verdicts in each rung's judgments.jsonl); "
    )
    parts.append(
        f"<p class='foot' id='provenance'>Metric {_e(spec.metric_name())}, "
        f"{_e(spec.confidence)} bootstrap CIs ({_e(spec.resamples)} resamples, seed "
        f"{_e(spec.seed)}); task fingerprint {_e(result.task.fingerprint())}; data sha256 "
        f"{_e(json.dumps(result.task.data_hashes))}; {runs}; {judged}resolved task: "
        f"{_e(result.out / 'task.resolved.yaml')}</p>"
    )
    return _PAGE.format(title=_e(f"ladder climb: {spec.name}"), body="\n".join(parts))


def _leaderboard(rows: Sequence[Row]) -> str:
    judged = any(r.judge is not None for r in rows)
    cells = [
        "rung",
        "model",
        "metric",
        "value",
        "95% CI",
        *(["judge [95% CI]"] if judged else []),
        "vs below",
        "cost $",
        "p50 s",
        "p95 s",
        "peak mem",
        "good enough",
        "run",
    ]
    out = ["<table class='board'><tr>" + "".join(f"<th>{c}</th>" for c in cells) + "</tr>"]
    for r in rows:
        run = run_cell(r.provenance.run_id)
        if not r.done:
            out.append(
                f"<tr class='skipped'><td>{_e(r.rung)}</td><td>{_e(r.model)}</td>"
                f"<td colspan='{len(cells) - 3}'>skipped: {_e(r.verdict.reason)}</td>{run}</tr>"
            )
            continue
        s, t = r.score, r.timing
        vs = _vs_below(r)
        values = [
            r.rung,
            r.model,
            s.metric,
            _fmt(s.value),
            f"[{_fmt(s.ci_low)}, {_fmt(s.ci_high)}]",
            *([judge_cell(r)] if judged else []),
            vs,
            f"{r.cost.usd:.6f}",
            _fmt(t.latency_p50, 4),
            _fmt(t.latency_p95, 4),
            _mib(r.memory.peak_bytes),
            "yes" if r.verdict.good_enough else "no",
        ]
        css = "good" if r.verdict.good_enough else "plain"
        out.append(
            f"<tr class='{css}' title='{_e(r.verdict.reason)}'>"
            + "".join(f"<td>{_e(v)}</td>" for v in values)
            + run
            + "</tr>"
        )
    return "\n".join(out) + "</table>"


def _vs_below(r: Row) -> str:
    """The paired test against the rung below: difference, p, and the honest call with the
    minimum detectable effect (rows from before the calls show only the first two)."""
    b = r.below
    if b is None:
        return "–"
    cell = f"{b.delta:+.3f} (p={b.p_value:.3f})"
    if not b.call:
        return cell
    need = f", need n={b.needed_n}" if b.call == "too small to tell" else ""
    return f"{cell} {b.call}, MDE {b.mde or 0.0:.3f}{need}"


def _examples(rows: Sequence[Row], per_kind: int = 3) -> str:
    from ladder.climb.state import predictions_of

    out = []
    for r in rows:
        preds = predictions_of(r)
        right = [p for p in preds if p["score"] >= 1.0][:per_kind]
        wrong = [p for p in preds if p["score"] < 1.0][:per_kind]
        out.append(
            f"<h3>{_e(r.rung)} on {_e(r.model)}</h3><table class='examples'>"
            "<tr><th></th><th>input</th><th>reference</th><th>prediction</th></tr>"
        )
        for mark, items in (("right", right), ("wrong", wrong)):
            for p in items:
                out.append(
                    f"<tr class='{mark}'><td>{mark}</td><td>{_e(_cut(p['input']))}</td>"
                    f"<td>{_e(p['reference'])}</td><td>{_e(_cut(p['prediction']))}</td></tr>"
                )
        out.append("</table>")
    return "\n".join(out)


def _cut(text: str, n: int = 240) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }}
td, th {{ border: 1px solid #ccc; padding: 3px 7px; text-align: left; }}
tr.good td, tr.keeps td {{ background: #e8f5e9; }} tr.skipped td {{ color: #888; }}
tr.right td:first-child {{ color: #2ca02c; }} tr.wrong td:first-child {{ color: #d62728; }}
#recommendation {{ border-left: 4px solid #2ca02c; padding: 0.2em 1em; background: #f6fff6; }}
svg.plot {{ border: 1px solid #eee; display: block; margin-bottom: 1em; }}
.foot {{ color: #777; font-size: 12px; }}
</style></head><body>
{body}
<script>
document.addEventListener("DOMContentLoaded", function () {{
  // A plot counts as drawn when every data mark (bar, point, curve) has a non-empty box.
  var plots = document.querySelectorAll("svg.plot");
  var drawn = 0;
  plots.forEach(function (svg) {{
    var marks = svg.querySelectorAll(".mark");
    var visible = 0;
    marks.forEach(function (m) {{
      var box = m.getBBox();
      if (box.width > 0 || box.height > 0) {{ visible += 1; }}
    }});
    var expected = parseInt(svg.getAttribute("data-marks"), 10);
    if (visible === expected && expected > 0) {{
      svg.setAttribute("data-rendered", "yes");
      drawn += 1;
    }}
  }});
  document.body.setAttribute("data-plots", plots.length + "/" + drawn);
}});
</script>
</body></html>
"""
