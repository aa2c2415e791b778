"""The MLflow tracker against real SQLite stores: nested runs, scores, artifacts and traces."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ladder import track
from ladder.errors import ConfigError
from ladder.evaluate import get_metric
from ladder.track import MlflowTracker, default_tracking_uri, get_tracker
from ladder.track._store import prepare_store
from openai_server import OpenAITestServer
from test_track_spans import echo_model, workload


@pytest.fixture(scope="session")
def mlflow_ready() -> None:
    """Import MLflow and build the empty-store template once (10-20 s on a fresh machine)."""
    from ladder.track._store import _template

    _template()


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    running = OpenAITestServer().start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(track.TRACKING_URI_ENV, raising=False)
    monkeypatch.delenv(track.EXPERIMENT_ENV, raising=False)


def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def traces(tracker: MlflowTracker, experiment_id: str) -> list[Any]:
    import mlflow

    found = mlflow.search_traces(locations=[experiment_id], return_type="list")
    return sorted(found, key=lambda t: t.info.request_time)


def test_nested_runs_params_metrics_scores_and_artifacts(
    tmp_path: Path, mlflow_ready: None
) -> None:
    accuracy = get_metric("accuracy", resamples=200, seed=0).compute(list("aabb"), list("aabx"))
    (tmp_path / "preds.jsonl").write_text('{"p": 1}\n')
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "index.html").write_text("<html>ok</html>")
    started = time.perf_counter()
    tracker = get_tracker(store(tmp_path))
    assert isinstance(tracker, MlflowTracker)
    with tracker.run("climb tagger", tags={"task": "tagger"}) as climb:
        climb.log_params({"models": "builtin:tiny", "good_enough": 0.5, "path": Path("t.yaml")})
        with climb.run("rung zero_shot", tags={"rung": "zero_shot"}) as rung:
            rung.log_score(accuracy, prefix="test/")
            rung.log_metrics({"loss": 2.0}, step=1)
            rung.log_metrics({"loss": 1.5}, step=2)
            rung.log_artifact(tmp_path / "preds.jsonl")
        climb.log_artifact(tmp_path / "report")
    took = time.perf_counter() - started
    client = tracker.client
    experiment = client.get_experiment_by_name("tagger")
    assert experiment is not None  # one experiment per task
    assert experiment.artifact_location == (tmp_path / "runs-artifacts" / "tagger").as_uri()
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    parent, child = runs["climb tagger"], runs["rung zero_shot"]
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert parent.info.status == child.info.status == "FINISHED"
    assert parent.data.params == {"models": "builtin:tiny", "good_enough": "0.5", "path": "t.yaml"}
    assert child.data.metrics["test/accuracy"] == 0.75
    assert child.data.metrics["test/accuracy.ci_low"] == accuracy.ci_low
    assert child.data.tags["test/accuracy.signature"] == accuracy.signature
    history = client.get_metric_history(child.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.0), (2, 1.5)]
    child_files = [f.path for f in client.list_artifacts(child.info.run_id)]
    assert child_files == ["preds.jsonl"]
    stored = tmp_path / "runs-artifacts" / "tagger" / parent.info.run_id / "artifacts"
    assert (stored / "report" / "index.html").read_text() == "<html>ok</html>"
    assert took < 8.0  # the store came from the template: no migrations


def test_failed_and_interrupted_runs_keep_their_status(tmp_path: Path, mlflow_ready: None) -> None:
    tracker = MlflowTracker(store(tmp_path), experiment="exp")
    with pytest.raises(RuntimeError, match="boom"), tracker.run("bad") as run:
        run.log_metrics({"done": 1.0})
        raise RuntimeError("boom")
    with pytest.raises(KeyboardInterrupt), tracker.run("stopped"):
        raise KeyboardInterrupt
    assert tracker.run_id is None
    found = tracker.client.search_runs([tracker.client.get_experiment_by_name("exp").experiment_id])
    assert {r.info.run_name: r.info.status for r in found} == {"bad": "FAILED", "stopped": "KILLED"}
    with pytest.raises(RuntimeError, match="inside"):
        tracker.log_metrics({"outside": 1.0})


def test_a_store_that_fails_mid_run_warns_once_and_the_work_goes_on(
    tmp_path: Path, mlflow_ready: None, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = MlflowTracker(store(tmp_path), experiment="exp")
    (tmp_path / "preds.jsonl").write_text('{"p": 1}\n')
    finished = []
    with caplog.at_level("WARNING", logger="ladder.track"), tracker.run("climb") as climb:
        with climb.run("rung a") as rung:
            rung.log_metrics({"value": 0.5})
        (tmp_path / "runs.db").unlink()  # SQLite refuses writes to a removed database
        with climb.run("rung b") as rung:
            rung.log_metrics({"value": 0.7})
            rung.log_artifact(tmp_path / "preds.jsonl")
            finished.append("b")
        climb.set_tags({"recommendation": "b"})
    assert finished == ["b"] and tracker.run_id is None
    assert tracker.failed is not None and tracker.failed.startswith("opening run 'rung b': ")
    warnings = [r.getMessage() for r in caplog.records if r.name == "ladder.track"]
    assert len(warnings) == 1 and "runs.db failed (opening run 'rung b'" in warnings[0]
    # The next top-level run tries the store again: a store that cannot open is one line.
    with pytest.raises(ConfigError, match=r"^tracking store sqlite:///"), tracker.run("next"):
        pass


def test_llm_calls_chains_and_agents_become_traces_of_the_run(
    tmp_path: Path, server: OpenAITestServer, mlflow_ready: None
) -> None:
    tracker = MlflowTracker(store(tmp_path), experiment="prompts")
    with tracker.run("prompt run") as run:
        run_id = run.run_id
        done = workload(server, echo_model(server))
    experiment_id = tracker.client.get_experiment_by_name("prompts").experiment_id
    [trace] = traces(tracker, experiment_id)  # one window: 3 top-level spans
    assert trace.info.trace_metadata["mlflow.sourceRun"] == run_id
    spans = trace.data.spans
    by_id = {s.span_id: s for s in spans}
    root = next(s for s in spans if s.parent_id is None)
    assert root.name == "prompt run calls"
    top = [s.name for s in spans if s.parent_id == root.span_id]
    assert top == ["generate", "chain twice", "agent"]
    calls = [s for s in spans if s.span_type == "LLM" and by_id[s.parent_id].name == "generate"]
    assert [c.name for c in calls] == ["greet [0]", "greet [1]", "greet [2]"]
    first = calls[0]
    assert first.inputs == {"prompt": [{"role": "user", "content": "### Input\nSay cat"}]}
    assert first.outputs == done["outcomes"][0].output
    assert first.get_attribute("template") == "greet"
    assert first.get_attribute("template_version") == done["template"].version
    assert first.get_attribute("model") == "openai:echo"
    assert first.get_attribute("mlflow.chat.tokenUsage") == {
        "input_tokens": 4,
        "output_tokens": 6,
        "total_tokens": 10,
    }
    tool = next(s for s in spans if s.span_type == "TOOL")
    assert (tool.inputs, tool.outputs) == ("17 + 25", "42")
    assert (
        by_id[tool.parent_id].name == "step 0"
        and by_id[by_id[tool.parent_id].parent_id].name == "agent"
    )
    assert len(spans) == 1 + 4 + 7 + 8


def test_trace_windows_roll_over(tmp_path: Path, mlflow_ready: None) -> None:
    tracker = MlflowTracker(store(tmp_path), experiment="w", window_spans=2)
    with tracker.run("r"):
        for i in range(5):
            with track.span(f"s{i}", "TOOL", inputs=i):
                pass
    found = traces(tracker, tracker.client.get_experiment_by_name("w").experiment_id)
    names = [[s.name for s in t.data.spans if s.parent_id is not None] for t in found]
    assert sorted(names) == [["s0", "s1"], ["s2", "s3"], ["s4"]]


def test_seeding_random_does_not_make_trace_ids_collide(tmp_path: Path, mlflow_ready: None) -> None:
    """Every climb and training seeds Python's ``random``; trace ids must not follow it (two
    climbs in one store lost the second one's traces: "already exists in another experiment")."""
    import random

    for name in ("first", "second"):
        tracker = MlflowTracker(store(tmp_path), experiment=name)
        with tracker.run("r"):
            random.seed(0)
            with track.span("call", "LLM", inputs=name):
                pass
        found = traces(tracker, tracker.client.get_experiment_by_name(name).experiment_id)
        assert [[s.inputs for s in t.data.spans if s.parent_id] for t in found] == [[name]]


