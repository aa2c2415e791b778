"""The climb: run the rungs cheapest first on every candidate model, score, stop, recommend.

For each model, rungs run in the task's order. Every rung answers the same test records
and is scored with the task's metric and a bootstrap CI (same seed, same resamples for
every rung). **The stop rule** — a rung is *good enough* when all of:

1. its metric value is at least the task's ``good_enough``;
2. it is the first rung climbed on that model, or a paired bootstrap test (Koehn 2004) on
   the same test records calls it better than the rung directly below it on the same
   model (the CI of the difference above 0, on a split large enough to tell:
   :mod:`ladder.climb.honest`): a rung that only ties the cheaper rung below is not worth
   its price;
3. its p95 latency per record is within ``max_latency_s`` (when set);
4. with a judge and ``judge.min_score``: its mean judge grade is at least that
   (:mod:`ladder.climb.judging`).

Without ``all_rungs`` the climb stops on a model at its first good-enough rung. The
recommendation is the cheapest good-enough row (cost, then the lower rung), or, when none is,
the best-scoring row with the advice that nothing is good enough yet.

Before anything is written the task's data is checked (:mod:`ladder.climb.datacheck`:
leakage, duplicates, cut prompts; ``OUT/datacheck.json``): a rule the task makes an error
stops the climb with one line.

Once there is a recommendation, the cheaper variants the task allows are tried and compared
with it (:mod:`ladder.climb.optimise`; ``optimise: false`` or ``ClimbOptions.optimise``
turns this off).

State (``OUT/climb.json``) is written after every rung, atomically; ``resume=True`` keeps
the finished rows (and variants) of an interrupted climb of the same task and data (a
fingerprint of both) and runs only the rest. At the end ``OUT/flips.jsonl`` lists the test
records each rung fixed and broke against the rung below it and against the recommendation
(:mod:`ladder.climb.flips`). A climb whose total cost passes
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

from ladder.climb.datacheck import DATACHECK_FILE, DataReport, raise_on_errors
from ladder.climb.datacheck import write_report as write_datacheck
from ladder.climb.datacheck_prompts import run_data_checks
from ladder.climb.flips import FLIPS_FILE, climb_flips, write_flips
from ladder.climb.judging import Judge, make_judge, needs_judging
from ladder.climb.measure import PeakMemory
from ladder.climb.parts import Memory, Provenance, Score, Verdict
from ladder.climb.record import Row, Variant
from ladder.climb.rungs import ModelCache, RungContext, build_rung
from ladder.climb.scoring import RungJob, score_rung
from ladder.climb.state import (
    RESOLVED_TASK_FILE,
    STATE_FILE,
    check_out,
    load_variants,
    model_folder,
    resolved_task,
    resumable_rows,
    save_state,
    slug,
)
from ladder.climb.stop_rule import over_budget, recommend, verdict
from ladder.climb.task import LoadedTask, RungSpec, load_task
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
# Also in each leaderboard row: the p95, status, timings, run id and the judge column.
_LEADERBOARD_EXTRA = (
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
    engine: str | None = None  # what runs the models: ladder or vllm (None: the task's)
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
            "variants": [v.to_record() for v in self.variants],
        }


def leaderboard_rows(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Rows with the leaderboard keys (plus p95, status, timings and run id), in climb order."""
    keys = (*LEADERBOARD_KEYS, *_LEADERBOARD_EXTRA)
    return [{k: record[k] for k in keys} for record in (r.to_record() for r in rows)]


