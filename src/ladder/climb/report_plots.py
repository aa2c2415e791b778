"""The climb report's plots, drawn as inline SVG (no network, no plotting library).

Three plots: score per rung with its CI bar and the good-enough line
(:func:`score_plot`), quality against cost with the Pareto frontier and the cheaper
variants as hollow diamonds (:func:`frontier_plot`), and the training loss of every
fine-tuning rung (:func:`loss_plot`). Every data mark has the class ``mark`` and each plot
says how many it drew (``data-marks``), so the report's script can check they laid out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ladder.climb.report_tables import e as _e
from ladder.climb.report_tables import fmt as _fmt
from ladder.climb.report_tables import short

if TYPE_CHECKING:
    from ladder.climb.record import Row, Variant

__all__ = ["element", "frontier_plot", "loss_plot", "pareto_front", "score_plot"]

W, H, PAD = 640, 300, 48
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def element(tag: str, text: str = "", **attrs: Any) -> str:
    """An SVG/HTML element with every attribute quoted and escaped (``class_`` → class)."""
    names = " ".join(f'{k.rstrip("_").replace("_", "-")}="{_e(v)}"' for k, v in attrs.items())
    return f"<{tag} {names}>{text}</{tag}>"


def _svg(plot_id: str, body: list[str], marks: int, height: int = H) -> str:
    return element(
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


def score_plot(rows: Sequence[Row], good_enough: float, metric: str) -> str:
    """Score per rung: a bar per row with its CI whiskers, and the good-enough line."""
    if not rows:
        return "<p>No scored rung.</p>"
    top = max([1.0, good_enough, *[(r.score.ci_high or r.score.value or 0.0) for r in rows]])
    bar_h, left = 22, 200
    height = PAD + len(rows) * (bar_h + 8) + 20
    scale = (W - left - 20) / top
    body = []
    for i, r in enumerate(rows):
        body += _score_bar(r, PAD // 2 + i * (bar_h + 8), left, scale, bar_h)
    gx = left + good_enough * scale
    body.append(
        element(
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
        element(
            "text",
            f"good enough {good_enough}",
            x=f"{gx:.1f}",
            y=height - 8,
            font_size=11,
            text_anchor="middle",
            fill="#d62728",
        )
    )
    body.append(element("text", _e(metric), x=left, y=height - 8, font_size=11))
    return _svg("plot-score", body, len(rows), height)


def _score_bar(r: Row, y: int, left: int, scale: float, bar_h: int) -> list[str]:
    """One row of the score plot at height ``y``: label, bar and CI whiskers."""
    s = r.score
    label = f"{_e(r.rung)} · {_e(short(r.model, 18))}"
    marks = [element("text", label, x=left - 6, y=y + 15, text_anchor="end", font_size=12)]
    title = element("title", f"{_e(r.rung)}: {_fmt(s.value)} [{_fmt(s.ci_low)}, {_fmt(s.ci_high)}]")
    marks.append(
        element(
            "rect",
            title,
            class_="mark",
            x=left,
            y=y,
            height=bar_h,
            width=f"{max(1.0, (s.value or 0) * scale):.1f}",
            fill="#2ca02c" if r.verdict.good_enough else "#1f77b4",
        )
    )
    if s.ci_low is not None and s.ci_high is not None:
        x0, x1, ym = left + s.ci_low * scale, left + s.ci_high * scale, y + bar_h / 2
        d = (
            f"M{x0:.1f},{ym} H{x1:.1f} M{x0:.1f},{y + 4} V{y + bar_h - 4} "
            f"M{x1:.1f},{y + 4} V{y + bar_h - 4}"
        )
        marks.append(element("path", d=d, class_="ci", stroke="#111", stroke_width=2, fill="none"))
    return marks


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (cost no higher and value no lower, one
    of them strictly), sorted by cost: the quality-vs-cost frontier."""
    keep = []
    for i, (c, v) in enumerate(points):
        beaten = any((c2 <= c and v2 >= v) and (c2 < c or v2 > v) for c2, v2 in points)
        if not beaten:
            keep.append(i)
    return sorted(keep, key=lambda i: (points[i][0], points[i][1]))


def frontier_plot(rows: Sequence[Row], metric: str, variants: Sequence[Variant] = ()) -> str:
    """Quality against cost: a point per row, the Pareto frontier, the variants as diamonds."""
    if not rows:
        return "<p>No scored rung.</p>"
    points = [(r.cost.usd, r.score.value or 0.0) for r in rows]
    extra = [(v.cost.usd, v.score.value or 0.0) for v in variants]
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
            element("path", d=d, class_="frontier", fill="none", stroke="#ff7f0e", stroke_width=2)
        )
    for i, r in enumerate(rows):
        x, y = xy(*points[i])
        title = element(
            "title", f"{_e(r.rung)} on {_e(r.model)}: {_fmt(r.score.value)} at ${r.cost.usd:.6f}"
        )
        body.append(
            element(
                "circle",
                title,
                class_="mark",
                cx=f"{x:.1f}",
                cy=f"{y:.1f}",
                r=6,
                fill=COLORS[i % len(COLORS)],
            )
        )
        body.append(element("text", _e(r.rung), x=f"{x + 8:.1f}", y=f"{y - 8:.1f}", font_size=11))
    for v, (c, value) in zip(variants, extra, strict=True):
        x, y = xy(c, value)
        title = element(
            "title",
            f"variant {_e(v.name)}: {_fmt(v.score.value)} at ${v.cost.usd:.6f}, {v.verdict}",
        )
        body.append(
            element(
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
        element("path", d=f"M{PAD},{PAD / 2} V{H - PAD} H{W - PAD / 2}", stroke="#444", fill="none")
        + element("text", _e(x_label), x=W / 2, y=H - 12, font_size=12, text_anchor="middle")
        + element(
            "text",
            _e(y_label),
            x=14,
            y=H / 2,
            font_size=12,
            text_anchor="middle",
            transform=f"rotate(-90 14 {H / 2})",
        )
    )


def loss_plot(rows: Sequence[Row]) -> str:
    """The training loss per step of every row that trained, one curve each."""
    longest = max(len(r.training.losses) for r in rows)
    top = max(max(r.training.losses) for r in rows) or 1.0
    body = [_axes("training step", "training loss (nats/token)")]
    for i, r in enumerate(rows):
        pts = " ".join(
            f"{PAD + k / max(1, longest - 1) * (W - 2 * PAD):.1f},"
            f"{H - PAD - loss / top * (H - 2 * PAD):.1f}"
            for k, loss in enumerate(r.training.losses)
        )
        color = COLORS[i % len(COLORS)]
        title = element(
            "title",
            f"{_e(r.rung)}: {len(r.training.losses)} steps, last {r.training.losses[-1]:.3f}",
        )
        body.append(
            element(
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
            element(
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
