"""MLflow stores: opening one, creating an SQLite store fast, and where artifacts go.

MLflow builds a new SQLite store by running its whole chain of schema migrations, which
takes 10-20 s. Ladder does that once per MLflow version, into an empty template under
``$LADDER_HOME/cache/``, and copies the template for every new store (milliseconds).
Artifacts of an SQLite store ``DIR/NAME.db`` live in ``DIR/NAME-artifacts/EXPERIMENT/``.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ladder.errors import ConfigError
from ladder.quiet import drop_info, drop_messages, is_verbose
from ladder.track._redact import redact_text

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["artifact_location", "mlflow_client", "prepare_store", "sqlite_path"]

# MLflow settings ladder chooses unless the user set them: no usage reporting (ladder runs
# offline), and trace spans exported in batches by MLflow's background thread.
_MLFLOW_DEFAULTS = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "true",
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE": "256",
    # With a tracking server MLflow prints "View run ... at: URL" to stdout as every run
    # ends (and asks the server for the run to do so): ladder prints nothing of its own on
    # stdout from library code, where a verb's JSON output may be going.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # Trace and span ids from MLflow's own random generator: by default they come from
    # Python's global `random`, which every climb and training run seeds, so two runs made
    # the same ids and the second one's traces were dropped ("already exists").
    "MLFLOW_TRACE_USE_ISOLATED_RANDOM_ID_GENERATOR": "true",
}


def mlflow_client(uri: str) -> MlflowClient:
    """A client of the store at ``uri``, which also becomes MLflow's tracking URI for traces.

    MLflow exports traces to its process-wide tracking URI, so a tracker sets it.
    """
    for name, value in _MLFLOW_DEFAULTS.items():
        os.environ.setdefault(name, value)
    _quiet_mlflow()
    import mlflow
    from mlflow import MlflowClient

    if mlflow.get_tracking_uri() != uri:
        mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def _quiet_mlflow() -> None:
    """Keep MLflow's routine INFO lines off the terminal (``ladder --verbose`` shows them).

    MLflow logs its database set-up (creating and migrating tables, alembic's steps) and,
    at exit, that it flushes queued traces: routine steps of every tracked run, which the
    person did not ask about. Its warnings and errors still show.
    """
    drop_info("mlflow.store.db.utils", "alembic.runtime.migration")
    drop_messages(
        "mlflow.tracing.export.async_export_queue", "Flushing the async trace logging queue"
    )
    if not is_verbose() and not getattr(sys.unraisablehook, "_ladder", False):
        sys.unraisablehook = _without_id_generator_teardown(sys.unraisablehook)


def _without_id_generator_teardown(
    previous: Callable[[Any], object],
) -> Callable[[Any], object]:
    """An unraisable-exception hook that drops one known MLflow shutdown error.

    MLflow's isolated trace-id generator (chosen in ``_MLFLOW_DEFAULTS``) removes itself
    from a module-level set in ``__del__``; at interpreter exit that set is already gone,
    and Python prints "Exception ignored in ... __del__ ... AttributeError" after every
    traced process. Nothing is lost: the process is ending. Every other exception passes on.
    """

    def hook(unraisable: Any) -> None:
        where = getattr(unraisable.object, "__qualname__", "")
        if where == "_IsolatedRandomIdGenerator.__del__" and isinstance(
            unraisable.exc_value, AttributeError
        ):
            return
        previous(unraisable)

    hook._ladder = True  # type: ignore[attr-defined]
    return hook


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:`` URI (``sqlite:///rel.db``, ``sqlite:////abs.db``)."""
    if not uri.lower().startswith("sqlite:"):
        return None
    rest = uri.split(":", 1)[1]
    if not rest.startswith("///"):
        raise ConfigError(
            f"tracking URI {redact_text(uri)!r}: write sqlite:///relative/runs.db or "
            "sqlite:////absolute/runs.db"
        )
    path = rest[3:].split("?", 1)[0]
    if not path or path == ":memory:":
        raise ConfigError(
            f"tracking URI {uri!r}: an SQLite store needs a file, e.g. sqlite:///runs.db"
        )
    return Path(path)


def prepare_store(uri: str) -> str:
    """``uri`` ready to open: a missing SQLite store is created from the template.

    Raises:
        ConfigError: a malformed SQLite URI, or a folder that cannot be written.
    """
    path = sqlite_path(uri)
    if path is None or path.exists():
        return uri
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _copy_template(path, artifact_root(path) / "0")
    except OSError as exc:
        raise ConfigError(f"tracking store {path}: cannot create it ({exc.strerror})") from None
    return uri


def artifact_root(db: Path) -> Path:
    """Where artifacts of the SQLite store ``db`` go: ``DIR/NAME-artifacts``."""
    return db.resolve().with_name(db.stem + "-artifacts")


def artifact_location(uri: str, experiment: str) -> str | None:
    """The artifact folder of a new experiment (SQLite stores), else the store's default."""
    path = sqlite_path(uri)
    if path is None:
        return None
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", experiment).strip("-") or "experiment"
    return (artifact_root(path) / slug).as_uri()


def _copy_template(target: Path, default_artifacts: Path) -> None:
    """Copy the empty store into ``target`` without ever exposing a half-written file."""
    template = _template()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(template, tmp)
        with sqlite3.connect(tmp) as db:  # MLflow's default experiment, moved beside the store
            db.execute(
                "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                (default_artifacts.as_uri(),),
            )
        db.close()
        try:
            os.link(tmp, target)  # fails if another process created the store meanwhile
        except FileExistsError:
            pass
        except OSError:  # no hard links on this filesystem
            if not target.exists():
                os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _template() -> Path:
    """The empty, migrated store of this MLflow version (built on first use)."""
    import mlflow

    from ladder.home import home_subdir

    _quiet_mlflow()
    template = home_subdir("cache") / f"mlflow-{mlflow.__version__}-empty.db"
    if template.exists():
        return template
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    fd, tmp = tempfile.mkstemp(prefix=".mlflow-template-", suffix=".db", dir=template.parent)
    os.close(fd)
    os.unlink(tmp)  # MLflow creates the tables only in a database that has none
    try:
        with tempfile.TemporaryDirectory() as artifacts:
            store = SqlAlchemyStore(f"sqlite:///{tmp}", artifacts)
            store.engine.dispose()
        os.replace(tmp, template)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return template
