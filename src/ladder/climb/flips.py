"""Per-item flips: which test records one rung fixed and which it broke, against another.

Two rows of a climb answer the same test records, so they can be compared record by record
from their ``predictions.jsonl`` (one line per record with its per-example score). A record
is **fixed** when the later row scores it higher than the earlier one and **broken** when
it scores it lower (for 0/1 metrics such as accuracy: wrong → right and right → wrong).
The aggregate score and its paired test say whether a rung is better; the flips say on
which records, so a "better" rung that breaks a few important records is seen.

A climb compares each rung with the rung directly below it on the same model, and the
recommendation with every other rung; the pairs go into the report, into ``OUT/flips.jsonl``
(one line per flipped record) and, for two tracked runs, into ``ladder runs --compare``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ladder.fsutil import atomic_write_text

if TYPE_CHECKING:
    from ladder.climb.record import Row

__all__ = [
    "FLIPS_FILE",
    "Flip",
    "FlipSet",
    "climb_flips",
    "flip_records",
    "flips_between",
    "flips_html",
    "read_predictions",
    "write_flips",
]

FLIPS_FILE = "flips.jsonl"
_EXCERPT = 120  # characters of a record's input shown with a flip


@dataclass(frozen=True)
class Flip:
    """One test record whose score changed between two runs.

    Attributes:
        id: the record's id (its ``id`` field, else ``FILE:LINE`` of the test split).
        index: its position in the test split.
        input: the start of its input.
        reference: its gold answer.
        before: the earlier run's parsed answer.
        after: the later run's parsed answer.
        score_before: the earlier run's per-example score.
        score_after: the later run's per-example score.
    """

    id: str
    index: int
    input: str
    reference: Any
    before: Any
    after: Any
    score_before: float
    score_after: float

    @property
    def change(self) -> str:
        """``fixed`` (scored higher after) or ``broken`` (scored lower after)."""
        return "fixed" if self.score_after > self.score_before else "broken"


@dataclass(frozen=True)
class FlipSet:
    """The flips from one run (``before``) to another (``after``).

    Attributes:
        before: the earlier run, as ``rung on model`` (or a folder).
        after: the later run.
        relation: ``vs below`` (a rung against the one under it), ``vs recommendation``
            (the recommended rung against another), or ``vs baseline`` (``ladder check``).
        flips: the records whose score changed, in test order.
        n: test records compared.
    """

    before: str
    after: str
    relation: str
    flips: list[Flip] = field(default_factory=list)
    n: int = 0

    @property
    def fixed(self) -> list[Flip]:
        """Records the later run scored higher."""
        return [f for f in self.flips if f.change == "fixed"]

    @property
    def broken(self) -> list[Flip]:
        """Records the later run scored lower."""
        return [f for f in self.flips if f.change == "broken"]

    def summary(self) -> str:
        """``few_shot on m → full on m (vs below): 7 fixed, 2 broken of 60``."""
        return (
            f"{self.before} → {self.after} ({self.relation}): {len(self.fixed)} fixed, "
            f"{len(self.broken)} broken of {self.n}"
        )


def read_predictions(folder: str | Path) -> list[dict[str, Any]]:
    """The per-record lines of ``folder/predictions.jsonl`` (empty when it has none)."""
    path = Path(folder) / "predictions.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def flips_between(
    before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]
) -> list[Flip]:
    """The records whose per-example score differs between two runs on the same records.

    Raises:
        ValueError: the runs answered different numbers of records.
    """
    if len(before) != len(after):
        raise ValueError(f"{len(before)} records before, {len(after)} after")
    flips = []
    for index, (b, a) in enumerate(zip(before, after, strict=True)):
        low, high = float(b["score"]), float(a["score"])
        if abs(high - low) <= 1e-9:
            continue
        text = str(a.get("input", ""))
        flips.append(
            Flip(
                id=str(a.get("id") or f"#{a.get('index', index)}"),
                index=int(a.get("index", index)),
                input=text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…",
                reference=a.get("reference"),
                before=b.get("prediction"),
                after=a.get("prediction"),
                score_before=low,
                score_after=high,
            )
        )
    return flips


def _name(row: Row) -> str:
    return f"{row.rung} on {row.model}"


def climb_flips(rows: Sequence[Row], recommendation: Row | None) -> list[FlipSet]:
    """Each rung against the rung below it on the same model, then the recommendation
    against every other rung (a pair already compared is not repeated)."""
    done = [r for r in rows if r.done]
    predictions = {r.key: read_predictions(r.provenance.folder) for r in done}
    pairs: list[tuple[Row, Row, str]] = []
    for row in done:
        if row.below is None:
            continue
        below = next((r for r in done if r.model == row.model and r.rung == row.below.rung), None)
        if below is not None:
            pairs.append((below, row, "vs below"))
    if recommendation is not None and recommendation.done:
        seen = {(b.key, a.key) for b, a, _ in pairs}
        for other in done:
            if other.key != recommendation.key and (other.key, recommendation.key) not in seen:
                pairs.append((other, recommendation, "vs recommendation"))
    sets = []
    for before, after, relation in pairs:
        b, a = predictions[before.key], predictions[after.key]
        if not b or len(b) != len(a):  # a row whose predictions are gone or cut short
            continue
        sets.append(FlipSet(_name(before), _name(after), relation, flips_between(b, a), len(a)))
    return sets


def flip_records(sets: Sequence[FlipSet]) -> list[dict[str, Any]]:
    """One flat JSON object per flipped record (the lines of ``flips.jsonl``)."""
    return [
        {
            "before": s.before,
            "after": s.after,
            "relation": s.relation,
            "change": f.change,
            "id": f.id,
            "index": f.index,
            "input": f.input,
            "reference": f.reference,
            "answer_before": f.before,
            "answer_after": f.after,
            "score_before": f.score_before,
            "score_after": f.score_after,
        }
        for s in sets
        for f in s.flips
    ]


def write_flips(path: Path, sets: Sequence[FlipSet]) -> Path:
    """Write ``path`` (``flips.jsonl``) atomically: one line per flipped record."""
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in flip_records(sets)]
    atomic_write_text(path, "".join(lines))
    return path


def flips_html(sets: Sequence[FlipSet], shown: int = 8) -> str:
    """The report's flips section: per pair its counts and the first ``shown`` fixed and
    broken records (all of them are in ``flips.jsonl``)."""
    from html import escape

    if not sets:
        return "<p>No two finished rungs to compare.</p>"
    out = []
    for s in sets:
        out.append(f"<h3>{escape(s.summary())}</h3>")
        items = s.fixed[:shown] + s.broken[:shown]
        if not items:
            continue
        out.append(
            "<table class='flips'><tr><th></th><th>record</th><th>input</th><th>reference</th>"
            "<th>before</th><th>after</th><th>scores</th></tr>"
        )
        for f in items:
            mark = "right" if f.change == "fixed" else "wrong"
            cells = (
                f.change,
                f.id,
                f.input,
                _text(f.reference),
                _text(f.before),
                _text(f.after),
                f"{f.score_before:.3g} → {f.score_after:.3g}",
            )
            out.append(
                f"<tr class='{mark}'>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"
            )
        out.append("</table>")
    return "\n".join(out)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
