"""The regression gate of ``ladder check``: a new run against a baseline on the same records.

A *run* is what a climb leaves on disk: a climb folder (``climb.json``; its recommended row,
or the row ``rung`` names) or one rung's or variant's folder (``predictions.jsonl``, with
the climb folder above it naming the metric). ``ladder check`` can also make the new run
itself: one rung of a task on a model (:func:`run_now`).

The two runs must have answered the same test records (input and reference, record by
record) and been scored with the same metric; the comparison is the paired bootstrap
(Koehn 2004) of (new - baseline) with the task's resamples, confidence and seed, so the
same runs always give the same verdict. The gate **fails** when the whole confidence
interval of the difference lies below ``-margin`` (the task's ``gate.margin``): the new run
is significantly worse by more than the margin. A drop within the margin, or one the test
split is too small to tell from noise, passes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladder.climb.flips import FlipSet, flip_records, flips_between, read_predictions
from ladder.climb.state import RESOLVED_TASK_FILE, STATE_FILE, model_folder, slug
from ladder.climb.task import LoadedTask, TaskSpec
from ladder.errors import ConfigError

__all__ = ["GateResult", "GateRun", "compare_runs", "find_run", "pick_spec", "run_now"]


@dataclass(frozen=True)
class GateRun:
    """One side of the comparison: a run's predictions and how they were scored.

    Attributes:
        label: what the user named (a folder), for messages.
        folder: the folder holding ``predictions.jsonl``.
        metric: the metric it was scored with ("" when nothing names it).
        lines: the lines of ``predictions.jsonl``, in test order.
        spec: the task its climb resolved (None when there is none to read).
    """

    label: str
    folder: Path
    metric: str
    lines: list[dict[str, Any]]
    spec: TaskSpec | None = None


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict on a new run against a baseline, with the numbers behind it."""

    baseline: GateRun
    new: GateRun
    metric: str
    value_baseline: float
    value_new: float
    delta: float
    ci_low: float
    ci_high: float
    margin: float
    confidence: float
    resamples: int
    seed: int
    flips: FlipSet = field(default_factory=lambda: FlipSet("", "", "vs baseline"))

    @property
    def failed(self) -> bool:
        """Significantly worse by more than the margin: the whole CI lies below -margin."""
        return self.ci_high < -self.margin

    @property
    def exit_code(self) -> int:
        """1 when the gate fails, 0 when it passes."""
        return 1 if self.failed else 0

    def reason(self) -> str:
        """One sentence with the numbers and the verdict."""
        head = (
            f"{self.metric} {self.value_new:.3f} vs baseline {self.value_baseline:.3f}: "
            f"difference {self.delta:+.3f} ({self.confidence:.0%} CI [{self.ci_low:+.3f}, "
            f"{self.ci_high:+.3f}], n={self.flips.n}), margin {self.margin}"
        )
        if self.failed:
            return f"{head}: significantly worse by more than the margin"
        if self.ci_high < 0:
            return f"{head}: worse, but not by more than the margin"
        return f"{head}: no significant drop beyond the margin"

    def to_json(self) -> dict[str, Any]:
        """What ``ladder check --json`` prints."""
        return {
            "verdict": "fail" if self.failed else "pass",
            "exit_code": self.exit_code,
            "reason": self.reason(),
            "metric": self.metric,
            "n": self.flips.n,
            "baseline": {"run": str(self.baseline.folder), "value": self.value_baseline},
            "new": {"run": str(self.new.folder), "value": self.value_new},
            "delta": self.delta,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "margin": self.margin,
            "confidence": self.confidence,
            "resamples": self.resamples,
            "seed": self.seed,
            "fixed": len(self.flips.fixed),
            "broken": len(self.flips.broken),
            "flips": flip_records([self.flips]),
        }


def find_run(path: str | Path, rung: str | None = None, *, what: str = "run") -> GateRun:
    """The run at ``path``: a climb folder (its recommended row, or the row named ``rung``)
    or a rung's or variant's own folder.

    Raises:
        ConfigError: no such folder, no predictions in it, or no row to pick.
    """
    folder = Path(path)
    if (folder / STATE_FILE).is_file():
        folder = _row_folder(folder, rung, what)
    elif not (folder / "predictions.jsonl").is_file():
        hint = "a climb folder (with climb.json) or a rung folder (with predictions.jsonl)"
        if not folder.exists():
            raise ConfigError(f"{what} {path}: no such folder; pass {hint}")
        raise ConfigError(f"{what} {path}: neither climb.json nor predictions.jsonl; pass {hint}")
    out = next((p for p in folder.parents if (p / STATE_FILE).is_file()), None)
    metric, spec = "", None
    if out is not None:
        metric = _metric_of(out, folder)
        resolved = out / RESOLVED_TASK_FILE
        if resolved.is_file():
            import yaml

            spec = TaskSpec.model_validate(yaml.safe_load(resolved.read_text("utf-8"))["task"])
    return GateRun(str(path), folder, metric, read_predictions(folder), spec)


def _row_folder(out: Path, rung: str | None, what: str) -> Path:
    """The folder of the row of the climb in ``out`` that the gate compares."""
    state = json.loads((out / STATE_FILE).read_text("utf-8"))
    rows = [r for r in state.get("rows", []) if r.get("status") == "done"]
    if rung is None:
        board = out / "leaderboard.json"
        rec = (
            json.loads(board.read_text("utf-8")).get("recommendation") if board.is_file() else None
        )
        if not rec:
            raise ConfigError(
                f"{what} {out}: the climb recommends no rung; pass --rung NAME to pick one"
            )
        rung = rec["rung"]
        rows = [r for r in rows if r["model"] == rec["model"]]
    picked = next((r for r in rows if r["rung"] == rung), None)
    if picked is None:
        names = ", ".join(sorted({r["rung"] for r in rows})) or "none"
        raise ConfigError(f"{what} {out}: no finished rung {rung!r}; finished: {names}")
    return _local(out, Path(picked["folder"]))


