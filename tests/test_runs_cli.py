"""``ladder runs`` on stores filled through the trackers; ``ladder ui`` as a real MLflow server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ladder import track
from ladder.cli.main import main
from ladder.evaluate import get_metric
from ladder.track import JsonlTracker, MlflowTracker, Tracker


@pytest.fixture(scope="session")
def mlflow_ready() -> None:
    from ladder.track._store import _template

    _template()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(track.TRACKING_URI_ENV, raising=False)
    monkeypatch.delenv(track.EXPERIMENT_ENV, raising=False)
    monkeypatch.setenv("COLUMNS", "200")


def fill(tracker: Tracker) -> None:
    """Two climbs of two tasks; the first has two rungs with scores."""
    accuracy = get_metric("accuracy", resamples=0)
    for task, values in (("tagger", (0.25, 0.75)), ("riddles", (0.5,))):
        with tracker.run(f"climb {task}", tags={"task": task}) as climb:
            climb.log_params({"task": task, "good_enough": 0.7})
            for rung, value in zip(("zero_shot", "lora"), values, strict=False):
                with climb.run(f"rung {rung}", tags={"task": task}) as run:
                    run.log_params({"rung": rung})
                    hits = round(value * 4)
                    run.log_score(accuracy.compute(["a"] * 4, ["a"] * hits + ["b"] * (4 - hits)))
                    run.log_metrics({"cost_usd": 0.001 * (1 + hits)})
        time.sleep(0.01)  # distinct start times: newest first


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory, mlflow_ready: None) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('runs') / 'ladder-runs.db'}"
    fill(MlflowTracker(uri))
    return uri


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    assert main(["runs", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_runs_lists_children_under_their_parent(
    sqlite_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = run_json(capsys, "--store", sqlite_store)
    assert [(r["name"], r["depth"], r["experiment"]) for r in rows] == [
        ("climb riddles", 0, "riddles"),
        ("rung zero_shot", 1, "riddles"),
        ("climb tagger", 0, "tagger"),
        ("rung zero_shot", 1, "tagger"),
        ("rung lora", 1, "tagger"),
    ]
    assert rows[4]["metrics"] == {"accuracy": 0.75, "cost_usd": pytest.approx(0.004)}
    assert rows[4]["parent_id"] == rows[2]["run_id"] and rows[2]["status"] == "FINISHED"
    assert main(["runs", "--store", sqlite_store]) == 0
    out = capsys.readouterr().out
    assert "└ rung lora" in out and "accuracy=0.75" in out and "FINISHED" in out
    assert out.index("climb riddles") < out.index("climb tagger") < out.index("└ rung lora")


def test_runs_filters_by_experiment_and_limits(
    sqlite_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = run_json(capsys, "--store", sqlite_store, "--experiment", "tagger")
    assert [r["name"] for r in rows] == ["climb tagger", "rung zero_shot", "rung lora"]
    rows = run_json(capsys, "--store", sqlite_store, "--limit", "1")
    assert [r["name"] for r in rows] == ["climb riddles", "rung zero_shot"]
    assert main(["runs", "--store", sqlite_store, "--experiment", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--experiment 'nope': not in the store; experiments: Default, riddles, tagger" in err


def test_compare_shows_params_and_metrics_side_by_side(
    sqlite_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = run_json(capsys, "--store", sqlite_store, "--experiment", "tagger")
    zero, lora = rows[1]["run_id"], rows[2]["run_id"]
    assert isinstance(zero, str) and isinstance(lora, str)
    assert main(["runs", "--store", sqlite_store, "--compare", zero, "--compare", lora]) == 0
    out = capsys.readouterr().out
    cells = {
        cols[1]: cols[2:4]
        for line in out.splitlines()
        if len(cols := [c.strip() for c in line.split("│")]) == 5
    }
    assert cells["metric accuracy"] == ["0.25", "0.75"]
    assert cells["param rung"] == ["zero_shot", "lora"]
    assert main(["runs", "--store", sqlite_store, "--compare", "deadbeef"]) == 2
    assert "--compare: no run 'deadbeef'" in capsys.readouterr().err


def test_compare_takes_ids_after_one_flag_and_unique_prefixes(
    sqlite_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/tracking.md: `ladder runs --compare RUN_ID RUN_ID`, ids shown whole."""
    rows = run_json(capsys, "--store", sqlite_store, "--experiment", "tagger")
    zero, lora = str(rows[1]["run_id"]), str(rows[2]["run_id"])
    compared = run_json(capsys, "--store", sqlite_store, "--compare", zero, lora[:12])
    assert [r["run_id"] for r in compared] == [zero, lora]
    compared = run_json(capsys, "--store", sqlite_store, zero[:8], "--compare")
    assert [r["run_id"] for r in compared] == [zero]
    assert main(["runs", "--store", sqlite_store, "--compare"]) == 2
    assert "--compare needs run ids" in capsys.readouterr().err


