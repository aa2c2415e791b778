"""The tracker seam: the Tracker protocol, the no-op tracker, and choosing a tracker by URI.

Which tracker records a run is chosen by a URI (``--track``/``--store``, else
``LADDER_TRACKING_URI``) in :func:`get_tracker`:

- unset or ``none``: :class:`NullTracker`, which does nothing;
- ``jsonl:PATH``: :class:`~ladder.track.JsonlTracker`, one JSON event per line;
- MLflow stores (``sqlite:///runs.db``, ``file:./mlruns``, ``http(s)://host:5000``,
  ``postgresql://...``, ``mysql://...``): :class:`~ladder.track.MlflowTracker`.

:func:`default_tracking_uri` is the store a project uses when nothing is said: an SQLite
file in the project folder.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ladder.errors import ConfigError
from ladder.track._redact import redact
from ladder.track._scores import score_fields

if TYPE_CHECKING:  # only for annotations: importing ladder.evaluate costs ~0.15 s
    from ladder.evaluate.score import Score

__all__ = [
    "DEFAULT_STORE_NAME",
    "MLFLOW_SCHEMES",
    "TRACKING_URI_ENV",
    "NullTracker",
    "Tracker",
    "default_tracking_uri",
    "get_tracker",
    "log_evaluation",
    "register_tracker",
    "score_fields",
    "tracker_schemes",
]

TRACKING_URI_ENV = "LADDER_TRACKING_URI"

DEFAULT_STORE_NAME = "ladder-runs.db"
# The store schemes the MLflow tracker reads (``postgresql+psycopg2`` counts as postgresql).
MLFLOW_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql")


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


# -- choosing a tracker ------------------------------------------------------------------

TrackerFactory = Callable[[str], Tracker]


# The built-in JSONL and MLflow trackers join from the package (ladder.track), like any other.
_TRACKERS: dict[str, TrackerFactory] = {"none": lambda uri: NullTracker()}


def register_tracker(scheme: str, factory: TrackerFactory) -> None:
    """Make ``scheme:...`` URIs build ``factory(uri)`` (it gets the whole URI).

    The MLflow tracker is registered this way for each scheme it reads (``sqlite``, ``http`` ...).
    """
    _TRACKERS[scheme.lower()] = factory


def tracker_schemes() -> list[str]:
    """The URI schemes :func:`get_tracker` understands, sorted."""
    return sorted(_TRACKERS)


def get_tracker(uri: str | None = None) -> Tracker:
    """The tracker a URI names; default ``$LADDER_TRACKING_URI``, and without one a no-op.

    Args:
        uri: ``none``, ``jsonl:PATH``, an MLflow store (``sqlite:///runs.db``,
            ``http://host:5000`` ...) or a scheme added by :func:`register_tracker`.

    Raises:
        ConfigError: an unknown scheme (the message names the URI and what to use).
    """
    text = (os.environ.get(TRACKING_URI_ENV, "") if uri is None else uri).strip()
    if not text or text.lower() == "none":
        return NullTracker()
    scheme = text.partition(":")[0].lower()
    factory = (
        _TRACKERS.get(scheme, _TRACKERS.get(scheme.partition("+")[0])) if ":" in text else None
    )
    if factory is not None:
        return factory(text)
    where = (
        f"{TRACKING_URI_ENV}={redact(text)}" if uri is None else f"tracking URI {redact(text)!r}"
    )
    known = ", ".join(f"{s}:" for s in tracker_schemes())
    raise ConfigError(
        f"{where}: unknown tracker; use one of {known} "
        f"(e.g. sqlite:///{DEFAULT_STORE_NAME} or jsonl:PATH)"
    )


def default_tracking_uri(project_dir: str | os.PathLike[str] | None = None) -> str:
    """The store a project logs to: ``$LADDER_TRACKING_URI``, else an SQLite file in it.

    Args:
        project_dir: The project folder (default: the current directory); the store is
            ``sqlite:///<project_dir>/ladder-runs.db`` (an absolute path).
    """
    env = os.environ.get(TRACKING_URI_ENV, "").strip()
    if env:
        return env
    folder = Path(project_dir) if project_dir is not None else Path.cwd()
    return f"sqlite:///{(folder / DEFAULT_STORE_NAME).resolve()}"


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

    For code that has its scores already; the ``eval`` and ``score`` verbs open their run
    before the work instead, so a store that cannot open stops them before anything runs.
    """
    with tracker.run(name, tags=tags) as run:
        run.log_params(params)
        for score in scores.values():
            run.log_score(score)
        for path in artifacts:
            run.log_artifact(path)
