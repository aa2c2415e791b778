"""The climb's report: one self-contained HTML file (inline SVG, no network) and a rich table.

The page holds the recommendation and why, the leaderboard, the cheaper variants of the
recommended rung (:mod:`ladder.climb.optimise`), three plots drawn as inline SVG — score
per rung with its CI bar and the good-enough line, quality against cost with the Pareto
frontier (variants as hollow diamonds), the training loss of every fine-tuning rung — and
example predictions, right and wrong, per rung. Every number sits in a row that names the
tracker run it came from (``run`` column); the footer names the parent run, the task
fingerprint and the data hashes. A few lines of inline JavaScript mark each plot that laid
out with a non-empty box (``data-rendered``), so a headless browser can check it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ladder.climb.report_tables import e as _e
from ladder.climb.report_tables import fmt as _fmt
from ladder.climb.report_tables import (
    judge_cell,
    run_cell,
    short,
    terminal_table,
    variants_html,
    variants_table,
)
from ladder.climb.report_tables import mib as _mib
from ladder.fsutil import atomic_write_text

if TYPE_CHECKING:
    from ladder.climb.climb import ClimbResult
    from ladder.climb.state import Row, Variant

__all__ = ["pareto_front", "render_html", "terminal_table", "variants_table", "write_report"]

W, H, PAD = 640, 300, 48
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def write_report(result: ClimbResult, path: Path) -> Path:
    """Write the HTML report of ``result`` to ``path`` (atomically); returns the path."""
    atomic_write_text(path, render_html(result))
    return path


def render_html(result: ClimbResult) -> str:
    """The whole page as one string."""
    spec = result.task.spec
    rows = [r for r in result.rows if r.status == "done"]
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
    if result.variants:
        parts += ["<h2>Cheaper variants</h2>", variants_html(result)]
    variants = [v for v in result.variants if v.status == "done"]
    parts += [
        "<h2>Score per rung</h2>",
        _score_plot(rows, spec.good_enough, spec.metric_name()),
        "<h2>Quality against cost</h2>",
        _frontier_plot(rows, spec.metric_name(), variants),
    ]
    losses = [r for r in rows if r.train_losses]
    if losses:
        parts += ["<h2>Training loss of the fine-tuning rungs</h2>", _loss_plot(losses)]
    parts += ["<h2>Example predictions</h2>", _examples(rows)]
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


def _el(tag: str, text: str = "", **attrs: Any) -> str:
    """An SVG/HTML element with every attribute quoted and escaped (``class_`` → class)."""
    names = " ".join(f'{k.rstrip("_").replace("_", "-")}="{_e(v)}"' for k, v in attrs.items())
    return f"<{tag} {names}>{text}</{tag}>"


def _leaderboard(rows: Sequence[Row]) -> str:
    judged = any(r.judge_key for r in rows)
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
        if r.status != "done":
            out.append(
                f"<tr class='skipped'><td>{_e(r.rung)}</td><td>{_e(r.model)}</td>"
                f"<td colspan='{len(cells) - 3}'>skipped: {_e(r.reason)}</td>"
                f"{run_cell(r.run_id)}</tr>"
            )
            continue
        vs = "–"
        if r.p_value_vs_below is not None and r.delta_vs_below is not None:
            vs = f"{r.delta_vs_below:+.3f} (p={r.p_value_vs_below:.3f})"
        values = [
            r.rung,
            r.model,
            r.metric,
            _fmt(r.value),
            f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]",
            *([judge_cell(r)] if judged else []),
            vs,
            f"{r.cost:.6f}",
            _fmt(r.latency_p50, 4),
            _fmt(r.latency_p95, 4),
            _mib(r.peak_memory),
            "yes" if r.good_enough else "no",
        ]
        css = "good" if r.good_enough else "plain"
        out.append(
            f"<tr class='{css}' title='{_e(r.reason)}'>"
            + "".join(f"<td>{_e(v)}</td>" for v in values)
            + run_cell(r.run_id)
            + "</tr>"
        )
    return "\n".join(out) + "</table>"


def _svg(plot_id: str, body: list[str], marks: int, height: int = H) -> str:
    return _el(
        "svg",
        "".join(body),
        id=plot_id,
        class_="plot",
        xmlns="http://www.w3.org/2000/svg",
        width=W,
        height=height,
        viewBox=f"0 0 {W} {height}",
        role="img",
        data_marks=marks,
    )


def _score_plot(rows: Sequence[Row], good_enough: float, metric: str) -> str:
    if not rows:
        return "<p>No scored rung.</p>"
    top = max([1.0, good_enough, *[(r.ci_high or r.value or 0.0) for r in rows]])
    bar_h, left = 22, 200
    height = PAD + len(rows) * (bar_h + 8) + 20
    scale = (W - left - 20) / top
    body = []
    for i, r in enumerate(rows):
        y = PAD // 2 + i * (bar_h + 8)
        body.append(
            _el(
                "text",
                f"{_e(r.rung)} · {_e(short(r.model, 18))}",
                x=left - 6,
                y=y + 15,
                text_anchor="end",
                font_size=12,
            )
        )
        title = _el("title", f"{_e(r.rung)}: {_fmt(r.value)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]")
        body.append(
            _el(
                "rect",
                title,
                class_="mark",
                x=left,
                y=y,
                height=bar_h,
                width=f"{max(1.0, (r.value or 0) * scale):.1f}",
                fill="#2ca02c" if r.good_enough else "#1f77b4",
            )
        )
        if r.ci_low is not None and r.ci_high is not None:
            x0, x1, ym = left + r.ci_low * scale, left + r.ci_high * scale, y + bar_h / 2
            d = (
                f"M{x0:.1f},{ym} H{x1:.1f} M{x0:.1f},{y + 4} V{y + bar_h - 4} "
                f"M{x1:.1f},{y + 4} V{y + bar_h - 4}"
            )
            body.append(_el("path", d=d, class_="ci", stroke="#111", stroke_width=2, fill="none"))
    gx = left + good_enough * scale
    body.append(
        _el(
            "line",
            x1=f"{gx:.1f}",
            x2=f"{gx:.1f}",
            y1=8,
            y2=height - 24,
            stroke="#d62728",
            stroke_dasharray="5,4",
        )
    )
    body.append(
        _el(
            "text",
            f"good enough {good_enough}",
            x=f"{gx:.1f}",
            y=height - 8,
            font_size=11,
            text_anchor="middle",
            fill="#d62728",
        )
    )
    body.append(_el("text", _e(metric), x=left, y=height - 8, font_size=11))
    return _svg("plot-score", body, len(rows), height)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (cost no higher and value no lower, one
    of them strictly), sorted by cost: the quality-vs-cost frontier."""
    keep = []
    for i, (c, v) in enumerate(points):
        beaten = any((c2 <= c and v2 >= v) and (c2 < c or v2 > v) for c2, v2 in points)
        if not beaten:
            keep.append(i)
    return sorted(keep, key=lambda i: (points[i][0], points[i][1]))


