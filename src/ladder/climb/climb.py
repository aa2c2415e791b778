"""The climb: run the rungs cheapest first on every candidate model, score, stop, recommend.

For each model, rungs run in the task's order. Every rung answers the same test records
and is scored with the task's metric and a bootstrap CI (same seed, same resamples for
every rung). **The stop rule** — a rung is *good enough* when all of:

1. its metric value is at least the task's ``good_enough``;
2. it is the first rung climbed on that model, or a paired bootstrap test (Koehn 2004) on
   the same test records says it is significantly better than the rung directly below it
   on the same model (p < 1 - ``confidence``): a rung that only ties the cheaper rung below
   is not worth its price;
3. its p95 latency per record is within ``max_latency_s`` (when set);
4. with a judge and ``judge.min_score``: its mean judge grade is at least that
   (:mod:`ladder.climb.judging`).

Without ``all_rungs`` the climb stops on a model at its first good-enough rung. The
recommendation is the cheapest good-enough row (cost, then the lower rung), or, when none is,
the best-scoring row with the advice that nothing is good enough yet.

Once there is a recommendation, the cheaper variants the task allows are tried and compared
with it (:mod:`ladder.climb.optimise`; ``optimise: false`` or ``ClimbOptions.optimise``
turns this off).

State (``OUT/climb.json``) is written after every rung, atomically; ``resume=True`` keeps
the finished rows (and variants) of an interrupted climb of the same task and data (a
fingerprint of both) and runs only the rest. A climb whose total cost passes
``max_cost_usd`` stops after the rung that passed it, keeping every finished row, and tries
no variants. The tracker gets a parent run and a child run per rung and per variant
(:mod:`ladder.climb.tracking`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladder.climb.judging import Judge, make_judge, needs_judging
from ladder.climb.measure import PeakMemory, paired_test, percentile
from ladder.climb.rungs import ModelCache, Rung, RungContext, RungResult, build_rung
from ladder.climb.state import (
    RESOLVED_TASK_FILE,
    STATE_FILE,
    Row,
    Variant,
    check_out,
    load_variants,
    model_folder,
    prediction_texts,
    resolved_task,
    resumable_rows,
    save_state,
    slug,
    write_predictions,
)
from ladder.climb.task import LoadedTask, RungSpec, load_task, parse_output
from ladder.climb.tracking import (
    log_parent,
    record_judge,
    record_row,
    record_variant,
    run_id_of,
)
from ladder.errors import UnsupportedError
from ladder.fsutil import atomic_write_text
from ladder.models import capabilities_of, check_model

__all__ = ["LEADERBOARD_FILE", "ClimbOptions", "ClimbResult", "Row", "climb", "leaderboard_rows"]

LEADERBOARD_FILE = "leaderboard.json"

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
    optimise: bool = True
    tracking_uri: str | None = None
    overwrite: bool = False  # replace the earlier climb's results in ``out`` rung by rung
    judge: str | None = None  # judge model spec; replaces the task's judge.model
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
    variants: list[Variant] = field(default_factory=list)
    run_id: str = ""  # the tracker's parent run ("" when the tracker has no ids)
    judge: Judge | None = None

    def leaderboard(self) -> list[dict[str, Any]]:
        """The leaderboard rows."""
        return leaderboard_rows(self.rows)

    def to_json(self) -> dict[str, Any]:
        """What ``--json`` writes (and ``OUT/leaderboard.json``): the rows, the
        recommendation, the cheaper variants, and the run ids and data hashes behind them."""
        rec, j = self.recommendation, self.judge
        return {
            "task": self.task.spec.name,
            "metric": self.task.spec.metric_name(),
            "good_enough": self.task.spec.good_enough,
            "fingerprint": self.task.fingerprint(),
            "data_sha256": dict(self.task.data_hashes),
            "run_id": self.run_id,
            "judge": None if j is None else {"model": j.model, "key": j.key},
            "recommendation": None if rec is None else {"rung": rec.rung, "model": rec.model},
            "why": self.why,
            "stopped": self.stopped,
            "leaderboard": self.leaderboard(),
            "variants": [dataclasses.asdict(v) for v in self.variants],
        }


def leaderboard_rows(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Rows with the leaderboard keys (plus p95, status, timings and run id), in climb order."""
    extra = (
        "latency_p95",
        "status",
        "reason",
        "wall_s",
        "compute_seconds",
        "run_id",
        "judge_value",
        "judge_ci_low",
        "judge_ci_high",
        "judge_valid",
    )
    return [{k: getattr(r, k) for k in (*LEADERBOARD_KEYS, *extra)} for r in rows]