def climb(task_path: str | Path, options: ClimbOptions) -> ClimbResult:
    """Climb the task's ladder; write state, predictions and the report under ``options.out``.

    Raises:
        ConfigError: a bad task file or data (one line naming file:line and the field).
    """
    from ladder.track import get_tracker

    task = load_task(task_path)
    judge = make_judge(task, options.judge)  # a bad judge spec stops here, before any change
    models = list(options.models) or task.spec.models
    engine = options.engine or task.spec.engine
    if options.model_loader is None:
        _check_models(models, engine)
    out = Path(options.out)
    check_out(out, task, resume=options.resume, overwrite=options.overwrite)
    cache = ModelCache(options.model_loader, engine=engine)
    if engine == "vllm":
        options.log("engine: vllm serves the local models (a start takes 30-90 s on a CPU)")
    checked = _check_data(task, models, cache, options.log)
    # Nothing above wrote anything: every input is checked before an earlier result is touched.
    done = resumable_rows(out, task) if options.resume else {}
    kept = {v.key: v for v in load_variants(out) if v.status == "done"} if options.resume else {}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / RESOLVED_TASK_FILE, resolved_task(task))
    write_datacheck(checked, out / DATACHECK_FILE)
    stopped = "all rungs climbed" if options.all_rungs else ""
    tracker = get_tracker(options.tracking_uri)
    if judge is None and task.spec.judge is not None:
        options.log(
            "judge: the task has a judge section but no judge model, so nothing is judged "
            "(and judge.min_score is not applied); pass --judge SPEC"
        )
    with tracker.run(f"climb {task.spec.name}", tags={"task": task.spec.name}) as parent:
        log_parent(parent, task, models)
        climber = _Climber(task, options, cache, judge, parent, done)
        budget_hit = climber.climb_models(models)
        rows = climber.rows
        recommendation, why = recommend(rows, task)
        variants: list[Variant] = []
        if recommendation is not None and options.optimise and not budget_hit:
            variants = climber.optimise(recommendation, models, kept)
        save_state(out, task, rows, finished=True, variants=variants)
        result = ClimbResult(
            task=task,
            rows=rows,
            recommendation=recommendation,
            why=why,
            stopped=budget_hit or stopped,
            out=out,
            variants=variants,
            run_id=run_id_of(parent),
            judge=judge,
        )
        _publish(result, parent)
    return result


def _publish(result: ClimbResult, parent: Any) -> None:
    """Write the leaderboard and the report, and log them with the state into ``parent``."""
    from ladder.climb.report import write_report

    out, rec = result.out, result.recommendation
    atomic_write_text(out / LEADERBOARD_FILE, json.dumps(result.to_json(), indent=2) + "\n")
    write_flips(out / FLIPS_FILE, climb_flips(result.rows, rec))
    result.report = write_report(result, out / "report.html")
    for name in ("report.html", STATE_FILE, LEADERBOARD_FILE, RESOLVED_TASK_FILE, FLIPS_FILE):
        parent.log_artifact(out / name)
    if rec is not None:
        parent.set_tags({"recommendation": rec.key, "recommendation.run_id": rec.provenance.run_id})


def _check_data(
    task: LoadedTask, models: Sequence[str], cache: ModelCache, log: Callable[[str], None]
) -> DataReport:
    """The task's data checks (:mod:`ladder.climb.datacheck`): an error stops the climb
    before anything is written; each warning is one line of the log."""
    report = run_data_checks(task, models, cache)
    raise_on_errors(report)
    for finding in report.findings:
        log(f"data check (warning): {finding.message}")
    return report


def _check_models(models: Sequence[str], engine: str) -> None:
    """Every candidate model must be loadable (as far as that shows without loading it),
    on the engine that will run it (vLLM installed, a local checkpoint for it)."""
    from ladder.models.engine_spec import on_engine

    for model in models:
        check_model(model)
        if engine != "ladder":
            check_model(on_engine(model, engine))


