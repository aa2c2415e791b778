"""The tracking seam: the one place results leave ladder for a tracker.

Library code and CLI verbs log through a :class:`Tracker`; which one is chosen by a URI
(``LADDER_TRACKING_URI`` today, a ``--track`` flag later) in :func:`get_tracker`:

- unset or ``none``: :class:`NullTracker`, which does nothing (the default);
- ``jsonl:PATH``: :class:`JsonlTracker`, which appends one JSON event per line to PATH and
  copies artifacts into ``PATH-artifacts/RUN_ID/``;
- MLflow URIs (``sqlite:///...``, ``file:...``, ``http(s)://...``): only once an MLflow
  tracker has joined through :func:`register_tracker` (the tracking issue). Until then they
  are refused with a one-line error; ``mlflow`` is never imported anywhere else.

    from ladder.track import get_tracker
    with get_tracker().run("eval arith-mc", tags={"model": "tiny"}) as tracker:
        tracker.log_params({"num_fewshot": 2})
        tracker.log_score(result.scores["acc"])
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ladder.errors import ConfigError

if TYPE_CHECKING:  # only for annotations: importing ladder.evaluate costs ~0.15 s
    from ladder.evaluate.score import Score

__all__ = [
    "TRACKING_URI_ENV",
    "JsonlTracker",
    "NullTracker",
    "Tracker",
    "get_tracker",
    "log_evaluation",
    "register_tracker",
    "score_fields",
    "tracker_schemes",
]

TRACKING_URI_ENV = "LADDER_TRACKING_URI"

# URI schemes MLflow reads; named in the error until an MLflow tracker is registered.
_MLFLOW_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "databricks")


@runtime_checkable
class Tracker(Protocol):
    """Where runs, parameters, metrics, scores and artifacts are recorded."""

    def run(
        self, name: str, tags: Mapping[str, str] | None = None
    ) -> contextlib.AbstractContextManager[Tracker]:
        """A run: everything logged inside the ``with`` block belongs to it (runs nest)."""
        ...

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Settings of the run (model, task, few-shot count ...): set once per key."""
        ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Numbers, optionally at a step (a training step, a rung)."""
        ...

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Free-form labels of the run; unlike params they may be overwritten."""
        ...

    def log_score(self, score: Score, prefix: str = "") -> None:
        """A :class:`Score`: value and CI ends as metrics, the signature as a tag."""
        ...

    def log_artifact(self, path: str | os.PathLike[str]) -> None:
        """A file or folder the run produced (samples, summary, a report)."""
        ...


def score_fields(score: Score, prefix: str = "") -> tuple[dict[str, float], dict[str, str]]:
    """The metrics and tags a :class:`Score` is logged as.

    ``{prefix}{metric}`` is the value; ``.ci_low`` / ``.ci_high`` are added when there is an
    interval; the tag ``{prefix}{metric}.signature`` says how the number was made. Non-finite
    ends are left out.
    """
    key = f"{prefix}{score.metric}"
    metrics = {key: float(score.value)}
    for end, value in (("ci_low", score.ci_low), ("ci_high", score.ci_high)):
        if value is not None and math.isfinite(value):
            metrics[f"{key}.{end}"] = float(value)
    return metrics, {f"{key}.signature": score.signature}


