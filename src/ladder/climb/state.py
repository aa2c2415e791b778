"""What a climb keeps on disk: the rows (``OUT/climb.json``) and each rung's predictions.

``climb.json`` is rewritten atomically after every rung, so a crash loses at most the rung
under way; ``--resume`` reads it back (only for the same task and data: a fingerprint of
both). ``RUNG/predictions.jsonl`` holds one line per test record: input, reference, the
parsed prediction, the raw output, its per-example score and latency.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ladder.climb.rungs import RungResult
from ladder.climb.task import LoadedTask
from ladder.errors import ConfigError
from ladder.fsutil import atomic_write_text

__all__ = ["STATE_FILE", "Row", "load_state", "predictions_of", "resumable_rows", "save_state"]

STATE_FILE = "climb.json"


@dataclass
class Row:
    """One rung on one model: its score, what it cost, and the verdict."""

    rung: str
    model: str
    metric: str
    status: str = "done"  # done | skipped
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    signature: str = ""
    cost: float = 0.0
    latency_p50: float | None = None
    latency_p95: float | None = None
    peak_memory: int = 0
    good_enough: bool = False
    below: str | None = None
    delta_vs_below: float | None = None
    p_value_vs_below: float | None = None
    answered_by: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    compute_seconds: float = 0.0
    wall_s: float = 0.0
    reason: str = ""
    train_losses: list[float] = field(default_factory=list)
    folder: str = ""

    @property
    def key(self) -> str:
        """``model|rung``: identifies a row across resumes."""
        return f"{self.model}|{self.rung}"


def write_predictions(
    folder: Path,
    task: LoadedTask,
    result: RungResult,
    predictions: list[str],
    per_example: list[float] | None,
) -> None:
    lines = []
    for i, (record, pred) in enumerate(zip(task.test, predictions, strict=True)):
        item = {
            "index": i,
            "input": record["input"],
            "reference": record["answer"],
            "prediction": pred,
            "output": result.outputs[i],
            "score": per_example[i] if per_example is not None else float(pred == record["answer"]),
            "latency_s": result.latencies[i],
        }
        lines.append(json.dumps(item, ensure_ascii=False) + "\n")
    atomic_write_text(folder / "predictions.jsonl", "".join(lines))


def prediction_texts(row: Row) -> list[str]:
    path = Path(row.folder) / "predictions.jsonl"
    return [json.loads(line)["prediction"] for line in path.read_text("utf-8").splitlines()]


def predictions_of(row: Row) -> list[dict[str, Any]]:
    """The per-record predictions a finished row wrote (empty for a skipped row)."""
    path = Path(row.folder) / "predictions.jsonl"
    if row.status != "done" or not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def save_state(out: Path, task: LoadedTask, rows: Sequence[Row], *, finished: bool) -> None:
    state = {
        "task": task.spec.name,
        "fingerprint": task.fingerprint(),
        "finished": finished,
        "rows": [asdict(r) for r in rows],
    }
    atomic_write_text(out / STATE_FILE, json.dumps(state, indent=2) + "\n")


def resumable_rows(out: Path, task: LoadedTask) -> dict[str, Row]:
    path = out / STATE_FILE
    if not path.is_file():
        return {}
    state = json.loads(path.read_text(encoding="utf-8"))
    if state.get("fingerprint") != task.fingerprint():
        raise ConfigError(
            f"{path}: state of a different task or data; run without --resume to start over"
        )
    rows = [Row(**r) for r in state.get("rows", [])]
    return {r.key: r for r in rows if r.status == "done"}


def load_state(out: str | Path) -> list[Row]:
    """The rows a climb saved in ``out`` (for reports of earlier climbs)."""
    state = json.loads((Path(out) / STATE_FILE).read_text(encoding="utf-8"))
    return [Row(**r) for r in state.get("rows", [])]


def resolved_task(task: LoadedTask) -> str:
    data = {
        "task": task.spec.model_dump(mode="json"),
        "data_sha256": task.data_hashes,
        "fingerprint": task.fingerprint(),
        "file": str(task.path),
    }
    return json.dumps(data, indent=2) + "\n"


def slug(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in text)
    return keep.strip("-")[:60] or "x"
