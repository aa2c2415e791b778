"""``ladder runs`` lists and compares tracked runs; ``ladder ui`` starts the MLflow UI."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import typer
from pydantic import BaseModel, ConfigDict, Field

from ladder import quiet
from ladder.cli._common import build, config_option, console, err_console, field_help
from ladder.errors import ConfigError
from ladder.procs import die_with_parent

if TYPE_CHECKING:
    from ladder.track import RunRow

__all__ = [
    "STORE_HELP",
    "RunsConfig",
    "UiConfig",
    "print_flips",
    "run_server_process",
    "runs",
    "ui",
]

STORE_HELP = (
    "The tracking store: sqlite:///PATH.db, http://HOST:PORT (an MLflow server), "
    "postgresql://..., or jsonl:PATH (default: $LADDER_TRACKING_URI, else "
    "sqlite:///./ladder-runs.db)."
)


class RunsConfig(BaseModel):
    """What ``ladder runs`` shows."""

    model_config = ConfigDict(extra="forbid")

    store: str | None = Field(None, description=STORE_HELP)
    experiment: str | None = Field(None, description="Only runs of this experiment (a task).")
    compare: list[str] = Field(
        default_factory=list,
        description="Compare the RUN_IDs given (ladder runs --compare A B): their params and "
        "metrics side by side.",
    )
    limit: int = Field(30, ge=1, description="Most top-level runs to list, newest first.")


class UiConfig(BaseModel):
    """Where ``ladder ui`` serves the MLflow UI."""

    model_config = ConfigDict(extra="forbid")

    store: str | None = Field(None, description=STORE_HELP)
    host: str = Field("127.0.0.1", description="Address to listen on (loopback by default).")
    port: int = Field(5000, ge=1, le=65535, description="Port to listen on.")
    allow_remote: bool = Field(
        False,
        description="Allow a non-loopback --host. The MLflow UI has no authentication: anyone "
        "who can reach the port can read and delete every run.",
    )


def runs(
    run_ids: list[str] | None = typer.Argument(
        None,
        metavar="[RUN_ID]...",
        help="Runs to compare side by side (with or without --compare): full ids or unique "
        "prefixes.",
    ),
    store: str | None = config_option(RunsConfig, "store", "--store"),
    experiment: str | None = config_option(RunsConfig, "experiment", "--experiment"),
    compare: bool = typer.Option(False, "--compare", help=field_help(RunsConfig, "compare")),
    limit: int = config_option(RunsConfig, "limit", "--limit"),
    as_json: bool = typer.Option(False, "--json", help="Print the runs as JSON."),
) -> None:
    """List tracked runs (children under their parent), or compare runs side by side."""
    from ladder.track import compare_runs, default_tracking_uri, list_runs

    if compare and not run_ids:
        raise ConfigError("--compare needs run ids: ladder runs --compare RUN_ID RUN_ID")
    config = build(
        RunsConfig, store=store, experiment=experiment, compare=run_ids or [], limit=limit
    )
    uri = config.store or default_tracking_uri()
    if config.compare:
        rows = compare_runs(uri, config.compare)
    else:
        rows = list_runs(uri, config.experiment, config.limit)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    if not rows:
        console.print(f"no runs in {uri}")
        return
    from ladder.cli._runs_tables import print_compared, print_runs

    if config.compare:
        print_compared(console, rows)
        print_flips(uri, rows)
    else:
        print_runs(console, rows, uri)


def print_flips(uri: str, rows: Sequence[RunRow], shown: int = 20) -> None:
    """Per-item flips from the first compared run to each other one: the test records it
    fixed and broke, where both runs logged their predictions (climb rungs do)."""
    import tempfile
    from pathlib import Path

    from rich.table import Table

    from ladder.climb.flips import FlipSet, flips_between, read_predictions
    from ladder.track import run_artifact

    with tempfile.TemporaryDirectory() as tmp:
        found = [
            run_artifact(uri, r.run_id, "predictions.jsonl", Path(tmp, str(i)))
            for i, r in enumerate(rows)
        ]
        preds = [read_predictions(p.parent) if p else [] for p in found]
    for number, (row, after) in enumerate(zip(rows[1:], preds[1:], strict=True), 2):
        if not preds[0] or not after:
            continue
        if len(preds[0]) != len(after):
            console.print(
                f"flips [1] → [{number}]: not the same test records "
                f"({len(preds[0])} vs {len(after)})",
                markup=False,
            )
            continue
        flips = FlipSet(
            f"[1] {rows[0].name}",
            f"[{number}] {row.name}",
            "compare",
            flips_between(preds[0], after),
            len(after),
        )
        table = Table(title=flips.summary(), title_justify="left")
        for column in ("change", "record", "input", "reference", "before", "after", "scores"):
            table.add_column(column, overflow="fold")
        for f in (flips.fixed + flips.broken)[:shown]:
            table.add_row(
                f.change,
                f.id,
                f.input,
                _text(f.reference),
                _text(f.before),
                _text(f.after),
                f"{f.score_before:.3g} → {f.score_after:.3g}",
            )
        console.print(table)


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def ui(
    store: str | None = config_option(UiConfig, "store", "--store"),
    host: str = config_option(UiConfig, "host", "--host"),
    port: int = config_option(UiConfig, "port", "--port"),
    allow_remote: bool = config_option(UiConfig, "allow_remote", "--allow-remote"),
) -> None:
    """Start the MLflow UI on the run store (127.0.0.1 only, unless --allow-remote)."""
    from ladder.ports import check_port_free
    from ladder.track import UI_NOISE, default_tracking_uri, is_loopback, ui_command, ui_environment

    config = build(UiConfig, store=store, host=host, port=port, allow_remote=allow_remote)
    if not is_loopback(config.host) and not config.allow_remote:
        raise ConfigError(
            f"--host {config.host}: the MLflow UI has no authentication, so ladder serves it on "
            "127.0.0.1 only; pass --allow-remote to listen on other addresses anyway"
        )
    logs = quiet.is_verbose()
    uri = config.store or default_tracking_uri()
    command = ui_command(uri, config.host, config.port, server_logs=logs)
    check_port_free(config.host, config.port)
    if not is_loopback(config.host):
        err_console.print("[yellow]warning:[/] the MLflow UI has no authentication")
    console.print(
        f"listening on http://{config.host}:{config.port} (MLflow UI; Ctrl-C stops it)",
        markup=False,
        highlight=False,
    )
    code = run_server_process(command, ui_environment(server_logs=logs), () if logs else UI_NOISE)
    if code:
        raise typer.Exit(code)


def run_server_process(
    command: list[str], env: dict[str, str], noise: Sequence[re.Pattern[str]]
) -> int:
    """Run a server in the foreground, passing its output on minus lines matching ``noise``.

    The server runs in its own session, so a Ctrl-C reaches it once, through this process
    (which forwards SIGINT and SIGTERM), and it shuts down cleanly; its exit status is
    returned. If this process is killed outright, the kernel stops the server too.
    """
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
        preexec_fn=die_with_parent(),  # a SIGKILLed ladder leaves no server behind
    )

    def forward(signum: int, _frame: object) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not any(pattern.search(line) for pattern in noise):
                sys.stderr.write(line)
                sys.stderr.flush()
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