def _frontier_plot(rows: Sequence[Row], metric: str, variants: Sequence[Variant] = ()) -> str:
    if not rows:
        return "<p>No scored rung.</p>"
    points = [(r.cost, r.value or 0.0) for r in rows]
    extra = [(v.cost, v.value or 0.0) for v in variants]
    max_cost = max(c for c, _ in points + extra) or 1.0
    top = max(1.0, *[v for _, v in points])

    def xy(c: float, v: float) -> tuple[float, float]:
        return PAD + c / max_cost * (W - 2 * PAD), H - PAD - v / top * (H - 2 * PAD)

    label = f"cost of the test split (US$, axis up to {max_cost:.6f})"
    if not any(c for c, _ in points):
        label = "cost: every rung cost $0 (set compute_hour_usd to price your own hardware)"
    body = [_axes(label, metric)]
    front = [xy(*points[i]) for i in pareto_front(points)]
    if len(front) > 1:
        d = " ".join(f"{'M' if k == 0 else 'L'}{x:.1f},{y:.1f}" for k, (x, y) in enumerate(front))
        body.append(
            _el("path", d=d, class_="frontier", fill="none", stroke="#ff7f0e", stroke_width=2)
        )
    for i, r in enumerate(rows):
        x, y = xy(*points[i])
        title = _el("title", f"{_e(r.rung)} on {_e(r.model)}: {_fmt(r.value)} at ${r.cost:.6f}")
        body.append(
            _el(
                "circle",
                title,
                class_="mark",
                cx=f"{x:.1f}",
                cy=f"{y:.1f}",
                r=6,
                fill=COLORS[i % len(COLORS)],
            )
        )
        body.append(_el("text", _e(r.rung), x=f"{x + 8:.1f}", y=f"{y - 8:.1f}", font_size=11))
    for v, (c, value) in zip(variants, extra, strict=True):
        x, y = xy(c, value)
        title = _el("title", f"variant {_e(v.name)}: {_fmt(v.value)} at ${v.cost:.6f}, {v.verdict}")
        body.append(
            _el(
                "path",
                title,
                class_="mark variant",
                d=f"M{x:.1f},{y - 7:.1f} l7,7 l-7,7 l-7,-7 Z",
                fill="none",
                stroke="#2ca02c" if v.keeps_quality else "#d62728",
                stroke_width=2,
            )
        )
    return _svg("plot-frontier", body, len(rows) + len(variants))


def _axes(x_label: str, y_label: str) -> str:
    return (
        _el("path", d=f"M{PAD},{PAD / 2} V{H - PAD} H{W - PAD / 2}", stroke="#444", fill="none")
        + _el("text", _e(x_label), x=W / 2, y=H - 12, font_size=12, text_anchor="middle")
        + _el(
            "text",
            _e(y_label),
            x=14,
            y=H / 2,
            font_size=12,
            text_anchor="middle",
            transform=f"rotate(-90 14 {H / 2})",
        )
    )


def _loss_plot(rows: Sequence[Row]) -> str:
    longest = max(len(r.train_losses) for r in rows)
    top = max(max(r.train_losses) for r in rows) or 1.0
    body = [_axes("training step", "training loss (nats/token)")]
    for i, r in enumerate(rows):
        pts = " ".join(
            f"{PAD + k / max(1, longest - 1) * (W - 2 * PAD):.1f},"
            f"{H - PAD - loss / top * (H - 2 * PAD):.1f}"
            for k, loss in enumerate(r.train_losses)
        )
        color = COLORS[i % len(COLORS)]
        title = _el(
            "title", f"{_e(r.rung)}: {len(r.train_losses)} steps, last {r.train_losses[-1]:.3f}"
        )
        body.append(
            _el(
                "polyline",
                title,
                class_="mark",
                points=pts,
                fill="none",
                stroke=color,
                stroke_width=2,
            )
        )
        body.append(
            _el(
                "text",
                f"{_e(r.rung)} · {_e(short(r.model))}",
                x=W - PAD,
                y=PAD / 2 + 14 * (i + 1),
                font_size=11,
                text_anchor="end",
                fill=color,
            )
        )
    return _svg("plot-loss", body, len(rows))


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