def climb(task_path: str | Path, options: ClimbOptions) -> ClimbResult:
    """Climb the task's ladder; write state, predictions and the report under ``options.out``.

    Raises:
        ConfigError: a bad task file or data (one line naming file:line and the field).
    """
    from ladder.track import get_tracker

    task = load_task(task_path)
    judge = make_judge(task, options.judge)  # a bad judge spec stops here, before any change
    models = list(options.models) or task.spec.models
    if options.model_loader is None:
        _check_models(models)
    out = Path(options.out)
    check_out(out, task, resume=options.resume, overwrite=options.overwrite)
    # Nothing above wrote anything: every input is checked before an earlier result is touched.
    done = resumable_rows(out, task) if options.resume else {}
    kept = {v.key: v for v in load_variants(out) if v.status == "done"} if options.resume else {}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / RESOLVED_TASK_FILE, resolved_task(task))
    cache = ModelCache(options.model_loader)
    rows: list[Row] = []
    stopped = "all rungs climbed" if options.all_rungs else ""
    tracker = get_tracker(options.tracking_uri)
    if judge is None and task.spec.judge is not None:
        options.log(
            "judge: the task has a judge section but no judge model, so nothing is judged "
            "(and judge.min_score is not applied); pass --judge SPEC"
        )
    with tracker.run(f"climb {task.spec.name}", tags={"task": task.spec.name}) as parent:
        log_parent(parent, task, models)
        run_id = run_id_of(parent)
        budget_hit = ""
        for model in models:
            budget_hit = _climb_model(task, model, options, cache, done, rows, parent, judge)
            if budget_hit:
                stopped = budget_hit
                break
        recommendation, why = recommend(rows, task)
        variants: list[Variant] = []
        if recommendation is not None and options.optimise and not budget_hit:
            variants = _optimise(task, recommendation, rows, models, options, cache, parent, kept)
        save_state(out, task, rows, finished=True, variants=variants)
        from ladder.climb.report import write_report

        result = ClimbResult(
            task, rows, recommendation, why, stopped, out, None, variants, run_id, judge
        )
        atomic_write_text(out / LEADERBOARD_FILE, json.dumps(result.to_json(), indent=2) + "\n")
        result.report = write_report(result, out / "report.html")
        for name in ("report.html", STATE_FILE, LEADERBOARD_FILE, RESOLVED_TASK_FILE):
            parent.log_artifact(out / name)
        if recommendation is not None:
            parent.set_tags(
                {
                    "recommendation": recommendation.key,
                    "recommendation.run_id": recommendation.run_id,
                }
            )
    return result


def _check_models(models: Sequence[str]) -> None:
    """Every candidate model must be loadable (as far as that shows without loading it)."""
    for model in models:
        check_model(model)


def _optimise(
    task: LoadedTask,
    winner: Row,
    rows: list[Row],
    models: list[str],
    options: ClimbOptions,
    cache: ModelCache,
    tracker: Any,
    kept: dict[str, Variant],
) -> list[Variant]:
    from ladder.climb.optimise import Optimiser

    out = Path(options.out)

    def run(vtask: LoadedTask, model: str, spec: RungSpec, rung: Rung, folder: Path) -> Row:
        try:
            return _run_rung(vtask, model, spec, folder, options, cache, None, rung=rung)
        finally:
            cache.drop(model)

    optimiser = Optimiser(
        task,
        out,
        rows,
        models,
        run,
        lambda variant, handle: record_variant(handle, task, variant, out),
        lambda name: tracker.run(name, tags={"of": winner.key}),
        done=kept,
        say=options.log,
    )
    return optimiser.variants(winner)


