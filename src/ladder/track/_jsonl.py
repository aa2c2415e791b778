"""The JSONL tracker: one JSON event per line, artifacts copied beside the file."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ladder.errors import ConfigError
from ladder.track._redact import redact, redact_file
from ladder.track._scores import score_fields
from ladder.track._spans import activate, deactivate

if TYPE_CHECKING:
    from ladder.evaluate.score import Score

__all__ = ["JsonlTracker", "jsonl_tracker"]


class JsonlTracker:
    """Appends one JSON object per event to a file; artifacts are copied beside it.

    Every line has ``event`` (``run_start``, ``run_end``, ``params``, ``metrics``, ``tags``,
    ``artifact``, ``span``), ``run`` (the innermost open run's id, or null outside a run)
    and ``time`` (Unix seconds). ``run_start`` also has ``name``, ``tags`` and ``parent``;
    ``run_end`` has ``status`` (``FINISHED`` or ``FAILED``); ``span`` (written when a span
    ends) has ``span``, ``parent_span``, ``name``, ``kind``, ``start_ns``, ``end_ns``,
    ``status``, ``inputs``, ``outputs`` and ``attributes``. Each event is one ``write`` of a
    whole line to a file opened for appending, so a crash never leaves half a line, and
    several processes may share the file (on a local filesystem). Params, tags, spans and
    artifact copies are redacted (no secrets).

    Args:
        path: The JSONL file (created with its folder on first write).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.artifact_dir = self.path.with_name(self.path.name + "-artifacts")
        self._runs: list[str] = []

    @property
    def run_id(self) -> str | None:
        """The id of the innermost open run, or ``None`` outside any run."""
        return self._runs[-1] if self._runs else None

    @contextlib.contextmanager
    def run(self, name: str, tags: Mapping[str, str] | None = None) -> Iterator[JsonlTracker]:
        """Open a run; it ends ``FAILED`` if the block raises (the exception propagates).

        Spans opened inside the block (LLM calls, chains, agents) are written as ``span``
        events of this run.
        """
        run_id = uuid.uuid4().hex
        parent = self.run_id
        self._runs.append(run_id)
        self._write("run_start", name=name, tags=_text_map(tags or {}), parent=parent)
        token = activate(_JsonlSpans(self, run_id))
        status = "FAILED"
        try:
            yield self
            status = "FINISHED"
        finally:
            deactivate(token)
            self._write("run_end", status=status)
            self._runs.pop()

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Append a ``params`` event (values kept as JSON; others as their ``str``)."""
        values = redact({str(k): _json_value(v) for k, v in params.items()})
        self._write("params", params=values)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Append a ``metrics`` event; a non-finite value is written as null."""
        values = {str(k): _finite_or_none(float(v)) for k, v in metrics.items()}
        self._write("metrics", metrics=values, step=step)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Append a ``tags`` event."""
        self._write("tags", tags=_text_map(tags))

    def log_score(self, score: Score, prefix: str = "") -> None:
        """A ``metrics`` event (value, CI ends) and a ``tags`` event (signature)."""
        metrics, tags = score_fields(score, prefix)
        self.log_metrics(metrics)
        self.set_tags(tags)

    def log_artifact(self, path: str | os.PathLike[str]) -> None:
        """Copy a file or folder to ``PATH-artifacts/RUN_ID/NAME`` and append an event.

        Raises:
            ConfigError: ``path`` does not exist.
        """
        source = Path(path)
        if not source.exists():
            raise ConfigError(f"{source}: no such file or folder to log as an artifact")
        target = self.artifact_dir / (self.run_id or "no-run") / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
            for file in (p for p in target.rglob("*") if p.is_file()):
                redact_file(file)
        else:
            shutil.copy2(source, target)
            redact_file(target)
        self._write("artifact", source=str(source.resolve()), stored=str(target))

    def _write(self, event: str, run: str | None = None, **fields: Any) -> None:
        record = {"event": event, "run": run or self.run_id, "time": time.time(), **fields}
        line = json.dumps(record, default=str)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")


class _JsonlSpans:
    """The span sink of one open JSONL run: a ``span`` event per finished span."""

    def __init__(self, tracker: JsonlTracker, run_id: str) -> None:
        self._tracker = tracker
        self._run_id = run_id

    def start_span(
        self,
        name: str,
        kind: str,
        parent: Any,
        inputs: Any,
        attributes: dict[str, Any],
        start_ns: int,
    ) -> dict[str, Any]:
        return {
            "span": uuid.uuid4().hex[:16],
            "parent_span": parent["span"] if parent else None,
            "name": name,
            "kind": kind,
            "start_ns": start_ns,
            "inputs": inputs,
            "attributes": attributes,
        }

    def end_span(
        self,
        handle: dict[str, Any],
        outputs: Any,
        attributes: dict[str, Any],
        error: BaseException | None,
        end_ns: int,
    ) -> None:
        status = "OK" if error is None else f"ERROR: {type(error).__name__}"
        self._tracker._write(
            "span",
            run=self._run_id,
            **{**handle, "attributes": {**handle["attributes"], **attributes}},
            end_ns=end_ns,
            status=status,
            outputs=outputs,
        )


def _text_map(values: Mapping[str, Any]) -> dict[str, str]:
    text = {str(k): str(v) for k, v in values.items()}
    return {str(k): str(v) for k, v in redact(text).items()}


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return _finite_or_none(value)
    return str(value)


def jsonl_tracker(uri: str) -> JsonlTracker:
    """The tracker of a ``jsonl:PATH`` URI."""
    path = uri.partition(":")[2].strip()
    if not path:
        raise ConfigError(f"tracking URI {uri!r}: jsonl needs a file, e.g. jsonl:runs/events.jsonl")
    return JsonlTracker(Path(path).expanduser())