@dataclass
class _Climber:
    """One climb under way: what every rung run needs, and the rows so far.

    ``parent`` is the tracker's open parent run; ``done`` the finished rows of an earlier
    climb of the same task (``--resume``), by key.
    """

    task: LoadedTask
    options: ClimbOptions
    cache: ModelCache
    judge: Judge | None
    parent: Any
    done: dict[str, Row]
    rows: list[Row] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return Path(self.options.out)

    def climb_models(self, models: Sequence[str]) -> str:
        """Climb each model in turn; returns why the climb stopped early (budget), or ""."""
        for model in models:
            reason = self.climb_model(model)
            if reason:
                return reason
        return ""

    def climb_model(self, model: str) -> str:
        """Climb one model; returns a reason when the whole climb must stop (budget)."""
        below: Row | None = None
        tuned: Row | None = None  # the last rung below that fine-tuned a checkpoint (for dpo)
        for index, spec in enumerate(self.task.spec.rung_specs()):
            row = self.done.get(f"{model}|{spec.name}")
            if row is None:
                folder = self.out / "rungs" / model_folder(model) / f"{index:02d}-{slug(spec.name)}"
                row = self._climb_rung(spec, model, folder, below, tuned)
            else:
                self._keep(row, spec, below)
            self.rows.append(row)
            save_state(self.out, self.task, self.rows, finished=False)
            if row.done:
                below = row
                if row.answered_by != model and capabilities_of(row.answered_by).trainable:
                    tuned = row
            spent = over_budget(self.task, self.rows)
            if spent is not None:
                limit = self.task.spec.max_cost_usd
                return f"budget: the climb cost ${spent:.4f}, over max_cost_usd ${limit}"
            if row.verdict.good_enough and not self.options.all_rungs:
                break
        self.cache.drop(model)
        return ""

    def _climb_rung(
        self, spec: RungSpec, model: str, folder: Path, below: Row | None, tuned: Row | None
    ) -> Row:
        """Run, score and (with a judge) grade one rung of the ladder in its child run."""
        # The rung runs inside its child run, so its LLM-call traces land there.
        with self.parent.run(f"rung {spec.name}", tags={"rung": spec.name, "model": model}) as run:
            self.options.log(f"{spec.name} on {model}: running")
            rung = build_rung(spec.rung, spec.options, where=str(self.task.path))
            row = self.run(RungJob(self.task, spec.name, model, rung, folder, below, tuned))
            if needs_judging(self.judge, row):
                self._grade(row, below)
            record_row(run, self.task, row, spec, self.out)
        return row

    def _keep(self, row: Row, spec: RungSpec, below: Row | None) -> None:
        """A row finished by an earlier climb: kept, and graded when its grades are missing."""
        self.options.log(f"{spec.name} on {row.model}: finished before, kept")
        if needs_judging(self.judge, row):
            tags = {"rung": spec.name, "model": row.model, "of": row.provenance.run_id}
            with self.parent.run(f"judge {spec.name}", tags=tags) as run:
                self._grade(row, below)
                record_judge(run, row)

    def run(self, job: RungJob) -> Row:
        """Run ``job`` into its folder and score it (a rung, or a cheaper variant)."""
        o = self.options
        ctx = RungContext(job.folder, o.resume, self.cache, o.embedder, o.log)
        if job.tuned is not None:
            ctx.tuned, ctx.tuned_seconds = job.tuned.answered_by, job.tuned.training.seconds
        if not o.resume:  # --overwrite: this rung's earlier outputs go only as it re-runs
            shutil.rmtree(job.folder, ignore_errors=True)
        job.folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        try:
            with PeakMemory() as memory:
                result = job.rung.run(job.task, job.model, ctx)
        except UnsupportedError as exc:
            return Row(
                job.name,
                job.model,
                Score(job.task.spec.metric_name()),
                status="skipped",
                verdict=Verdict(False, str(exc)),
                provenance=Provenance(str(job.folder)),
            )
        row = score_rung(job, result)
        row.memory = Memory(max(memory.peak_bytes, memory.gpu_peak_bytes))
        row.timing = dataclasses.replace(row.timing, wall_s=round(time.perf_counter() - started, 3))
        return row

    def _grade(self, row: Row, below: Row | None) -> None:
        """Grade ``row``'s answers with the judge; the stop rule then sees the grade too."""
        assert self.judge is not None  # needs_judging said so
        n, name = row.score.n, self.judge.model
        self.options.log(f"{row.rung} on {row.model}: judging {n} answers with {name}")
        row.judge = self.judge.grade(self.task, row, self.cache)
        row.verdict = verdict(row, self.task, below)

    def optimise(self, winner: Row, models: list[str], kept: dict[str, Variant]) -> list[Variant]:
        """Try the cheaper variants of ``winner`` (:mod:`ladder.climb.optimise`)."""
        from ladder.climb.optimise import Optimiser

        def run(job: RungJob) -> Row:
            try:
                return self.run(job)
            finally:
                self.cache.drop(job.model)

        optimiser = Optimiser(
            task=self.task,
            out=self.out,
            rows=self.rows,
            models=models,
            run=run,
            log=lambda variant, handle: record_variant(handle, self.task, variant, self.out),
            scope=lambda name: self.parent.run(name, tags={"of": winner.key}),
            done=kept,
            say=self.options.log,
        )
        return optimiser.variants(winner)
