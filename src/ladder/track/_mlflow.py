"""The MLflow tracker: runs, params, metrics, tags, artifacts and traces in an MLflow store.

With ``ladder.track._store`` the only place in ladder that imports ``mlflow``. Runs are made
with :class:`mlflow.MlflowClient` (no global active run); nested runs carry MLflow's
``mlflow.parentRunId`` tag, so the UI shows each rung under its climb. Traces use MLflow
Tracing: spans opened in a run (LLM calls, chains, agents, tools) are grouped into traces
of up to ``window_spans`` top-level spans or ``window_s`` seconds, linked to the run (MLflow
writes one trace in tens of milliseconds: one trace per call would cost more than a small
model's call). MLflow exports spans in a background thread; the outermost run waits for
the export when it ends.

A store that cannot be opened when the first run starts is a one-line ``ConfigError``
(nothing has run yet). A store that fails later (a server gone, a database file removed
or read-only) is reported once as a warning and the tracker stops writing: the work it
records goes on and keeps its own results on disk, untracked from then on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ladder.errors import ConfigError
from ladder.track._redact import redact, redact_text, redacted_artifact, secret_values
from ladder.track._scores import score_fields
from ladder.track._spans import activate, deactivate
from ladder.track._store import artifact_location, mlflow_client, prepare_store

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import LiveSpan

    from ladder.evaluate.score import Score

__all__ = ["EXPERIMENT_ENV", "MlflowTracker", "experiment_id", "store_errors"]

EXPERIMENT_ENV = "LADDER_EXPERIMENT"
DEFAULT_EXPERIMENT = "ladder"
MAX_PARAM_CHARS = 6000  # MLflow's limits on a param / tag value
MAX_TAG_CHARS = 8000
_BAD_KEY_CHARS = re.compile(r"[^\w.\- :/]")
_log = logging.getLogger("ladder.track")


@dataclass
class _OpenRun:
    run_id: str
    experiment_id: str
    name: str


class MlflowTracker:
    """Records runs in an MLflow store: an SQLite file, a folder, or a tracking server.

    Args:
        uri: The store: ``sqlite:///PATH.db`` (created on first use), ``file:PATH``,
            ``http(s)://HOST:PORT`` (an MLflow server), ``postgresql://...``, ``mysql://...``.
        experiment: The experiment of top-level runs; default ``$LADDER_EXPERIMENT``, else
            the run's ``task`` tag (one experiment per task), else ``ladder``. Nested runs
            live in their parent's experiment.
        window_spans: Most top-level spans per trace.
        window_s: Most seconds one trace stays open.
    """

    def __init__(
        self,
        uri: str,
        experiment: str | None = None,
        *,
        window_spans: int = 200,
        window_s: float = 30.0,
    ) -> None:
        self.uri = uri
        self.experiment = experiment or os.environ.get(EXPERIMENT_ENV) or None
        self.window_spans = window_spans
        self.window_s = window_s
        self._client: MlflowClient | None = None
        self._runs: list[_OpenRun] = []
        self.failed: str | None = None  # why the store stopped taking writes, if it did

    @property
    def run_id(self) -> str | None:
        """The MLflow id of the innermost open run, or ``None`` outside any run."""
        return self._runs[-1].run_id if self._runs else None

    @property
    def client(self) -> MlflowClient:
        """The MLflow client of the store (the store is created on first use)."""
        if self._client is None:
            self._client = mlflow_client(prepare_store(self.uri))
        return self._client

    @contextlib.contextmanager
    def run(self, name: str, tags: Mapping[str, str] | None = None) -> Iterator[MlflowTracker]:
        """Open a run (a child of the open one, if any); it ends FINISHED, FAILED or KILLED.

        Spans opened inside the block become traces linked to this run.
        """
        parent = self._runs[-1] if self._runs else None
        run_tags = _clean_map(tags or {}, MAX_TAG_CHARS)
        if parent is not None:
            run_tags["mlflow.parentRunId"] = parent.run_id
        created: Any = None
        if parent is None:  # the first run: a store that cannot open stops here, cleanly
            self.failed = None
            with store_errors(self.uri):
                experiment_id = self._experiment_id(tags or {})
                created = self.client.create_run(experiment_id, run_name=name, tags=run_tags)
        else:
            experiment_id = parent.experiment_id
            created = self._write(
                f"opening run {name!r}",
                lambda: self.client.create_run(experiment_id, run_name=name, tags=run_tags),
            )
        if created is None:  # the store failed mid-way: the work goes on, untracked
            yield self
            return
        opened = _OpenRun(created.info.run_id, experiment_id, name)
        self._runs.append(opened)
        spans = _MlflowSpans(opened, self.window_spans, self.window_s)
        token = activate(spans)
        status = "FAILED"
        try:
            yield self
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            deactivate(token)
            self._write("closing traces", spans.close)
            self._runs.pop()
            end = self.client.set_terminated
            self._write(f"ending run {name!r}", lambda: end(opened.run_id, status))
            if not self._runs and self.failed is None:
                _flush_traces()

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params of the open run (values as text, redacted, cut at MLflow's 6000 chars)."""
        from mlflow.entities import Param

        values = _clean_map(params, MAX_PARAM_CHARS)
        batch = [Param(k, v) for k, v in values.items()]
        self._write(
            "logging params", lambda: self.client.log_batch(self._open().run_id, params=batch)
        )

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Metrics of the open run at ``step`` (0 when not given)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(_key(k), float(v), now, step or 0) for k, v in metrics.items()]
        self._write(
            "logging metrics", lambda: self.client.log_batch(self._open().run_id, metrics=batch)
        )

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Tags of the open run (redacted)."""
        from mlflow.entities import RunTag

        values = _clean_map(tags, MAX_TAG_CHARS)
        batch = [RunTag(k, v) for k, v in values.items()]
        self._write("setting tags", lambda: self.client.log_batch(self._open().run_id, tags=batch))

    def log_score(self, score: Score, prefix: str = "") -> None:
        """Value and CI ends as metrics, the signature as a tag."""
        metrics, tags = score_fields(score, prefix)
        self.log_metrics(metrics)
        self.set_tags(tags)

    def log_artifact(self, path: str | os.PathLike[str]) -> None:
        """Store a file, or a folder under its own name, with the open run (redacted).

        Raises:
            ConfigError: ``path`` does not exist.
        """
        source = Path(path)
        if not source.exists():
            raise ConfigError(f"{source}: no such file or folder to log as an artifact")
        if self.failed is not None:
            return
        run_id = self._open().run_id
        with redacted_artifact(source) as clean:
            if clean.is_dir():
                put = lambda: self.client.log_artifacts(  # noqa: E731
                    run_id, str(clean), artifact_path=source.name
                )
            else:
                put = lambda: self.client.log_artifact(run_id, str(clean))  # noqa: E731
            self._write(f"storing {source.name}", put)

    def _write(self, what: str, action: Callable[[], Any]) -> Any:
        """``action()``, a write to the store; after a failure, warn once, write nothing more
        and return None."""
        from mlflow.exceptions import MlflowException
        from sqlalchemy.exc import SQLAlchemyError

        if self.failed is not None:
            return None
        try:
            return action()
        except (MlflowException, SQLAlchemyError, OSError) as exc:
            text = str(exc.message if isinstance(exc, MlflowException) else exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            self.failed = f"{what}: {redact_text(first)[:300]}"
            _log.warning(
                "tracking store %s failed (%s); the work goes on untracked, its results stay "
                "on disk",
                redact_text(self.uri),
                self.failed,
            )
            return None

    def _open(self) -> _OpenRun:
        if not self._runs:
            raise RuntimeError("MlflowTracker: log inside `with tracker.run(name):`")
        return self._runs[-1]

    def _experiment_id(self, tags: Mapping[str, str]) -> str:
        name = self.experiment or tags.get("task") or DEFAULT_EXPERIMENT
        return experiment_id(self.client, self.uri, name)


def experiment_id(client: MlflowClient, uri: str, name: str) -> str:
    """The id of experiment ``name``, created (with ladder's artifact folder) when missing."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=artifact_location(uri, name)))
    except MlflowException:  # another process created it first
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return str(again.experiment_id)


class _MlflowSpans:
    """The span sink of one open run: MLflow spans, grouped into trace windows."""

    def __init__(self, run: _OpenRun, window_spans: int, window_s: float) -> None:
        self._run = run
        self._limit = window_spans
        self._seconds = window_s
        self._root: LiveSpan | None = None
        self._count = 0
        self._opened = 0.0
        self._lock = threading.Lock()  # threads of one run share its trace window

    def start_span(
        self,
        name: str,
        kind: str,
        parent: LiveSpan | None,
        inputs: Any,
        attributes: dict[str, Any],
        start_ns: int,
    ) -> LiveSpan:
        import mlflow

        return mlflow.start_span_no_context(
            name,
            span_type=kind,
            parent_span=parent if parent is not None else self._window(start_ns),
            inputs=inputs,
            attributes=_mlflow_attributes(attributes),
            start_time_ns=start_ns,
        )

    def end_span(
        self,
        handle: LiveSpan,
        outputs: Any,
        attributes: dict[str, Any],
        error: BaseException | None,
        end_ns: int,
    ) -> None:
        if error is not None:
            handle.record_exception(redact_text(f"{type(error).__name__}: {error}"))
        handle.end(
            outputs=outputs,
            attributes=_mlflow_attributes(attributes),
            status="ERROR" if error is not None else "OK",
            end_time_ns=end_ns,
        )

    def close(self) -> None:
        """End the open trace window (the run is ending)."""
        with self._lock:
            self._end_window()

    def _end_window(self) -> None:
        if self._root is not None:
            self._root.end(outputs={"spans": self._count})
            self._root = None

    def _window(self, now_ns: int) -> LiveSpan:
        import mlflow
        from mlflow.tracing.constant import TraceMetadataKey

        with self._lock:
            full = self._count >= self._limit or time.monotonic() - self._opened > self._seconds
            if self._root is None or full:
                self._end_window()
                self._root = mlflow.start_span_no_context(
                    f"{self._run.name} calls",
                    span_type="CHAIN",
                    experiment_id=self._run.experiment_id,
                    metadata={TraceMetadataKey.SOURCE_RUN: self._run.run_id},
                    start_time_ns=now_ns,
                )
                self._count, self._opened = 0, time.monotonic()
            self._count += 1
            return self._root


def _mlflow_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """Ladder's attributes, plus MLflow's own keys for tokens and cost (the UI sums them)."""
    out = dict(attributes)
    if "prompt_tokens" in out and "completion_tokens" in out:
        tokens_in, tokens_out = int(out["prompt_tokens"]), int(out["completion_tokens"])
        out["mlflow.chat.tokenUsage"] = {
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        }
    if "cost_usd" in out:
        out["mlflow.llm.cost"] = {"total_cost": float(out["cost_usd"])}
    if "model" in out:
        out["mlflow.llm.model"] = out["model"]
    return out


@contextlib.contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """A store that cannot be opened or written is a one-line ConfigError naming it."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (MlflowException, SQLAlchemyError) as exc:
        text = str(exc.message if isinstance(exc, MlflowException) else exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise ConfigError(
            f"tracking store {redact_text(uri)}: {redact_text(first)[:300]} "
            "(check --track/--store or LADDER_TRACKING_URI)"
        ) from None


def _flush_traces() -> None:
    import mlflow

    mlflow.flush_trace_async_logging()


def _key(name: Any) -> str:
    """A key MLflow accepts: letters, digits, ``_ - . / : space``; no ``..`` or leading ``/``."""
    key = _BAD_KEY_CHARS.sub("_", str(name)).replace("..", "_.")
    key = re.sub(r"/+", "/", key).strip("/") or "_"
    return key[:250]


def _clean_map(values: Mapping[str, Any], limit: int) -> dict[str, str]:
    """Keys MLflow accepts; values as redacted text, cut at ``limit`` characters."""
    secrets = secret_values()
    text = {str(k): "" if v is None else str(v) for k, v in values.items()}
    return {_key(k): str(v)[:limit] for k, v in redact(text, secrets).items()}
