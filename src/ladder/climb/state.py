"""What a climb keeps on disk: the rows (``OUT/climb.json``) and each rung's predictions.

``climb.json`` is rewritten atomically after every rung and every cheaper variant, so a
crash loses at most the one under way; ``--resume`` reads it back (only for the same task
and data: a fingerprint of both). ``RUNG/predictions.jsonl`` holds one line per test
record: its index and id, input, reference, the parsed prediction, the raw output, its
per-example score and latency. ``task.resolved.yaml`` is the task as validated, with the
SHA-256 of each data file.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ladder.climb.record import Row, Variant
from ladder.climb.rungs import RungResult
from ladder.climb.task import LoadedTask
from ladder.errors import ConfigError
from ladder.fsutil import atomic_write_text

__all__ = [
    "RESOLVED_TASK_FILE",
    "STATE_FILE",
    "check_out",
    "load_state",
    "load_variants",
    "model_folder",
    "prediction_texts",
    "predictions_of",
    "record_id",
    "resolved_task",
    "resumable_rows",
    "save_state",
    "slug",
    "write_predictions",
]

STATE_FILE = "climb.json"
_PLAIN_SPEC = re.compile(r"[a-z]+:[A-Za-z0-9_.][A-Za-z0-9_.-]{0,47}")
RESOLVED_TASK_FILE = "task.resolved.yaml"


def write_predictions(
    folder: Path,
    task: LoadedTask,
    result: RungResult,
    predictions: list[str],
    per_example: list[float] | None,
) -> None:
    """Write ``folder/predictions.jsonl``: one line per test record (module docstring);
    without per-example scores a record scores 1.0 when its prediction is the reference."""
    lines = []
    for i, (record, pred) in enumerate(zip(task.test, predictions, strict=True)):
        item = {
            "index": i,
            "id": record_id(record, i),
            "input": record["input"],
            "reference": record["answer"],
            "prediction": pred,
            "output": result.outputs[i],
            "score": per_example[i] if per_example is not None else float(pred == record["answer"]),
            "latency_s": result.latencies[i],
        }
        lines.append(json.dumps(item, ensure_ascii=False) + "\n")
    atomic_write_text(folder / "predictions.jsonl", "".join(lines))


def record_id(record: dict[str, Any], index: int) -> str:
    """A test record's id: its own ``id`` field, else ``FILE:LINE`` of its split (else
    ``#INDEX``), so a flip or a gate names a record the user can find."""
    if record.get("id") not in (None, ""):
        return str(record["id"])
    where = record.get("_where")
    return Path(where).name if where else f"#{index}"


def prediction_texts(row: Row) -> list[str]:
    """The parsed predictions a finished row wrote, in test order (for paired tests)."""
    path = Path(row.provenance.folder) / "predictions.jsonl"
    return [json.loads(line)["prediction"] for line in path.read_text("utf-8").splitlines()]


def predictions_of(row: Row) -> list[dict[str, Any]]:
    """The per-record predictions a finished row wrote (empty for a skipped row)."""
    path = Path(row.provenance.folder) / "predictions.jsonl"
    if not row.done or not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def save_state(
    out: Path,
    task: LoadedTask,
    rows: Sequence[Row],
    *,
    finished: bool,
    variants: Sequence[Variant] = (),
) -> None:
    """Write ``out/climb.json`` (atomically): the task, its fingerprint, whether the climb
    finished, and the rows and variants as flat records (:mod:`ladder.climb.record`)."""
    state = {
        "task": task.spec.name,
        "fingerprint": task.fingerprint(),
        "finished": finished,
        "rows": [r.to_record() for r in rows],
        "variants": [v.to_record() for v in variants],
    }
    atomic_write_text(out / STATE_FILE, json.dumps(state, indent=2) + "\n")


def check_out(out: Path, task: LoadedTask, *, resume: bool, overwrite: bool) -> None:
    """Refuse a climb that would silently replace an earlier one's results in ``out``.

    An earlier climb's results go only when the user says so: ``resume`` keeps its finished
    rungs (same task and data only), ``overwrite`` replaces them rung by rung as each one
    runs again. Writes nothing.

    Raises:
        ConfigError: both flags; an earlier climb without either; or ``resume`` on the
            state of a different task or data.
    """
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: pass one")
    path = out / STATE_FILE
    if not path.is_file() or overwrite:
        return
    state = _read_state(path)
    if not resume:
        rows = state.get("rows", [])
        done = sum(1 for r in rows if r.get("status") == "done")
        raise ConfigError(
            f"{out} already holds a climb of {state.get('task', '?')!r} ({done} finished "
            f"rung{'s' * (done != 1)}); pass --resume to keep them and run the rest, "
            "--overwrite to replace them, or another --out"
        )
    if state.get("fingerprint") != task.fingerprint():
        raise ConfigError(
            f"{path}: state of a different task or data; pass --overwrite to start over "
            "in this folder, or another --out"
        )


def resumable_rows(out: Path, task: LoadedTask) -> dict[str, Row]:
    """The finished rows of an earlier climb of the same task and data in ``out``."""
    path = out / STATE_FILE
    if not path.is_file():
        return {}
    check_out(out, task, resume=True, overwrite=False)
    rows = [Row.from_record(r) for r in _read_state(path).get("rows", [])]
    return {r.key: r for r in rows if r.done}


def _read_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path}: not a climb state file ({exc}); move it away or pass --overwrite"
        ) from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: not a climb state file; move it away or pass --overwrite")
    return state


def load_state(out: str | Path) -> list[Row]:
    """The rows a climb saved in ``out`` (for reports of earlier climbs)."""
    state = json.loads((Path(out) / STATE_FILE).read_text(encoding="utf-8"))
    return [Row.from_record(r) for r in state.get("rows", [])]


def load_variants(out: str | Path) -> list[Variant]:
    """The cheaper variants a climb saved in ``out`` (none when the file has none)."""
    path = Path(out) / STATE_FILE
    if not path.is_file():
        return []
    state = json.loads(path.read_text(encoding="utf-8"))
    return [Variant.from_record(v) for v in state.get("variants", [])]


def resolved_task(task: LoadedTask) -> str:
    """The task as validated (every default filled in), its data hashes and fingerprint, as
    YAML: what a run's numbers were made from."""
    import yaml

    data = {
        "file": str(task.path),
        "fingerprint": task.fingerprint(),
        "data_sha256": dict(task.data_hashes),
        "task": task.spec.model_dump(mode="json"),
    }
    return "# the task as ladder climb validated it\n" + yaml.safe_dump(data, sort_keys=False)


def model_folder(model: str) -> str:
    """The folder name of one model's rungs, unique per spec: two specs whose slugs agree,
    such as ``hf:/a/m`` and ``hf:/a-m``, never share or clear a folder.

    A plain spec (``builtin:tiny``) reads as itself (``builtin-tiny``); any other gets a
    short hash of the spec after its slug."""
    if _PLAIN_SPEC.fullmatch(model):
        return model.replace(":", "-", 1)
    digest = hashlib.sha256(model.encode("utf-8")).hexdigest()[:8]
    return f"{slug(model)[:48]}-{digest}"


def slug(text: str) -> str:
    """``text`` as a folder name: letters, digits, ``-_.``, at most 60 characters."""
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in text)
    return re.sub("-{2,}", "-", keep).strip("-")[:60] or "x"