class NullTracker:
    """Records nothing: the default when no tracking URI is set."""

    @contextlib.contextmanager
    def run(self, name: str, tags: Mapping[str, str] | None = None) -> Iterator[NullTracker]:
        """A run that records nothing."""
        yield self

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Ignored."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Ignored."""

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Ignored."""

    def log_score(self, score: Score, prefix: str = "") -> None:
        """Ignored."""

    def log_artifact(self, path: str | os.PathLike[str]) -> None:
        """Ignored."""


class JsonlTracker:
    """Appends one JSON object per event to a file; artifacts are copied beside it.

    Every line has ``event`` (``run_start``, ``run_end``, ``params``, ``metrics``, ``tags``,
    ``artifact``), ``run`` (the innermost open run's id, or null outside a run) and
    ``time`` (Unix seconds). ``run_start`` also has ``name``, ``tags`` and ``parent``;
    ``run_end`` has ``status`` (``FINISHED`` or ``FAILED``). Each event is one ``write``
    of a whole line to a file opened for appending, so a crash never leaves half a line,
    and several processes may share the file (on a local filesystem).

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
        """Open a run; it ends ``FAILED`` if the block raises (the exception propagates)."""
        run_id = uuid.uuid4().hex
        parent = self.run_id
        self._runs.append(run_id)
        self._write("run_start", name=name, tags=dict(tags or {}), parent=parent)
        status = "FAILED"
        try:
            yield self
            status = "FINISHED"
        finally:
            self._write("run_end", status=status)
            self._runs.pop()

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Append a ``params`` event (values kept as JSON; others as their ``str``)."""
        self._write("params", params={str(k): _json_value(v) for k, v in params.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Append a ``metrics`` event; a non-finite value is written as null."""
        values = {str(k): _finite_or_none(float(v)) for k, v in metrics.items()}
        self._write("metrics", metrics=values, step=step)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Append a ``tags`` event."""
        self._write("tags", tags={str(k): str(v) for k, v in tags.items()})

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
        else:
            shutil.copy2(source, target)
        self._write("artifact", source=str(source.resolve()), stored=str(target))

    def _write(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "run": self.run_id, "time": time.time(), **fields})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return _finite_or_none(value)
    return str(value)


# -- choosing a tracker ------------------------------------------------------------------

TrackerFactory = Callable[[str], Tracker]


def _jsonl_tracker(uri: str) -> JsonlTracker:
    path = uri.partition(":")[2].strip()
    if not path:
        raise ConfigError(f"tracking URI {uri!r}: jsonl needs a file, e.g. jsonl:runs/events.jsonl")
    return JsonlTracker(Path(path).expanduser())


_TRACKERS: dict[str, TrackerFactory] = {
    "none": lambda uri: NullTracker(),
    "jsonl": _jsonl_tracker,
}


def register_tracker(scheme: str, factory: TrackerFactory) -> None:
    """Make ``scheme:...`` URIs build ``factory(uri)`` (it gets the whole URI).

    The MLflow tracker joins with one call per scheme it reads (``sqlite``, ``http`` ...).
    """
    _TRACKERS[scheme.lower()] = factory


def tracker_schemes() -> list[str]:
    """The URI schemes :func:`get_tracker` understands, sorted."""
    return sorted(_TRACKERS)


def get_tracker(uri: str | None = None) -> Tracker:
    """The tracker a URI names; default ``$LADDER_TRACKING_URI``, and without one a no-op.

    Args:
        uri: ``none``, ``jsonl:PATH``, or a scheme added by :func:`register_tracker`.

    Raises:
        ConfigError: an unknown scheme, or an MLflow URI while no MLflow tracker is
            registered (the message names the URI and what to use instead).
    """
    text = (os.environ.get(TRACKING_URI_ENV, "") if uri is None else uri).strip()
    if not text or text.lower() == "none":
        return NullTracker()
    scheme = text.partition(":")[0].lower()
    factory = _TRACKERS.get(scheme) if ":" in text else None
    if factory is not None:
        return factory(text)
    where = f"{TRACKING_URI_ENV}={text}" if uri is None else f"tracking URI {text!r}"
    known = ", ".join(f"{s}:" for s in tracker_schemes())
    if scheme in _MLFLOW_SCHEMES:
        raise ConfigError(
            f"{where}: MLflow tracking is not available in this ladder yet; "
            f"use one of {known} (e.g. jsonl:runs/events.jsonl)"
        )
    raise ConfigError(f"{where}: unknown tracker; use one of {known} (e.g. jsonl:PATH)")


def log_evaluation(
    tracker: Tracker,
    *,
    name: str,
    params: Mapping[str, Any],
    scores: Mapping[str, Score],
    artifacts: Sequence[str | os.PathLike[str]] = (),
    tags: Mapping[str, str] | None = None,
) -> None:
    """Log one evaluation as one run: its settings, every score and its output files.

    This is the call the ``eval`` and ``score`` verbs make after computing their scores.
    """
    with tracker.run(name, tags=tags) as run:
        run.log_params(params)
        for score in scores.values():
            run.log_score(score)
        for path in artifacts:
            run.log_artifact(path)
