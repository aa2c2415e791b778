"""The plan against what the climb measured: the report's table and the terminal's line.

Each finished rung's planned wall time, peak memory and cost (:mod:`ladder.climb.plan`)
beside what its row measured, and whether the time fell within the planned range.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ladder.climb.plan import Bounds, ClimbPlan, RungPlan
    from ladder.climb.record import Row

__all__ = ["plan_summary", "plan_vs_measured", "plan_vs_measured_html"]


def plan_vs_measured(plan: ClimbPlan, rows: Sequence[Row]) -> list[tuple[Row, RungPlan]]:
    """The finished, timed rows that the plan planned, each with its plan."""
    pairs = []
    for row in rows:
        planned = plan.find(row.rung, row.model)
        if row.done and row.timing.wall_s > 0 and planned is not None and planned.wall_s:
            pairs.append((row, planned))
    return pairs


def plan_summary(plan: ClimbPlan, rows: Sequence[Row]) -> str:
    """``2 of 3 rungs took a time within the plan's range (...)``."""
    pairs = plan_vs_measured(plan, rows)
    inside = sum(1 for r, p in pairs if p.wall_s is not None and p.wall_s.contains(r.timing.wall_s))
    machine = ", ".join(f"{k} {v}" for k, v in plan.machine.items())
    return (
        f"{inside} of {len(pairs)} rungs took a time within the plan's range (low / expected / "
        f"high, spread x{plan.spread}; planned on a machine with {machine})"
    )


def plan_vs_measured_html(plan: ClimbPlan, rows: Sequence[Row]) -> str:
    """The report's table: each finished rung's planned range next to what it measured."""
    from html import escape

    head = ("rung", "model", "planned s", "took s", "", "planned peak", "peak", "planned $", "$")
    out = ["<table class='plan'><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r, p in plan_vs_measured(plan, rows):
        assert p.wall_s is not None  # plan_vs_measured keeps planned times only
        took = r.timing.wall_s
        side = (
            "within" if p.wall_s.contains(took) else "faster" if took < p.wall_s.low else "slower"
        )
        cells = (
            r.rung,
            r.model,
            _range(p.wall_s, "{:.1f}"),
            f"{took:.1f}",
            side,
            _range(p.peak_bytes, "{:.0f}", 2**20) + " MiB",
            f"{r.memory.peak_bytes / 2**20:.0f} MiB",
            _range(p.cost_usd, "{:.6f}"),
            f"{r.cost.usd:.6f}",
        )
        out.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    out.append(f"</table><p>{escape(plan_summary(plan, rows))}.</p>")
    return "\n".join(out)


def _range(bounds: Bounds | None, form: str, unit: float = 1.0) -> str:
    if bounds is None:
        return "–"
    return " / ".join(form.format(v / unit) for v in (bounds.low, bounds.expected, bounds.high))
