"""The climb's record: one :class:`Row` per rung and model, one :class:`Variant` per cheaper try.

Both are built of the typed parts of :mod:`ladder.climb.parts`. On disk (``climb.json``,
``leaderboard.json``) a row is the flat JSON object it always was: :meth:`Row.to_record`
writes the same keys in the same order, and :meth:`Row.from_record` reads one back (keys an
older file lacks take their defaults), so a climb folder written by an earlier ladder
resumes and its files keep their shape. The same holds for a variant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ladder.climb.parts import (
    Cost,
    Difference,
    JudgeColumn,
    Memory,
    Provenance,
    Savings,
    Score,
    Timing,
    Training,
    Verdict,
    VsBelow,
    WeightsFile,
)

__all__ = ["DROPS", "KEEPS", "SKIPPED", "Row", "Variant"]

# A variant's verdicts (the strings climb.json and the report show).
KEEPS, DROPS, SKIPPED = "keeps quality", "drops quality", "skipped"


@dataclass
class Row:
    """One rung on one model: its score, what it cost, and the verdict.

    ``status`` is ``done`` or ``skipped`` (the verdict's reason says why); ``answered_by``
    is the model that answered (a fine-tuning rung's new checkpoint). Each part is replaced
    whole when it changes.
    """

    rung: str
    model: str
    score: Score
    status: str = "done"
    answered_by: str = ""
    cost: Cost = field(default_factory=Cost)
    timing: Timing = field(default_factory=Timing)
    memory: Memory = field(default_factory=Memory)
    below: VsBelow | None = None
    verdict: Verdict = field(default_factory=Verdict)
    judge: JudgeColumn | None = None
    training: Training = field(default_factory=Training)
    provenance: Provenance = field(default_factory=Provenance)

    @property
    def key(self) -> str:
        """``model|rung``: identifies a row across resumes."""
        return f"{self.model}|{self.rung}"

    @property
    def done(self) -> bool:
        """Whether the rung ran and was scored (not skipped)."""
        return self.status == "done"

    def to_record(self) -> dict[str, Any]:
        """The flat JSON object of ``climb.json`` (its keys and their order are the format)."""
        s, c, t, b, j = self.score, self.cost, self.timing, self.below, self.judge
        return {
            "rung": self.rung,
            "model": self.model,
            "metric": s.metric,
            "status": self.status,
            "value": s.value,
            "ci_low": s.ci_low,
            "ci_high": s.ci_high,
            "n": s.n,
            "signature": s.signature,
            "cost": c.usd,
            "latency_p50": t.latency_p50,
            "latency_p95": t.latency_p95,
            "peak_memory": self.memory.peak_bytes,
            "good_enough": self.verdict.good_enough,
            "below": None if b is None else b.rung,
            "delta_vs_below": None if b is None else b.delta,
            "p_value_vs_below": None if b is None else b.p_value,
            "answered_by": self.answered_by,
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
            "compute_seconds": c.compute_seconds,
            "wall_s": t.wall_s,
            "reason": self.verdict.reason,
            "train_losses": list(self.training.losses),
            "folder": self.provenance.folder,
            "run_id": self.provenance.run_id,
            "template_version": self.provenance.template_version,
            "train_seconds": self.training.seconds,
            "train_metrics": dict(self.training.metrics),
            "judge_value": None if j is None else j.value,
            "judge_ci_low": None if j is None else j.ci_low,
            "judge_ci_high": None if j is None else j.ci_high,
            "judge_valid": "" if j is None else j.valid,
            "judge_signature": "" if j is None else j.signature,
            "judge_key": "" if j is None else j.key,
            **_honest_keys(b),
        }

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> Row:
        """A row from its flat JSON object (as :meth:`to_record` or an older ladder wrote it)."""
        below = None
        if rec.get("below") is not None:
            below = VsBelow(
                rec["below"],
                rec["delta_vs_below"],
                rec["p_value_vs_below"],
                rec.get("ci_low_vs_below"),
                rec.get("ci_high_vs_below"),
                rec.get("mde_vs_below"),
                rec.get("needed_n_vs_below"),
                rec.get("call_vs_below", ""),
            )
        judge = None
        if rec.get("judge_key"):
            judge = JudgeColumn(
                rec["judge_key"],
                rec.get("judge_value"),
                rec.get("judge_ci_low"),
                rec.get("judge_ci_high"),
                rec.get("judge_valid", ""),
                rec.get("judge_signature", ""),
            )
        return cls(
            rung=rec["rung"],
            model=rec["model"],
            score=_score(rec),
            status=rec.get("status", "done"),
            answered_by=rec.get("answered_by", ""),
            cost=_cost(rec),
            timing=_timing(rec),
            memory=Memory(rec.get("peak_memory", 0)),
            below=below,
            verdict=Verdict(rec.get("good_enough", False), rec.get("reason", "")),
            judge=judge,
            training=Training(
                list(rec.get("train_losses", [])),
                rec.get("train_seconds", 0.0),
                dict(rec.get("train_metrics", {})),
            ),
            provenance=_provenance(rec),
        )


@dataclass
class Variant:
    """A cheaper variant of the recommended row, compared with it on the same test records.

    ``kind`` is model, shots, prompt, quantise or gguf; ``of`` the recommended row's key;
    ``verdict`` is ``keeps quality``, ``drops quality`` or ``skipped`` and ``reason`` says
    why (:func:`ladder.climb.optimise.compare`). ``weights`` is the file a gguf variant
    answered from; its record's last keys (``tokens_per_s``, ``weights_file``,
    ``weights_bytes``) are newer than the rest and take their defaults when missing.
    """

    kind: str
    name: str
    of: str
    rung: str
    model: str
    score: Score
    status: str = "done"
    reason: str = ""
    difference: Difference | None = None
    verdict: str = SKIPPED
    cost: Cost = field(default_factory=Cost)
    savings: Savings = field(default_factory=Savings)
    timing: Timing = field(default_factory=Timing)
    memory: Memory = field(default_factory=Memory)
    provenance: Provenance = field(default_factory=Provenance)
    weights: WeightsFile = field(default_factory=WeightsFile)

    @property
    def key(self) -> str:
        """``kind:name``: identifies a variant across resumes."""
        return f"{self.kind}:{self.name}"

    @property
    def keeps_quality(self) -> bool:
        """Whether the variant answers as well as the recommended row (the verdict)."""
        return self.verdict == KEEPS

    def to_record(self) -> dict[str, Any]:
        """The flat JSON object of ``climb.json`` and ``leaderboard.json`` (keys in order)."""
        s, d, c, t, p = self.score, self.difference, self.cost, self.timing, self.provenance
        return {
            "kind": self.kind,
            "name": self.name,
            "of": self.of,
            "rung": self.rung,
            "model": self.model,
            "metric": s.metric,
            "status": self.status,
            "reason": self.reason,
            "value": s.value,
            "ci_low": s.ci_low,
            "ci_high": s.ci_high,
            "delta": None if d is None else d.delta,
            "delta_ci_low": None if d is None else d.ci_low,
            "delta_ci_high": None if d is None else d.ci_high,
            "keeps_quality": self.keeps_quality,
            "verdict": self.verdict,
            "cost": c.usd,
            "cost_saving": self.savings.cost,
            "latency_p50": t.latency_p50,
            "latency_saving": self.savings.latency,
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens,
            "peak_memory": self.memory.peak_bytes,
            "wall_s": t.wall_s,
            "template_version": p.template_version,
            "folder": p.folder,
            "run_id": p.run_id,
            "tokens_per_s": t.tokens_per_s,
            "weights_file": self.weights.path,
            "weights_bytes": self.weights.bytes,
        }

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> Variant:
        """A variant from its flat JSON object."""
        difference = None
        if rec.get("delta") is not None:
            difference = Difference(rec["delta"], rec["delta_ci_low"], rec["delta_ci_high"])
        return cls(
            kind=rec["kind"],
            name=rec["name"],
            of=rec["of"],
            rung=rec["rung"],
            model=rec["model"],
            score=_score(rec),
            status=rec.get("status", "done"),
            reason=rec.get("reason", ""),
            difference=difference,
            verdict=rec.get("verdict", SKIPPED),
            cost=_cost(rec),
            savings=Savings(rec.get("cost_saving"), rec.get("latency_saving")),
            timing=_timing(rec),
            memory=Memory(rec.get("peak_memory", 0)),
            provenance=_provenance(rec),
            weights=WeightsFile(rec.get("weights_file", ""), rec.get("weights_bytes", 0)),
        )


def _honest_keys(below: VsBelow | None) -> dict[str, Any]:
    """The comparison's CI, MDE and call (newer keys, after the rest): written only for a
    comparison that has them, so an older record reads back and writes the same."""
    if below is None or not below.call:
        return {}
    return {
        "ci_low_vs_below": below.ci_low,
        "ci_high_vs_below": below.ci_high,
        "mde_vs_below": below.mde,
        "needed_n_vs_below": below.needed_n,
        "call_vs_below": below.call,
    }


def _score(rec: Mapping[str, Any]) -> Score:
    return Score(
        rec["metric"],
        rec.get("value"),
        rec.get("ci_low"),
        rec.get("ci_high"),
        rec.get("n", 0),
        rec.get("signature", ""),
    )


def _cost(rec: Mapping[str, Any]) -> Cost:
    return Cost(
        rec.get("cost", 0.0),
        rec.get("prompt_tokens", 0),
        rec.get("completion_tokens", 0),
        rec.get("compute_seconds", 0.0),
    )


def _timing(rec: Mapping[str, Any]) -> Timing:
    return Timing(
        rec.get("latency_p50"),
        rec.get("latency_p95"),
        rec.get("wall_s", 0.0),
        rec.get("tokens_per_s"),
    )


def _provenance(rec: Mapping[str, Any]) -> Provenance:
    return Provenance(rec.get("folder", ""), rec.get("run_id", ""), rec.get("template_version", ""))