def test_an_ambiguous_prefix_lists_the_matches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(
            json.dumps({"event": "run_start", "run": run, "name": f"run {run}", "tags": {},
                        "parent": None, "time": 1_700_000_000 + i}) + "\n"
            for i, run in enumerate(("abc123", "abc456", "def789"))
        )
    )  # fmt: skip
    argv = ["runs", "--store", f"jsonl:{events}", "--compare"]
    assert main([*argv, "abc"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "ladder: error: --compare: 'abc' is the start of 2 run ids (abc123, abc456); "
        "give more of the id\n"
    )
    assert [r["name"] for r in run_json(capsys, *argv[1:], "abc4", "d")] == [
        "run abc456",
        "run def789",
    ]


@pytest.mark.parametrize("columns", ["80", "60"])
def test_ids_are_never_cut_in_a_narrow_terminal(
    columns: str,
    sqlite_store: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ladder.cli._common import console

    monkeypatch.setenv("COLUMNS", columns)
    monkeypatch.setattr(console, "_width", None)  # read COLUMNS again
    ids = [str(r["run_id"]) for r in run_json(capsys, "--store", sqlite_store)]
    assert main(["runs", "--store", sqlite_store]) == 0
    out = capsys.readouterr().out
    assert all(run_id in out for run_id in ids) and "…" not in out, out
    assert max(len(line) for line in out.splitlines()) <= int(columns)
    assert "└ rung lora" in out and "accuracy=0.75" in out
    assert main(["runs", "--store", sqlite_store, "--compare", *ids[3:]]) == 0
    out = capsys.readouterr().out
    assert all(run_id in out for run_id in ids[3:]) and "…" not in out
    assert "0.25" in out and "0.75" in out


def test_runs_reads_a_jsonl_store_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "events.jsonl"
    fill(JsonlTracker(path))
    rows = run_json(capsys, "--store", f"jsonl:{path}")
    assert [(r["name"], r["depth"]) for r in rows] == [
        ("climb riddles", 0),
        ("rung zero_shot", 1),
        ("climb tagger", 0),
        ("rung zero_shot", 1),
        ("rung lora", 1),
    ]
    assert rows[4]["metrics"]["accuracy"] == 0.75  # type: ignore[index]


def test_missing_store_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["runs", "--store", uri]) == 2
    err = capsys.readouterr().err
    assert "no runs store at" in err and "ladder climb" in err and err.count("\n") == 1
    assert not (tmp_path / "none.db").exists()


def test_ui_refuses_a_public_host_without_allow_remote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ui", "--store", f"sqlite:///{tmp_path / 'x.db'}", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--host 0.0.0.0: the MLflow UI has no authentication" in err and "--allow-remote" in err


def test_ui_on_a_port_in_use_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "runs.db"
    store.touch()
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        assert main(["ui", "--store", f"sqlite:///{store}", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err == f"ladder: error: port {port} on 127.0.0.1 is in use; pass --port N\n"


def test_ui_server_output_is_passed_on_without_the_known_noise(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from ladder.cli.runs import run_server_process
    from ladder.track._runs import UI_NOISE, ui_command, ui_environment

    script = (
        "import sys, warnings\n"
        "print('[MLflow] Security middleware enabled with default settings (localhost-only).')\n"
        "warnings.warn('starlette.middleware.wsgi is deprecated and will be removed')\n"
        "print('ERROR: something the user must see', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    command = [sys.executable, "-c", script]
    assert run_server_process(command, ui_environment(), UI_NOISE) == 3
    assert capfd.readouterr().err == "ERROR: something the user must see\n"
    assert run_server_process(command, ui_environment(server_logs=True), ()) == 3
    shown = capfd.readouterr().err
    assert "Security middleware" in shown and "is deprecated" in shown  # --verbose: all of it
    (tmp_path / "runs.db").touch()
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    quiet = ui_command(store)
    assert quiet[quiet.index("--uvicorn-opts") + 1] == "--log-level warning --no-access-log"
    assert "--uvicorn-opts" not in ui_command(store, server_logs=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_ui_serves_the_store_on_loopback(sqlite_store: str) -> None:
    port = _free_port()
    command = [sys.executable, "-m", "ladder.cli.main", "ui", "--store", sqlite_store]
    proc = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        status, deadline = None, time.monotonic() + 120
        while status is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    status = r.status
            except OSError:
                time.sleep(0.5)
        assert status == 200, proc.stdout.read().decode() if proc.poll() is not None else ""
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert _refused(port)  # the server went with the process: nothing answers any more
    # Quiet: no uvicorn INFO lines, no Starlette deprecation warning, no MLflow banner.
    assert output.decode().splitlines() == [
        f"listening on http://127.0.0.1:{port} (MLflow UI; Ctrl-C stops it)"
    ]


def _refused(port: int, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.5)
    return False


@pytest.mark.slow
def test_a_team_tracking_server_over_http(
    tmp_path: Path, mlflow_ready: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs logged to an MLflow server by URL (a team's store) land in its database."""
    from ladder.track._store import prepare_store

    backend = prepare_store(f"sqlite:///{tmp_path / 'server.db'}")  # the team's database
    port = _free_port()
    command = [sys.executable, "-m", "ladder.cli.main", "ui", "--store", backend]
    proc = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        up, deadline = False, time.monotonic() + 120
        while not up and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as health:
                    up = health.status == 200
            except OSError:
                time.sleep(0.5)
        assert up, proc.stdout.read().decode() if proc.poll() is not None and proc.stdout else ""
        tracker = MlflowTracker(url)
        fill(tracker)
        (tmp_path / "predictions.jsonl").write_text('{"prediction": "a"}\n')
        with tracker.run("climb offensive", tags={"task": "offensive"}) as climb:
            climb.log_artifact(tmp_path / "predictions.jsonl")
            stored = [f.path for f in tracker.client.list_artifacts(climb.run_id or "")]
        over_http = run_json(capsys, "--store", url)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert stored == ["predictions.jsonl"]
    expected = ["climb offensive", "climb riddles", "rung zero_shot", "climb tagger"]
    assert [r["name"] for r in over_http][:4] == expected
    in_database = run_json(capsys, "--store", backend)  # the server's own database has them
    assert [r["run_id"] for r in in_database] == [r["run_id"] for r in over_http]
