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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ladder.climb.state import RESOLVED_TASK_FILE, Row, Variant
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
    values = {n: getattr(item, n) for n in names}
    return {n: float(v) for n, v in values.items() if v is not None}


def record_row(run: Any, task: LoadedTask, row: Row, spec: RungSpec, out: Path) -> None:
    """Log a rung's row into its (open) child run; sets ``row.run_id``."""
    row.run_id = run_id_of(run)
    run.log_params(
        {
            **task_params(task),
            "rung": spec.rung,
            "label": row.rung,
            "model": row.model,
            "answered_by": row.answered_by,
            "template": task.spec.name,
            "template_version": row.template_version,
            **_flat("option", spec.options),
        }
    )
    names = ("value", "ci_low", "ci_high", "cost", "latency_p50", "latency_p95")
    metrics = _metrics(row, (*names, "p_value_vs_below", "delta_vs_below", "wall_s"))
    metrics.update(
        {
            "peak_memory_bytes": float(row.peak_memory),
            "good_enough": float(row.good_enough),
            "compute_seconds": row.compute_seconds,
            "train_seconds": row.train_seconds,
            **{f"train.{k}": float(v) for k, v in row.train_metrics.items()},
        }
    )
    run.log_metrics(metrics)
    if row.judge_key:
        record_judge(run, row, artifacts=False)
    for step, loss in enumerate(row.train_losses, 1):
        run.log_metrics({"train_loss": loss}, step=step)
    run.set_tags({"status": row.status, "signature": row.signature, "reason": row.reason})
    _artifacts(run, Path(row.folder), out)


def record_judge(run: Any, row: Row, *, artifacts: bool = True) -> None:
    """Log the judge column of ``row`` (its grade, CI, judge and verdicts) into ``run``."""
    run.log_params({"judge": row.judge_key.split("|", 1)[0], "judge_key": row.judge_key})
    run.log_metrics(_metrics(row, ("judge_value", "judge_ci_low", "judge_ci_high")))
    run.set_tags({"judge_signature": row.judge_signature, "judge_valid": row.judge_valid})
    if artifacts:
        for name in ("judgments.jsonl", "judge.json"):
            if (Path(row.folder) / name).is_file():
                run.log_artifact(Path(row.folder) / name)


def record_variant(run: Any, task: LoadedTask, variant: Variant, out: Path) -> None:
    """Log a cheaper variant that ran into its (open) child run; sets ``variant.run_id``."""
    run.set_tags({"variant": variant.key, "of": variant.of})
    variant.run_id = run_id_of(run)
    run.log_params(
        {
            **task_params(task),
            "kind": variant.kind,
            "variant": variant.name,
            "rung": variant.rung,
            "model": variant.model,
            "of": variant.of,
            "template_version": variant.template_version,
        }
    )
    names = ("value", "ci_low", "ci_high", "delta", "delta_ci_low", "delta_ci_high", "cost")
    metrics = _metrics(variant, (*names, "cost_saving", "latency_p50", "latency_saving", "wall_s"))
    metrics["keeps_quality"] = float(variant.keeps_quality)
    metrics["peak_memory_bytes"] = float(variant.peak_memory)
    run.log_metrics(metrics)
    run.set_tags({"verdict": variant.verdict, "reason": variant.reason})
    _artifacts(run, Path(variant.folder), out)


def _flat(prefix: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Nested options as dotted params: ``option.train.max_steps``."""
    flat: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, Mapping):
            flat.update(_flat(f"{prefix}.{key}", value))
        else:
            flat[f"{prefix}.{key}"] = value
    return flat
