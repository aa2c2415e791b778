"""A climb's plan before it runs (``ladder climb --plan``): time, memory and cost per rung.

For every rung on every model the plan gives the wall time, the peak memory and the cost as
**low / expected / high**, from short probes on the real model and the real rung:

- the model is loaded once and timed (the climb's first rung on a model pays that load);
- each rung answers the first few test records (:data:`PROBE_RECORDS`) and is scored as the
  climb scores it; its seconds per record, times the test split, is the answering time;
- a fine-tuning rung trains twice, for :data:`PROBE_STEPS` steps: the difference of the two
  training times is the time per step (setup, saving and the final evaluation cancel out),
  which times the rung's real number of steps (its ``train`` options, ``epochs``, the
  method's defaults) plus the first probe's whole time is its training estimate;
- peak memory is the probes' peak resident set (what the climb's rows measure), widened
  above by ``ladder fit``'s estimate of the model and method (:mod:`ladder.models.memory`);
- cost is the probes' tokens at the price table scaled to the test split, plus the
  expected compute seconds at the task's ``compute_hour_usd`` (as the climb prices rows).

The expected value is that arithmetic; low and high divide and multiply the time by
``spread``: :data:`SPREAD`, or the machine's oversubscription when it is larger (load
average over CPU count: where other jobs share the CPUs, this process's share can change by
that factor between the probe and the climb). A probe of a few steps is noisy, and the
climb's own batching differs from a probe's, so the range is wide on purpose; the plan
records the machine's load when it was made. A probe of an API model
makes real (billed) calls on the probe records. Cheaper variants are not planned.

The plan is written to ``OUT/plan.json`` (atomically); the climb's report puts it next to
what each rung measured (:mod:`ladder.climb.plan_report`), when the plan is of the same task
and data (its fingerprint).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ladder.climb.measure import PeakMemory
from ladder.fsutil import atomic_write_text

if TYPE_CHECKING:
    from ladder.climb.rungs import ModelCache, RungResult
    from ladder.climb.task import LoadedTask, RungSpec

__all__ = [
    "PLAN_FILE",
    "PROBE_RECORDS",
    "PROBE_STEPS",
    "SPREAD",
    "Bounds",
    "ClimbPlan",
    "RungPlan",
    "make_plan",
    "read_plan",
    "write_plan",
]

PLAN_FILE = "plan.json"
PROBE_RECORDS = 8
PROBE_STEPS = (2, 6)
SPREAD = 2.0
_TOKEN_SPREAD = 1.25  # answers of other lengths than the probe records' (sampled, longer)


@dataclass(frozen=True)
class Bounds:
    """A planned quantity: ``low <= expected <= high``."""

    low: float
    expected: float
    high: float

    @classmethod
    def around(cls, expected: float, spread: float) -> Bounds:
        """``expected`` divided and multiplied by ``spread``."""
        return cls(expected / spread, expected, expected * spread)

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the range."""
        return self.low <= value <= self.high

    def to_json(self) -> dict[str, float]:
        """``{"low": ..., "expected": ..., "high": ...}``, rounded."""
        return {k: round(v, 6) for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class RungPlan:
    """The plan of one rung on one model.

    Attributes:
        rung: the rung's leaderboard name.
        model: the model spec.
        wall_s: seconds the rung will take (None: not probed, ``note`` says why).
        peak_bytes: peak resident memory while it runs.
        cost_usd: what its answers (and training) will cost.
        fit_bytes: ``ladder fit``'s estimate for the model and method (None: not a local
            model with shapes to count).
        probe: what was measured (records, steps, seconds), for the record.
        note: how it was estimated, or why it was not.
    """

    rung: str
    model: str
    wall_s: Bounds | None = None
    peak_bytes: Bounds | None = None
    cost_usd: Bounds | None = None
    fit_bytes: int | None = None
    probe: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """The plan's JSON object of this rung."""
        return {
            "rung": self.rung,
            "model": self.model,
            "wall_s": None if self.wall_s is None else self.wall_s.to_json(),
            "peak_bytes": None if self.peak_bytes is None else self.peak_bytes.to_json(),
            "cost_usd": None if self.cost_usd is None else self.cost_usd.to_json(),
            "fit_bytes": self.fit_bytes,
            "probe": dict(self.probe),
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RungPlan:
        """A rung's plan read back."""

        def bounds(key: str) -> Bounds | None:
            value = data.get(key)
            return None if value is None else Bounds(**value)

        return cls(
            data["rung"],
            data["model"],
            bounds("wall_s"),
            bounds("peak_bytes"),
            bounds("cost_usd"),
            data.get("fit_bytes"),
            dict(data.get("probe", {})),
            data.get("note", ""),
        )


@dataclass(frozen=True)
class ClimbPlan:
    """The plan of a whole climb: every rung on every model, and the machine it was made on."""

    task: str
    fingerprint: str
    spread: float
    rungs: list[RungPlan]
    machine: Mapping[str, Any] = field(default_factory=dict)

    def find(self, rung: str, model: str) -> RungPlan | None:
        """The plan of ``rung`` on ``model``, if planned."""
        return next((p for p in self.rungs if p.rung == rung and p.model == model), None)

    def total_wall_s(self) -> Bounds:
        """The climb's time if every planned rung runs (``--all``)."""
        planned = [p.wall_s for p in self.rungs if p.wall_s is not None]
        return Bounds(*(sum(getattr(b, k) for b in planned) for k in ("low", "expected", "high")))

    def to_json(self) -> dict[str, Any]:
        """The object of ``plan.json``."""
        return {
            "task": self.task,
            "fingerprint": self.fingerprint,
            "spread": self.spread,
            "machine": dict(self.machine),
            "total_wall_s": self.total_wall_s().to_json(),
            "rungs": [p.to_json() for p in self.rungs],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClimbPlan:
        """A plan read back from ``plan.json``."""
        rungs = [RungPlan.from_json(r) for r in data.get("rungs", [])]
        return cls(
            data["task"], data["fingerprint"], data["spread"], rungs, data.get("machine", {})
        )


def write_plan(out: Path, plan: ClimbPlan) -> Path:
    """Write ``out/plan.json`` atomically; returns its path."""
    path = Path(out) / PLAN_FILE
    atomic_write_text(path, json.dumps(plan.to_json(), indent=2) + "\n")
    return path


def read_plan(out: Path, fingerprint: str) -> ClimbPlan | None:
    """The plan in ``out`` when it is of the same task and data (``fingerprint``), else None."""
    path = Path(out) / PLAN_FILE
    if not path.is_file():
        return None
    try:
        plan = ClimbPlan.from_json(json.loads(path.read_text("utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError):
        return None  # a damaged plan only loses the comparison, never the climb
    return plan if plan.fingerprint == fingerprint else None


def make_plan(
    task: LoadedTask,
    models: Sequence[str],
    *,
    spread: float | None = None,
    cache: ModelCache | None = None,
    log: Callable[[str], None] = lambda _line: None,
) -> ClimbPlan:
    """Probe every rung on every model (module docstring) and plan the climb.

    ``spread`` divides and multiplies each expected time for its range; by default
    :data:`SPREAD`, or the machine's oversubscription (load average over CPUs) when that is
    larger: other jobs' share of the CPUs can change by that factor while the climb runs.

    Raises:
        ConfigError: a model that cannot load (checked before any probe).
    """
    from ladder.climb.rungs import ModelCache
    from ladder.models import check_model

    for model in models:
        check_model(model)
    cache = cache or ModelCache()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    cpus = os.cpu_count() or 1
    if spread is None:
        spread = round(max(SPREAD, load / cpus), 2)
    plans: list[RungPlan] = []
    with tempfile.TemporaryDirectory(prefix="ladder-plan-") as tmp:
        for model in models:
            log(f"plan: loading {model}")
            started = time.perf_counter()
            cache.get(model)
            load_s = time.perf_counter() - started
            for index, spec in enumerate(task.spec.rung_specs()):
                folder = Path(tmp) / f"{len(plans):02d}"
                log(f"plan: probing {spec.name} on {model}")
                first_load = load_s if index == 0 else 0.0
                plans.append(_plan_rung(task, spec, model, cache, folder, first_load, spread))
            cache.drop(model)
    machine = {"cpus": cpus, "load_average_1m": round(load, 2)}
    return ClimbPlan(task.spec.name, task.fingerprint(), spread, plans, machine)


@dataclass(frozen=True)
class _Probe:
    """One short run of a rung: the seconds it ran and then scored, result and peak memory."""

    seconds: float
    score_seconds: float
    result: RungResult
    peak_bytes: int


def _probe(
    task: LoadedTask,
    spec: RungSpec,
    options: Mapping[str, Any],
    model: str,
    cache: Any,
    folder: Path,
) -> _Probe:
    """Run and score ``spec`` with ``options`` on ``task`` (its few probe records)."""
    from ladder.climb.rungs import RungContext, build_rung
    from ladder.climb.scoring import RungJob, score_rung

    folder.mkdir(parents=True, exist_ok=True)
    rung = build_rung(spec.rung, options, where=str(task.path))
    started = time.perf_counter()
    with PeakMemory() as memory:
        result = rung.run(task, model, RungContext(folder, False, cache))
        ran = time.perf_counter()
        # Scoring (the bootstrap) costs about the same for any split size: not scaled.
        score_rung(RungJob(task, spec.name, model, rung, folder), result)
    done = time.perf_counter()
    peak = max(memory.peak_bytes, memory.gpu_peak_bytes)
    return _Probe(ran - started, done - ran, result, peak)


def _plan_rung(
    task: LoadedTask,
    spec: RungSpec,
    model: str,
    cache: Any,
    folder: Path,
    load_s: float,
    spread: float,
) -> RungPlan:
    """Probe one rung on one model and extrapolate to the whole test split."""
    from ladder.errors import LadderError

    n = len(task.test)
    k = min(n, PROBE_RECORDS)
    small = dataclasses.replace(task, test=task.test[:k])
    steps = _train_steps(task, spec)
    try:
        if steps is None:
            probe = _probe(small, spec, spec.options, model, cache, folder / "a")
            expected = load_s + probe.seconds * n / k + probe.score_seconds
            detail: dict[str, Any] = {"records": k, "seconds": round(probe.seconds, 3)}
            note = f"{k} records answered in {probe.seconds:.2f}s, scaled to {n}"
        else:
            short, long = PROBE_STEPS
            first = _probe(
                small, spec, _with_steps(spec.options, short), model, cache, folder / "a"
            )
            second = _probe(
                small, spec, _with_steps(spec.options, long), model, cache, folder / "b"
            )
            t1, t2 = first.result.training.seconds, second.result.training.seconds
            per_step = (t2 - t1) / (long - short) if t2 > t1 else t2 / long
            answer_s = sum(second.result.latencies) / k
            expected = (
                load_s
                + first.seconds
                + first.score_seconds
                + per_step * (steps - short)
                + answer_s * (n - k)
            )
            probe = second if second.peak_bytes >= first.peak_bytes else first
            detail = {"records": k, "steps": [short, long], "train_seconds": [t1, t2]}
            detail["seconds_per_step"] = round(per_step, 4)
            detail["steps_planned"] = steps
            note = f"{per_step:.3f}s per step x {steps} steps, {k} records scaled to {n}"
    except LadderError as exc:  # a rung the probe cannot run alone (dpo needs a tuned model)
        return RungPlan(spec.name, model, note=f"not probed: {exc}")
    detail["load_seconds"] = round(load_s, 3)
    wall = Bounds.around(expected, spread)
    fit = _fit_bytes(spec, model, task)
    return RungPlan(
        spec.name,
        model,
        wall,
        _memory(probe.peak_bytes, fit),
        _cost(task, probe, wall, n / k),
        fit,
        detail,
        note,
    )


def _with_steps(options: Mapping[str, Any], steps: int) -> dict[str, Any]:
    """A fine-tuning rung's options with ``steps`` training steps (and no epochs)."""
    train = {**dict(options.get("train") or {}), "max_steps": steps, "warmup_steps": 0}
    return {**{k: v for k, v in options.items() if k != "epochs"}, "train": train}


def _train_steps(task: LoadedTask, spec: RungSpec) -> int | None:
    """The steps a fine-tuning rung will train for (None: the rung does not train on the
    task's records), as its fine-tuning config resolves them."""
    from ladder.train.finetune_config import FinetuneConfig
    from ladder.train.methods import get_method, method_names

    if spec.rung not in method_names() or get_method(spec.rung).needs_preference:
        return None
    options = spec.options
    settings = {k: options[k] for k in ("lora", "freeze", "epochs", "max_seq_len") if k in options}
    config = FinetuneConfig(
        model="plan",
        data="plan.jsonl",
        method=spec.rung,
        out="plan",
        format="chat",
        train=dict(options.get("train") or {}),
        **settings,
    )
    return config.train_config(n_train=len(task.train)).max_steps


def _fit_bytes(spec: RungSpec, model: str, task: LoadedTask) -> int | None:
    """``ladder fit``'s estimate for the model and the rung's method (inference for a
    prompting rung); None for a model without shapes to count (an API model)."""
    from ladder.errors import LadderError
    from ladder.models.architectures import resolve_model
    from ladder.models.memory import INFERENCE, FitConfig, estimate_memory
    from ladder.train.methods import method_names

    method = spec.rung if spec.rung in method_names() else INFERENCE
    train = dict(spec.options.get("train") or {})
    batch = int(train.get("batch_size", 8)) if method != INFERENCE else 1
    try:
        shape = resolve_model(model)
        config = FitConfig(method=method, dtype="fp32", context=512, batch=batch)
        return estimate_memory(shape, config).total_bytes
    except (LadderError, ValueError):
        return None


def _memory(peak: int, fit: int | None) -> Bounds:
    """The probe's peak, widened above by ``ladder fit``'s estimate on top of it."""
    high = max(peak * 1.5, peak + (fit or 0))
    return Bounds(peak * 0.8, float(peak), high)


def _cost(task: LoadedTask, probe: _Probe, wall: Bounds, scale: float) -> Bounds:
    """Tokens at the price table scaled to the split, plus compute at ``compute_hour_usd``
    for the share of the wall time the probe counted as compute."""
    rate = task.spec.compute_hour_usd / 3600.0
    share = min(probe.result.compute_seconds / probe.seconds, 1.0) if probe.seconds > 0 else 0.0
    tokens = probe.result.token_cost_usd * scale
    return Bounds(
        tokens / _TOKEN_SPREAD + wall.low * share * rate,
        tokens + wall.expected * share * rate,
        tokens * _TOKEN_SPREAD + wall.high * share * rate,
    )
