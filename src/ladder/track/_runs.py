"""Reading runs back: the rows of ``ladder runs`` and the command of ``ladder ui``.

Works on MLflow stores (through :class:`mlflow.MlflowClient`) and on JSONL event files.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import sys
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError
from ladder.track._mlflow import store_errors
from ladder.track._redact import redact_text
from ladder.track._store import artifact_root, mlflow_client, sqlite_path

__all__ = [
    "UI_NOISE",
    "RunRow",
    "compare_runs",
    "is_loopback",
    "list_runs",
    "resolve_run_id",
    "run_artifact",
    "ui_command",
    "ui_environment",
]

# The UI needs no background job runner (it starts 7 worker processes for GenAI jobs).
_UI_DEFAULTS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
# MLflow's own app imports a Starlette module Starlette has deprecated: nothing a user of
# the UI can act on. A message filter (Python's -W syntax) hides just that warning.
_UI_QUIET_WARNINGS = "ignore:starlette.middleware.wsgi is deprecated"
# Lines `mlflow server` prints on every start that say nothing about ladder's use of it
# (ladder binds to loopback and refuses other hosts without --allow-remote).
UI_NOISE = (re.compile(r"^\[MLflow\] Security middleware enabled with default settings"),)


@dataclass
class RunRow:
    """One run as ``ladder runs`` shows it (``depth`` 1 for a child of the run above it)."""

    run_id: str
    name: str
    experiment: str
    status: str
    start_ms: int | None
    duration_s: float | None
    parent_id: str | None = None
    depth: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def list_runs(uri: str, experiment: str | None = None, limit: int = 50) -> list[RunRow]:
    """The newest ``limit`` top-level runs of the store, each followed by its children.

    Raises:
        ConfigError: no store at ``uri``, or no experiment of that name.
    """
    if uri.startswith("jsonl:"):
        rows = _jsonl_rows(uri)
    else:
        with store_errors(uri):
            rows = _mlflow_rows(uri, experiment)
    if experiment is not None and uri.startswith("jsonl:"):
        rows = [r for r in rows if r.experiment == experiment]
    return _tree(rows, limit)


def compare_runs(uri: str, run_ids: Sequence[str]) -> list[RunRow]:
    """The runs ``run_ids`` (in that order), with all their params and metrics.

    Each id may be a unique prefix of one (``84f08ed`` for ``84f08ed5c0a0...``).

    Raises:
        ConfigError: an id that matches no run, or a prefix that matches several (the
            message names it and the runs it matches).
    """
    rows = {r.run_id: r for r in list_runs(uri, limit=1_000_000)}
    return [rows[resolve_run_id(wanted, rows, uri)] for wanted in run_ids]


def run_artifact(uri: str, run_id: str, name: str, dest: Path) -> Path | None:
    """A file a run logged as an artifact (``name``, at the run's top level), copied into
    ``dest``; None when the run has no such artifact."""
    if uri.startswith("jsonl:"):
        events = Path(uri.partition(":")[2]).expanduser()
        for line in events.read_text(encoding="utf-8").splitlines():
            event = json.loads(line)
            stored = Path(event.get("stored", ""))
            if event["event"] == "artifact" and event["run"] == run_id and stored.name == name:
                return stored if stored.is_file() else None
        return None
    client = mlflow_client(uri)
    with store_errors(uri):
        if name not in {f.path for f in client.list_artifacts(run_id)}:
            return None
        dest.mkdir(parents=True, exist_ok=True)  # MLflow downloads only into a folder that exists
        return Path(client.download_artifacts(run_id, name, str(dest)))


def resolve_run_id(wanted: str, run_ids: Collection[str], uri: str) -> str:
    """The one id of ``run_ids`` that is ``wanted`` or starts with it.

    Raises:
        ConfigError: no such run, or an ambiguous prefix (the matches are listed).
    """
    wanted = wanted.strip()
    if wanted in run_ids:
        return wanted
    matches = sorted(r for r in run_ids if wanted and r.startswith(wanted))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConfigError(
            f"--compare: no run {wanted!r} in {redact_text(uri)}; `ladder runs` lists the ids"
        )
    shown = ", ".join(matches[:10]) + (
        f" and {len(matches) - 10} more" if len(matches) > 10 else ""
    )
    raise ConfigError(
        f"--compare: {wanted!r} is the start of {len(matches)} run ids ({shown}); "
        "give more of the id"
    )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ui_command(
    uri: str, host: str = "127.0.0.1", port: int = 5000, *, server_logs: bool = False
) -> list[str]:
    """The ``mlflow server`` command line that serves the UI of the store at ``uri``.

    Without ``server_logs`` uvicorn shows only warnings and errors (no INFO lines, no
    access log).

    Raises:
        ConfigError: a JSONL store (the MLflow UI reads MLflow stores only), or a missing
            SQLite file.
    """
    if uri.startswith("jsonl:"):
        raise ConfigError(f"--store {uri}: the MLflow UI reads MLflow stores (e.g. sqlite:///...)")
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri]
    # Named, so MLflow does not announce that it falls back to the backend store.
    command += ["--registry-store-uri", uri]
    db = sqlite_path(uri)
    if db is not None:
        _require(db, uri)
        command += ["--default-artifact-root", artifact_root(db).as_uri()]
    if not server_logs:
        command += ["--uvicorn-opts", "--log-level warning --no-access-log"]
    return [*command, "--host", host, "--port", str(port), "--workers", "1"]


def ui_environment(*, server_logs: bool = False) -> dict[str, str]:
    """The environment for :func:`ui_command`: this one, plus ladder's MLflow defaults.

    Without ``server_logs`` the server's Python also drops Starlette's deprecation
    warning about MLflow's own code.
    """
    env = {**_UI_DEFAULTS, **os.environ}
    if not server_logs:
        env["PYTHONWARNINGS"] = ",".join(
            w for w in (os.environ.get("PYTHONWARNINGS", ""), _UI_QUIET_WARNINGS) if w
        )
    return env


def _require(db: Path, uri: str) -> None:
    if not db.is_file():
        raise ConfigError(
            f"--store {uri}: no runs store at {db}; run `ladder climb` first, or pass --store "
            "(or set LADDER_TRACKING_URI)"
        )


def _mlflow_rows(uri: str, experiment: str | None) -> list[RunRow]:
    db = sqlite_path(uri)
    if db is not None:
        _require(db, uri)
    client = mlflow_client(uri)
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    if experiment is not None:
        ids = [i for i, name in experiments.items() if name == experiment]
        if not ids:
            known = ", ".join(sorted(experiments.values())) or "none"
            raise ConfigError(
                f"--experiment {experiment!r}: not in the store; experiments: {known}"
            )
    else:
        ids = list(experiments)
    runs = client.search_runs(ids, max_results=50_000, order_by=["attributes.start_time DESC"])
    rows = []
    for run in runs:
        info, data = run.info, run.data
        end = info.end_time
        rows.append(
            RunRow(
                run_id=info.run_id,
                name=info.run_name or info.run_id[:8],
                experiment=experiments.get(info.experiment_id, info.experiment_id),
                status=info.status,
                start_ms=info.start_time,
                duration_s=(end - info.start_time) / 1000 if end and info.start_time else None,
                parent_id=data.tags.get("mlflow.parentRunId"),
                metrics=dict(data.metrics),
                params=dict(data.params),
            )
        )
    return rows


def _jsonl_rows(uri: str) -> list[RunRow]:
    path = Path(uri.partition(":")[2]).expanduser()
    if not path.is_file():
        raise ConfigError(f"--store {uri}: no such file")
    rows: dict[str, RunRow] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        row = rows.get(event.get("run") or "")
        millis = int(event["time"] * 1000)
        if event["event"] == "run_start":
            rows[event["run"]] = RunRow(
                event["run"], event["name"], event["tags"].get("task", ""), "RUNNING", millis, None,
                parent_id=event.get("parent"),
            )  # fmt: skip
        elif row is not None and event["event"] == "run_end":
            row.status = event["status"]
            row.duration_s = (millis - (row.start_ms or millis)) / 1000
        elif row is not None and event["event"] == "params":
            row.params.update({k: str(v) for k, v in event["params"].items()})
        elif row is not None and event["event"] == "metrics":
            row.metrics.update({k: v for k, v in event["metrics"].items() if v is not None})
    return sorted(rows.values(), key=lambda r: r.start_ms or 0, reverse=True)


def _tree(rows: list[RunRow], limit: int) -> list[RunRow]:
    """Top-level runs newest first, each followed by its descendants (oldest first)."""
    children: dict[str, list[RunRow]] = {}
    ids = {r.run_id for r in rows}
    roots = [r for r in rows if r.parent_id is None or r.parent_id not in ids]
    for row in rows:
        if row.parent_id in ids:
            children.setdefault(row.parent_id or "", []).append(row)
    out: list[RunRow] = []

    def visit(row: RunRow, depth: int) -> None:
        row.depth = depth
        out.append(row)
        for child in sorted(children.get(row.run_id, []), key=lambda r: r.start_ms or 0):
            visit(child, depth + 1)

    for root in roots[:limit]:
        visit(root, 0)
    return out