def _climb_model(
    task: LoadedTask,
    model: str,
    options: ClimbOptions,
    cache: ModelCache,
    done: dict[str, Row],
    rows: list[Row],
    tracker: Any,
    judge: Judge | None,
) -> str:
    """Climb one model; returns a reason when the whole climb must stop (budget)."""
    out = Path(options.out)
    below: Row | None = None
    tuned: Row | None = None  # the last rung below that fine-tuned a checkpoint (for dpo)
    for index, spec in enumerate(task.spec.rung_specs()):
        key = f"{model}|{spec.name}"
        row = done.get(key)
        tags = {"rung": spec.name, "model": model}
        if row is None:
            folder = out / "rungs" / model_folder(model) / f"{index:02d}-{slug(spec.name)}"
            # The rung runs inside its child run, so its LLM-call traces land there.
            with tracker.run(f"rung {spec.name}", tags=tags) as run:
                row = _run_rung(task, model, spec, folder, options, cache, below, tuned=tuned)
                if judge is not None and needs_judging(judge, row):
                    _judge(task, row, judge, cache, below, options)
                record_row(run, task, row, spec, out)
        else:
            options.log(f"{spec.name} on {model}: finished before, kept")
            if judge is not None and needs_judging(judge, row):
                with tracker.run(f"judge {spec.name}", tags={**tags, "of": row.run_id}) as run:
                    _judge(task, row, judge, cache, below, options)
                    record_judge(run, row)
        rows.append(row)
        save_state(out, task, rows, finished=False)
        if row.status == "done":
            below = row
            if row.answered_by != model and capabilities_of(row.answered_by).trainable:
                tuned = row
        spent = sum(r.cost for r in rows)
        limit = task.spec.max_cost_usd
        if limit is not None and spent > limit:
            return f"budget: the climb cost ${spent:.4f}, over max_cost_usd ${limit}"
        if row.good_enough and not options.all_rungs:
            break
    cache.drop(model)
    return ""


def _judge(
    task: LoadedTask,
    row: Row,
    judge: Judge,
    cache: ModelCache,
    below: Row | None,
    options: ClimbOptions,
) -> None:
    """Grade ``row``'s answers with the judge; the stop rule then sees the grade too."""
    options.log(f"{row.rung} on {row.model}: judging {row.n} answers with {judge.model}")
    judge.grade(task, row, cache)
    row.good_enough, row.reason = verdict(row, task, below)


def _run_rung(
    task: LoadedTask,
    model: str,
    spec: RungSpec,
    folder: Path,
    options: ClimbOptions,
    cache: ModelCache,
    below: Row | None,
    *,
    tuned: Row | None = None,
    rung: Rung | None = None,
) -> Row:
    """Run one rung (``rung``, or the one ``spec`` names) into ``folder`` and score it."""
    metric = task.spec.metric_name()
    if rung is None:  # a variant's runner says what it runs itself
        options.log(f"{spec.name} on {model}: running")
        rung = build_rung(spec.rung, spec.options, where=str(task.path))
    ctx = RungContext(folder, options.resume, cache, options.embedder, options.log)
    if tuned is not None:
        ctx.tuned, ctx.tuned_seconds = tuned.answered_by, tuned.train_seconds
    if not options.resume:  # --overwrite: this rung's earlier outputs go only as it re-runs
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
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
        template_version=str(result.details.get("template_version", "")),
        train_seconds=float(result.details.get("training_seconds", 0.0)),
        train_metrics=dict(result.details.get("train_metrics", {})),
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
    least = s.judge.min_score if s.judge is not None else None
    if least is not None and row.judge_key and (row.judge_value is None or row.judge_value < least):
        return False, f"judge {_num(row.judge_value)} is below judge.min_score {least}"
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