def _local(out: Path, folder: Path) -> Path:
    """A row's folder under ``out``, wherever the climb ran from (its path in climb.json
    may be relative to another working folder, or the climb folder may have moved)."""
    if (folder / "predictions.jsonl").is_file():
        return folder
    parts = folder.parts
    for top in ("rungs", "variants"):
        if top in parts:
            return out.joinpath(*parts[parts.index(top) :])
    return folder


def _metric_of(out: Path, folder: Path) -> str:
    """The metric climb.json in ``out`` gives the row or variant in ``folder``."""
    state = json.loads((out / STATE_FILE).read_text("utf-8"))
    for rec in [*state.get("rows", []), *state.get("variants", [])]:
        if rec.get("folder") and _local(out, Path(rec["folder"])).resolve() == folder.resolve():
            return str(rec.get("metric", ""))
    return ""


def compare_runs(
    baseline: GateRun, new: GateRun, spec: TaskSpec, *, margin: float | None = None
) -> GateResult:
    """The paired bootstrap of ``new`` against ``baseline`` under ``spec``'s metric,
    resamples, confidence, seed and gate margin (``margin`` replaces the task's).

    Raises:
        ConfigError: a run scored with another metric, or on other test records.
    """
    from ladder.climb.measure import paired_test
    from ladder.evaluate import get_metric

    metric = spec.metric_name()
    for run in (baseline, new):
        if run.metric and run.metric != metric:
            raise ConfigError(
                f"{run.label}: scored with {run.metric}, but the comparison uses {metric}; "
                "compare runs of the same metric"
            )
    _same_records(baseline, new)
    refs = [line["reference"] for line in new.lines]
    preds_new = [line["prediction"] for line in new.lines]
    preds_base = [line["prediction"] for line in baseline.lines]
    outcome = paired_test(
        metric,
        spec.metric_options,
        preds_new,
        preds_base,
        refs,
        resamples=spec.resamples,
        confidence=spec.confidence,
        seed=spec.seed,
    )
    plain = get_metric(metric, resamples=0, **spec.metric_options)
    flips = FlipSet(
        str(baseline.folder),
        str(new.folder),
        "vs baseline",
        flips_between(baseline.lines, new.lines),
        len(new.lines),
    )
    return GateResult(
        baseline=baseline,
        new=new,
        metric=metric,
        value_baseline=float(plain.compute(preds_base, refs).value),
        value_new=float(plain.compute(preds_new, refs).value),
        delta=outcome.delta,
        ci_low=outcome.ci_low,
        ci_high=outcome.ci_high,
        margin=spec.gate.margin if margin is None else margin,
        confidence=spec.confidence,
        resamples=spec.resamples,
        seed=spec.seed,
        flips=flips,
    )


def _same_records(baseline: GateRun, new: GateRun) -> None:
    """Both runs answered the same test records, in the same order."""
    a, b = baseline.lines, new.lines
    if not a or not b:
        empty = baseline if not a else new
        raise ConfigError(f"{empty.label}: predictions.jsonl holds no records")
    if len(a) != len(b):
        raise ConfigError(
            f"{baseline.label} answered {len(a)} test records, {new.label} {len(b)}: not the "
            "same test records; compare runs of the same test split"
        )
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        for key in ("input", "reference"):
            if x.get(key) != y.get(key):
                record = y.get("id") or f"#{i}"
                raise ConfigError(
                    f"test record {record} differs: its {key} is {_cut(x.get(key))} in "
                    f"{baseline.label} but {_cut(y.get(key))} in {new.label}; compare runs of "
                    "the same test split"
                )


def _cut(value: Any, n: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= n else text[: n - 1] + "…"


def run_now(
    task: LoadedTask,
    model: str,
    rung: str | None,
    out: Path,
    log: Callable[[str], None] = lambda _line: None,
) -> GateRun:
    """Run one rung of ``task`` (the one labelled ``rung``, else the first) on ``model``
    into ``out/MODEL/RUNG/`` and score it as a climb does; the new side of a check.

    Raises:
        ConfigError: no rung of that name in the task, or a model that cannot load.
    """
    from ladder.climb.rungs import ModelCache, RungContext, build_rung
    from ladder.climb.scoring import RungJob, score_rung
    from ladder.models import check_model

    specs = task.spec.rung_specs()
    spec = specs[0] if rung is None else next((s for s in specs if s.name == rung), None)
    if spec is None:
        names = ", ".join(s.name for s in specs)
        raise ConfigError(f"--rung {rung}: not a rung of {task.path}; its rungs: {names}")
    check_model(model)
    folder = out / model_folder(model) / slug(spec.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    built = build_rung(spec.rung, spec.options, where=str(task.path))
    log(f"{spec.name} on {model}: running")
    result = built.run(task, model, RungContext(folder, False, ModelCache(), None, log))
    score_rung(RungJob(task, spec.name, model, built, folder), result)
    return GateRun(str(folder), folder, task.spec.metric_name(), read_predictions(folder))


def pick_spec(runs: Sequence[GateRun], task: LoadedTask | None) -> TaskSpec:
    """The task settings a check runs under: the given task's, else the baseline's climb.

    Raises:
        ConfigError: neither names them.
    """
    if task is not None:
        return task.spec
    for run in runs:
        if run.spec is not None:
            return run.spec
    raise ConfigError(
        f"{runs[0].label}: no climb folder above it holds task.resolved.yaml; pass --task TASK"
    )
