"""The climb: run the rungs cheapest first on every candidate model, score, stop, recommend.

For each model, rungs run in the task's order. Every rung answers the same test records
and is scored with the task's metric and a bootstrap CI (same seed, same resamples for
every rung). **The stop rule** — a rung is *good enough* when all of:

1. its metric value is at least the task's ``good_enough``;
2. it is the first rung climbed on that model, or a paired bootstrap test (Koehn 2004) on
   the same test records says it is significantly better than the rung directly below it
   on the same model (p < 1 - ``confidence``): a rung that only ties the cheaper rung below
   is not worth its price;
3. its p95 latency per record is within ``max_latency_s`` (when set).

Without ``all_rungs`` the climb stops on a model at its first good-enough rung. The
recommendation is the cheapest good-enough row (cost, then the lower rung), or, when none is,
the best-scoring row with the advice that nothing is good enough yet.

State (``OUT/climb.json``) is written after every rung, atomically; ``resume=True`` keeps
the finished rows of an interrupted climb of the same task and data (a fingerprint of both)
and runs only the rest. A climb whose total cost passes ``max_cost_usd`` stops after the
rung that passed it, keeping every finished row.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladder.climb.measure import PeakMemory, paired_test, percentile
from ladder.climb.rungs import ModelCache, RungContext, RungResult, build_rung
from ladder.climb.state import (
    STATE_FILE,
    Row,
    prediction_texts,
    resolved_task,
    resumable_rows,
    save_state,
    slug,
    write_predictions,
)
from ladder.climb.task import LoadedTask, RungSpec, load_task, parse_output
from ladder.errors import UnsupportedError
from ladder.fsutil import atomic_write_text

__all__ = ["ClimbOptions", "ClimbResult", "Row", "climb", "leaderboard_rows"]

LEADERBOARD_KEYS = (
    "rung",
    "model",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "cost",
    "latency_p50",
    "peak_memory",
    "good_enough",
)


@dataclass
class ClimbOptions:
    """How to climb (the CLI's flags)."""

    out: Path
    all_rungs: bool = False
    resume: bool = False
    models: Sequence[str] = ()
    tracking_uri: str | None = None
    embedder: Any = None
    model_loader: Callable[[str], Any] | None = None
    log: Callable[[str], None] = lambda _line: None


@dataclass
class ClimbResult:
    """The leaderboard, the recommendation and where everything was written."""

    task: LoadedTask
    rows: list[Row]
    recommendation: Row | None
    why: str
    stopped: str
    out: Path
    report: Path | None = None

    def leaderboard(self) -> list[dict[str, Any]]:
        """The ``--json`` rows."""
        return leaderboard_rows(self.rows)


def leaderboard_rows(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Rows with the leaderboard keys (plus latency_p95 and status), in climb order."""
    keys = (*LEADERBOARD_KEYS, "latency_p95", "status")
    return [{k: getattr(r, k) for k in keys} for r in rows]


def climb(task_path: str | Path, options: ClimbOptions) -> ClimbResult:
    """Climb the task's ladder; write state, predictions and the report under ``options.out``.

    Raises:
        ConfigError: a bad task file or data (one line naming file:line and the field).
    """
    from ladder.track import get_tracker

    task = load_task(task_path)
    out = Path(options.out)
    done = resumable_rows(out, task) if options.resume else {}
    if not options.resume and out.exists():
        shutil.rmtree(out / "rungs", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "task.resolved.json", resolved_task(task))
    models = list(options.models) or task.spec.models
    cache = ModelCache(options.model_loader)
    rows: list[Row] = []
    stopped = "all rungs climbed" if options.all_rungs else ""
    tracker = get_tracker(options.tracking_uri)
    with tracker.run(f"climb {task.spec.name}", tags={"task": task.spec.name}) as parent:
        parent.log_params(
            {
                "task": task.spec.name,
                "metric": task.spec.metric_name(),
                "good_enough": task.spec.good_enough,
                "models": ",".join(models),
                "fingerprint": task.fingerprint(),
                **task.data_hashes,
            }
        )
        for model in models:
            budget_hit = _climb_model(task, model, options, cache, done, rows, parent, out)
            if budget_hit:
                stopped = budget_hit
                break
        recommendation, why = recommend(rows, task)
        save_state(out, task, rows, finished=True)
        from ladder.climb.report import write_report

        result = ClimbResult(task, rows, recommendation, why, stopped, out)
        result.report = write_report(result, out / "report.html")
        parent.log_artifact(result.report)
        parent.log_artifact(out / STATE_FILE)
        if recommendation is not None:
            parent.set_tags({"recommendation": recommendation.key})
    return result


def _climb_model(
    task: LoadedTask,
    model: str,
    options: ClimbOptions,
    cache: ModelCache,
    done: dict[str, Row],
    rows: list[Row],
    tracker: Any,
    out: Path,
) -> str:
    """Climb one model; returns a reason when the whole climb must stop (budget)."""
    below: Row | None = None
    for index, spec in enumerate(task.spec.rung_specs()):
        key = f"{model}|{spec.name}"
        row = done.get(key)
        if row is None:
            folder = out / "rungs" / slug(model) / f"{index:02d}-{slug(spec.name)}"
            row = _run_rung(task, model, spec, folder, options, cache, below)
            _log_row(tracker, row, spec)
        else:
            options.log(f"{spec.name} on {model}: finished before, kept")
        rows.append(row)
        save_state(out, task, rows, finished=False)
        if row.status == "done":
            below = row
        spent = sum(r.cost for r in rows)
        limit = task.spec.max_cost_usd
        if limit is not None and spent > limit:
            return f"budget: the climb cost ${spent:.4f}, over max_cost_usd ${limit}"
        if row.good_enough and not options.all_rungs:
            break
    cache.drop(model)
    return ""


def _run_rung(
    task: LoadedTask,
    model: str,
    spec: RungSpec,
    folder: Path,
    options: ClimbOptions,
    cache: ModelCache,
    below: Row | None,
) -> Row:
    metric = task.spec.metric_name()
    rung = build_rung(spec.rung, spec.options, where=str(task.path))
    ctx = RungContext(folder, options.resume, cache, options.embedder, options.log)
    folder.mkdir(parents=True, exist_ok=True)
    options.log(f"{spec.name} on {model}: running")
    started = time.perf_counter()
    try:
        with PeakMemory() as memory:
            result = rung.run(task, model, ctx)
    except UnsupportedError as exc:
        return Row(spec.name, model, metric, status="skipped", reason=str(exc), folder=str(folder))
    row = _score(task, spec, model, result, folder, below)
    row.peak_memory = max(memory.peak_bytes, memory.gpu_peak_bytes)
    row.wall_s = round(time.perf_counter() - started, 3)
    return row


def _score(
    task: LoadedTask,
    spec: RungSpec,
    model: str,
    result: RungResult,
    folder: Path,
    below: Row | None,
) -> Row:
    from ladder.evaluate import get_metric

    s = task.spec
    metric = s.metric_name()
    predictions = [
        parse_output(a if a is not None else o, s.output)
        for a, o in zip(result.answers, result.outputs, strict=True)
    ]
    refs = task.references()
    score = get_metric(
        metric, resamples=s.resamples, confidence=s.confidence, seed=s.seed, **s.metric_options
    ).compute(predictions, refs)
    write_predictions(folder, task, result, predictions, score.per_example)
    cost = result.token_cost_usd + result.compute_seconds * s.compute_hour_usd / 3600.0
    row = Row(
        spec.name,
        model,
        metric,
        value=score.value,
        ci_low=score.ci_low,
        ci_high=score.ci_high,
        n=score.n,
        signature=score.signature,
        cost=cost,
        latency_p50=percentile(result.latencies, 0.5),
        latency_p95=percentile(result.latencies, 0.95),
        answered_by=result.model,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        compute_seconds=round(result.compute_seconds, 3),
        train_losses=result.train_losses,
        folder=str(folder),
    )
    if below is not None:
        outcome = paired_test(
            metric,
            s.metric_options,
            predictions,
            prediction_texts(below),
            refs,
            resamples=s.resamples,
            confidence=s.confidence,
            seed=s.seed,
        )
        row.below, row.delta_vs_below, row.p_value_vs_below = (
            below.rung,
            outcome.delta,
            outcome.p_value,
        )
    row.good_enough, row.reason = verdict(row, task, below)
    return row


def verdict(row: Row, task: LoadedTask, below: Row | None) -> tuple[bool, str]:
    """The stop rule (module docstring): whether ``row`` is good enough, and why (not)."""
    s = task.spec
    if row.value is None or row.value < s.good_enough:
        return False, f"{row.metric} {_num(row.value)} is below good_enough {s.good_enough}"
    if s.max_latency_s is not None and (row.latency_p95 or 0.0) > s.max_latency_s:
        return False, f"p95 latency {row.latency_p95:.3f}s is over max_latency_s {s.max_latency_s}"
    if below is None:
        return True, f"{row.metric} {_num(row.value)} >= {s.good_enough}; first rung on the model"
    p = row.p_value_vs_below if row.p_value_vs_below is not None else 1.0
    if (row.delta_vs_below or 0.0) > 0 and p < 1.0 - s.confidence:
        return True, (
            f"{row.metric} {_num(row.value)} >= {s.good_enough} and significantly better than "
            f"{below.rung} (delta {row.delta_vs_below:+.3f}, paired bootstrap p={p:.3f})"
        )
    return False, (
        f"{row.metric} {_num(row.value)} >= {s.good_enough} but not significantly better than "
        f"{below.rung} (paired bootstrap p={p:.3f}); the cheaper rung does as well"
    )


def recommend(rows: Sequence[Row], task: LoadedTask) -> tuple[Row | None, str]:
    """The cheapest good-enough row and why; else the best row and what is missing."""
    good = [r for r in rows if r.good_enough]
    if good:
        order = {id(r): i for i, r in enumerate(rows)}  # ties: the lower rung (climbed first)
        best = min(good, key=lambda r: (r.cost, order[id(r)]))
        return best, (
            f"{best.rung} on {best.model} is the cheapest good-enough rung "
            f"(${best.cost:.6f} for the test split): {best.reason}."
        )
    scored = [r for r in rows if r.value is not None]
    if not scored:
        return None, "no rung produced a score"
    top = max(scored, key=lambda r: r.value or 0.0)
    return None, (
        f"no rung is good enough (good_enough {task.spec.good_enough}); the best is {top.rung} "
        f"on {top.model} with {top.metric} {_num(top.value)}. Try more training data or steps, "
        "a larger model, or a lower threshold if it is acceptable."
    )


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _log_row(tracker: Any, row: Row, spec: RungSpec) -> None:
    with tracker.run(f"rung {row.rung}", tags={"rung": row.rung, "model": row.model}) as run:
        run.log_params(
            {
                "rung": spec.rung,
                "model": row.model,
                "answered_by": row.answered_by,
                **{f"option.{k}": v for k, v in spec.options.items()},
            }
        )
        metrics = {
            "cost_usd": row.cost,
            "peak_memory_bytes": float(row.peak_memory),
            "good_enough": float(row.good_enough),
            "wall_s": row.wall_s,
        }
        for name in (
            "value",
            "ci_low",
            "ci_high",
            "latency_p50",
            "latency_p95",
            "p_value_vs_below",
        ):
            value = getattr(row, name)
            if value is not None:
                metrics[name] = float(value)
        run.log_metrics(metrics)
        for step, loss in enumerate(row.train_losses, 1):
            run.log_metrics({"train_loss": loss}, step=step)
        run.set_tags({"status": row.status, "signature": row.signature, "reason": row.reason})
        if row.status == "done":
            run.log_artifact(Path(row.folder) / "predictions.jsonl")