def test_a_new_sqlite_store_is_copied_from_the_template(tmp_path: Path, mlflow_ready: None) -> None:
    db = tmp_path / "deep" / "ladder-runs.db"
    started = time.perf_counter()
    uri = prepare_store(f"sqlite:///{db}")
    assert time.perf_counter() - started < 2.0 and db.is_file()
    with sqlite3.connect(db) as con:
        [(location,)] = con.execute("SELECT artifact_location FROM experiments").fetchall()
    assert location == (tmp_path / "deep" / "ladder-runs-artifacts" / "0").as_uri()
    assert prepare_store(uri) == uri  # an existing store is left alone
    with pytest.raises(ConfigError, match=r"sqlite:///relative/runs\.db"):
        prepare_store("sqlite://runs.db")


def test_a_file_that_is_not_a_store_is_one_line(tmp_path: Path, mlflow_ready: None) -> None:
    (tmp_path / "notes.db").write_text("not a database")
    tracker = get_tracker(f"sqlite:///{tmp_path / 'notes.db'}")
    pattern = r"notes\.db: .*file is not a database"
    with pytest.raises(ConfigError, match=pattern) as info, tracker.run("r"):
        pass
    assert "\n" not in str(info.value) and "LADDER_TRACKING_URI" in str(info.value)


def test_default_store_is_a_sqlite_file_in_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(track.TRACKING_URI_ENV, raising=False)
    assert default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/ladder-runs.db"
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/ladder-runs.db"
    monkeypatch.setenv(track.TRACKING_URI_ENV, "http://127.0.0.1:5000")
    assert default_tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_only_the_track_package_imports_mlflow() -> None:
    src = Path(__file__).resolve().parents[1] / "src" / "ladder"
    offenders = [
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if "track" not in path.relative_to(src).parts
        and any(
            line.strip().startswith(("import mlflow", "from mlflow"))
            for line in path.read_text().splitlines()
        )
    ]
    assert offenders == []
    inside = [p.name for p in (src / "track").glob("*.py") if "mlflow" in p.read_text()]
    assert "_mlflow.py" in inside and "_store.py" in inside


def test_a_traced_process_ends_without_mlflow_teardown_noise(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    script = (
        "from ladder import track\n"
        f"t = track.MlflowTracker({store(tmp_path)!r}, experiment='x')\n"
        "with t.run('r'):\n"
        "    with track.span('call', 'LLM', inputs='a'):\n"
        "        pass\n"
        "print('done')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=os.environ, timeout=120
    )
    assert done.returncode == 0 and done.stdout == "done\n"
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr
