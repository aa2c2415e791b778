"""The tracking seam: choosing a tracker by URI, the JSONL tracker's events, the no-op default."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ladder import track
from ladder.errors import ConfigError
from ladder.evaluate import get_metric
from ladder.evaluate.score import Score
from ladder.track import (
    JsonlTracker,
    NullTracker,
    Tracker,
    get_tracker,
    log_evaluation,
    register_tracker,
    score_fields,
)
from ladder.track import _core as track_core


def events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def accuracy() -> Score:
    """A real score with a bootstrap CI: 6 of 8 right."""
    metric = get_metric("accuracy", resamples=200, seed=0)
    return metric.compute(list("aabbccdd"), list("aabbccxx"))


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(track.TRACKING_URI_ENV, raising=False)


def test_default_is_the_null_tracker_and_it_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, accuracy: Score
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out.txt").write_text("x")
    for tracker in (get_tracker(), get_tracker(""), get_tracker("none"), get_tracker(" NONE ")):
        assert isinstance(tracker, NullTracker)
        assert isinstance(tracker, Tracker)
        with tracker.run("r", tags={"a": "b"}) as run:
            run.log_params({"k": 1})
            run.log_metrics({"m": 1.0}, step=3)
            run.set_tags({"t": "v"})
            run.log_score(accuracy)
            run.log_artifact("out.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_score_fields_are_value_ci_ends_and_signature(accuracy: Score) -> None:
    metrics, tags = score_fields(accuracy, prefix="dev/")
    assert metrics == {
        "dev/accuracy": 0.75,
        "dev/accuracy.ci_low": accuracy.ci_low,
        "dev/accuracy.ci_high": accuracy.ci_high,
    }
    assert accuracy.ci_low is not None and accuracy.ci_low < 0.75 < (accuracy.ci_high or 0)
    assert tags == {"dev/accuracy.signature": accuracy.signature}
    no_ci = get_metric("accuracy", resamples=0).compute(["a"], ["a"])
    assert score_fields(no_ci) == ({"accuracy": 1.0}, {"accuracy.signature": no_ci.signature})


def test_jsonl_tracker_records_a_run_event_by_event(tmp_path: Path, accuracy: Score) -> None:
    path = tmp_path / "runs" / "events.jsonl"
    artifact = tmp_path / "summary.json"
    artifact.write_text('{"acc": 0.75}')
    tracker = get_tracker(f"jsonl:{path}")
    assert isinstance(tracker, JsonlTracker) and isinstance(tracker, Tracker)
    with tracker.run("eval arith-mc", tags={"model": "tiny"}) as run:
        run.log_params({"num_fewshot": 2, "task": Path("t.yaml"), "limit": None})
        run.log_metrics({"loss": 1.5, "bad": float("nan")}, step=7)
        run.log_score(accuracy, prefix="test/")
        run.log_artifact(artifact)
    got = events(path)
    assert [e["event"] for e in got] == [
        "run_start",
        "params",
        "metrics",
        "metrics",
        "tags",
        "artifact",
        "run_end",
    ]
    run_id = got[0]["run"]
    assert run_id and all(e["run"] == run_id for e in got)
    assert got[0]["name"] == "eval arith-mc" and got[0]["tags"] == {"model": "tiny"}
    assert got[0]["parent"] is None
    assert got[1]["params"] == {"num_fewshot": 2, "task": "t.yaml", "limit": None}
    assert got[2]["metrics"] == {"loss": 1.5, "bad": None} and got[2]["step"] == 7
    assert got[3]["metrics"]["test/accuracy"] == 0.75
    assert got[3]["metrics"]["test/accuracy.ci_low"] == accuracy.ci_low
    assert got[4]["tags"] == {"test/accuracy.signature": accuracy.signature}
    stored = Path(got[5]["stored"])
    assert stored == path.with_name("events.jsonl-artifacts") / run_id / "summary.json"
    assert stored.read_text() == '{"acc": 0.75}'
    assert got[6]["status"] == "FINISHED"
    assert got[0]["time"] <= got[6]["time"]


def test_nested_runs_and_a_failing_run(tmp_path: Path) -> None:
    tracker = JsonlTracker(tmp_path / "e.jsonl")
    tracker.log_metrics({"outside": 1.0})
    with pytest.raises(RuntimeError, match="boom"), tracker.run("climb") as outer:
        with outer.run("rung zero-shot") as inner:
            inner.log_metrics({"acc": 0.5})
        outer.log_metrics({"best": 0.5})
        raise RuntimeError("boom")
    got = events(tmp_path / "e.jsonl")
    assert got[0] == {**got[0], "event": "metrics", "run": None}
    outer_id, inner_id = got[1]["run"], got[2]["run"]
    assert outer_id != inner_id and got[2]["parent"] == outer_id
    assert [(e["event"], e["run"]) for e in got[3:]] == [
        ("metrics", inner_id),
        ("run_end", inner_id),
        ("metrics", outer_id),
        ("run_end", outer_id),
    ]
    assert got[4]["status"] == "FINISHED" and got[6]["status"] == "FAILED"
    assert tracker.run_id is None


def test_folders_are_copied_as_artifacts(tmp_path: Path) -> None:
    out = tmp_path / "eval-out"
    out.mkdir()
    (out / "samples.jsonl").write_text("{}\n")
    tracker = JsonlTracker(tmp_path / "e.jsonl")
    with tracker.run("r") as run:
        run.log_artifact(out)
    stored = Path(events(tmp_path / "e.jsonl")[1]["stored"])
    assert (stored / "samples.jsonl").read_text() == "{}\n"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("wandb:project", r"'wandb:project': unknown tracker; use one of file:, http:, https:"),
        ("databricks://profile", "unknown tracker"),
        ("wandb:https://u:hunter2-password@host", r"'wandb:https://u:\*\*\*@host': unknown"),
        ("runs/events.jsonl", "unknown tracker"),
        ("jsonl:", "jsonl needs a file"),
    ],
)
def test_bad_uris_are_one_line_errors(uri: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        get_tracker(uri)
    assert "\n" not in str(info.value)


def test_the_environment_variable_chooses_the_tracker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(track.TRACKING_URI_ENV, f"jsonl:{tmp_path / 'env.jsonl'}")
    tracker = get_tracker()
    assert isinstance(tracker, JsonlTracker) and tracker.path == tmp_path / "env.jsonl"
    monkeypatch.setenv(track.TRACKING_URI_ENV, "wandb:x")
    with pytest.raises(ConfigError, match=r"^LADDER_TRACKING_URI=wandb:x: unknown tracker"):
        get_tracker()
    assert isinstance(get_tracker("none"), NullTracker)  # an explicit URI wins


def test_a_registered_scheme_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(track_core, "_TRACKERS", dict(track_core._TRACKERS))
    seen: list[str] = []

    def factory(uri: str) -> Tracker:
        seen.append(uri)
        return JsonlTracker(tmp_path / "custom.jsonl")

    register_tracker("WandB", factory)
    assert "wandb" in track.tracker_schemes()
    tracker = get_tracker("wandb:project")
    assert isinstance(tracker, JsonlTracker) and seen == ["wandb:project"]


def test_missing_artifact_is_a_config_error(tmp_path: Path) -> None:
    tracker = JsonlTracker(tmp_path / "e.jsonl")
    with pytest.raises(ConfigError, match=r"nope\.txt: no such file or folder"):
        tracker.log_artifact(tmp_path / "nope.txt")


def test_log_evaluation_logs_one_run(tmp_path: Path, accuracy: Score) -> None:
    out = tmp_path / "summary.json"
    out.write_text("{}")
    tracker = JsonlTracker(tmp_path / "e.jsonl")
    log_evaluation(
        tracker,
        name="score accuracy",
        params={"predictions": "p.txt"},
        scores={"accuracy": accuracy},
        artifacts=[out],
        tags={"verb": "score"},
    )
    got = events(tmp_path / "e.jsonl")
    assert [e["event"] for e in got] == [
        "run_start",
        "params",
        "metrics",
        "tags",
        "artifact",
        "run_end",
    ]
    assert got[0]["tags"] == {"verb": "score"} and got[2]["metrics"]["accuracy"] == 0.75


WRITER = """
import sys
from ladder.track import JsonlTracker
tracker = JsonlTracker(sys.argv[1])
with tracker.run("worker " + sys.argv[2]) as run:
    for step in range(150):
        run.log_metrics({"step": float(step), "pad": 0.123456789}, step=step)
"""


def test_processes_appending_to_one_file_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    workers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(i)]) for i in range(4)
    ]
    assert [w.wait(timeout=60) for w in workers] == [0, 0, 0, 0]
    got = events(path)  # every line parses
    assert len(got) == 4 * (150 + 2)
    for run_id in {e["run"] for e in got}:
        steps = [e["step"] for e in got if e["run"] == run_id and e["event"] == "metrics"]
        assert steps == list(range(150))
