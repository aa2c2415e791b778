"""What a climb records in the tracker: one parent run, a child run per rung and per variant.

- **parent** (``climb TASK``): params — the task, metric, threshold, candidate models, the
  task fingerprint and the SHA-256 of every data file (``data_sha256.SPLIT``); artifacts —
  the resolved task (YAML), ``climb.json``, ``leaderboard.json`` and ``report.html``; tags —
  the recommendation and its run id.
- **rung** (``rung NAME``): params — the rung and its options, the model and the checkpoint
  that answered, the prompt template's name and content-hash version, the fingerprint and
  data hashes; metrics — value with its CI ends, cost, latency p50/p95, peak memory, the
  paired test against the rung below, training metrics and the loss per step; artifacts —
  predictions (JSONL), the raw rows with the rendered prompts, the training summary, the
  resolved task (YAML).
- **variant** (``variant NAME``): the same for a cheaper variant, plus its difference from
  the recommended row with the CI of the difference, and the savings.

Each row and variant keeps its run's id (``run_id``; empty when the tracker has no ids, as
the null tracker), and the report prints it next to every number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ladder.climb.record import Row, Variant
from ladder.climb.state import RESOLVED_TASK_FILE
from ladder.climb.task import LoadedTask, RungSpec

__all__ = ["log_parent", "record_judge", "record_row", "record_variant", "run_id_of", "task_params"]


def run_id_of(run: Any) -> str:
    """The id of the innermost open run of ``run`` (a tracker), or ``""`` when it has none."""
    return str(getattr(run, "run_id", None) or "")


def task_params(task: LoadedTask) -> dict[str, Any]:
    """What every run of a climb names: the task, its fingerprint and the data hashes."""
    return {
        "task": task.spec.name,
        "metric": task.spec.metric_name(),
        "fingerprint": task.fingerprint(),
        **{f"data_sha256.{split}": digest for split, digest in task.data_hashes.items()},
    }


def log_parent(run: Any, task: LoadedTask, models: list[str]) -> None:
    """The parent run's params."""
    run.log_params(
        {
            **task_params(task),
            "good_enough": task.spec.good_enough,
            "confidence": task.spec.confidence,
            "resamples": task.spec.resamples,
            "seed": task.spec.seed,
            "models": ",".join(models),
        }
    )


def _artifacts(run: Any, folder: Path, out: Path) -> None:
    for name in (
        "predictions.jsonl",
        "predictions.raw.jsonl",
        "finetune.json",
        "judgments.jsonl",
        "judge.json",
    ):
        if (folder / name).is_file():
            run.log_artifact(folder / name)
    if (out / RESOLVED_TASK_FILE).is_file():
        run.log_artifact(out / RESOLVED_TASK_FILE)


def _metrics(item: Row | Variant, names: tuple[str, ...]) -> dict[str, float]:
    """The named numbers of ``item``'s flat record (the names climb.json uses), set ones."""
    record = item.to_record()
    return {n: float(record[n]) for n in names if record[n] is not None}


def record_row(run: Any, task: LoadedTask, row: Row, spec: RungSpec, out: Path) -> None:
    """Log a rung's row into its (open) child run; sets the run id in its provenance."""
    row.provenance = dataclasses.replace(row.provenance, run_id=run_id_of(run))
    run.log_params(
        {
            **task_params(task),
            "rung": spec.rung,
            "label": row.rung,
            "model": row.model,
            "answered_by": row.answered_by,
            "template": task.spec.name,
            "template_version": row.provenance.template_version,
            **_flat("option", spec.options),
        }
    )
    names = ("value", "ci_low", "ci_high", "cost", "latency_p50", "latency_p95")
    metrics = _metrics(row, (*names, "p_value_vs_below", "delta_vs_below", "wall_s"))
    metrics.update(
        {
            "peak_memory_bytes": float(row.memory.peak_bytes),
            "good_enough": float(row.verdict.good_enough),
            "compute_seconds": row.cost.compute_seconds,
            "train_seconds": row.training.seconds,
            **{f"train.{k}": float(v) for k, v in row.training.metrics.items()},
        }
    )
    run.log_metrics(metrics)
    if row.judge is not None:
        record_judge(run, row, artifacts=False)
    for step, loss in enumerate(row.training.losses, 1):
        run.log_metrics({"train_loss": loss}, step=step)
    tags = {"status": row.status, "signature": row.score.signature, "reason": row.verdict.reason}
    run.set_tags(tags)
    _artifacts(run, Path(row.provenance.folder), out)


def record_judge(run: Any, row: Row, *, artifacts: bool = True) -> None:
    """Log the judge column of ``row`` (its grade, CI, judge and verdicts) into ``run``."""
    judge = row.judge
    if judge is None:
        return
    run.log_params({"judge": judge.key.split("|", 1)[0], "judge_key": judge.key})
    run.log_metrics(_metrics(row, ("judge_value", "judge_ci_low", "judge_ci_high")))
    run.set_tags({"judge_signature": judge.signature, "judge_valid": judge.valid})
    if artifacts:
        folder = Path(row.provenance.folder)
        for name in ("judgments.jsonl", "judge.json"):
            if (folder / name).is_file():
                run.log_artifact(folder / name)


def record_variant(run: Any, task: LoadedTask, variant: Variant, out: Path) -> None:
    """Log a cheaper variant that ran into its (open) child run; sets the run id in its
    provenance."""
    run.set_tags({"variant": variant.key, "of": variant.of})
    variant.provenance = dataclasses.replace(variant.provenance, run_id=run_id_of(run))
    run.log_params(
        {
            **task_params(task),
            "kind": variant.kind,
            "variant": variant.name,
            "rung": variant.rung,
            "model": variant.model,
            "of": variant.of,
            "template_version": variant.provenance.template_version,
            **({"weights_file": variant.weights.path} if variant.weights.path else {}),
        }
    )
    names = ("value", "ci_low", "ci_high", "delta", "delta_ci_low", "delta_ci_high", "cost")
    more = ("cost_saving", "latency_p50", "latency_saving", "wall_s", "tokens_per_s")
    sized = ("weights_bytes",) if variant.weights.path else ()  # int8 has no file of its own
    metrics = _metrics(variant, (*names, *more, *sized))
    metrics["keeps_quality"] = float(variant.keeps_quality)
    metrics["peak_memory_bytes"] = float(variant.memory.peak_bytes)
    run.log_metrics(metrics)
    run.set_tags({"verdict": variant.verdict, "reason": variant.reason})
    _artifacts(run, Path(variant.provenance.folder), out)


def _flat(prefix: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Nested options as dotted params: ``option.train.max_steps``."""
    flat: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, Mapping):
            flat.update(_flat(f"{prefix}.{key}", value))
        else:
            flat[f"{prefix}.{key}"] = value
    return flat
