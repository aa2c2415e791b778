"""``ladder climb --plan``: probes plan each rung's time, memory and cost (low / expected /
high), and a climb's measured times fall within the planned range; the report shows both."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import _planted  # noqa: F401  (registers the planted rung)
from conftest import write_climb_task
from ladder.cli.main import main
from ladder.climb import ClimbOptions, climb, load_task
from ladder.climb.plan import PROBE_RECORDS, Bounds, make_plan, read_plan, write_plan
from ladder.models import load_model
from openai_server import OpenAITestServer

# 40 ms per record: the time of a rung is its records' time, as a model's answers are.
RUNGS = (
    "  - {rung: planted, delay_s: 0.04, wrong: [1]}\n"
    "  - {rung: planted, label: again, delay_s: 0.04}\n"
)


@pytest.fixture(scope="module")
def model() -> Iterator[str]:
    """A model spec the climb accepts; the planted rung never calls it."""
    srv = OpenAITestServer().start()
    spec = f"openai:echo@{srv.base_url}"
    # The backend's first load imports its client libraries (seconds); the plan and the
    # climb run in this one process, so both should find them imported, as two processes
    # would both pay for them.
    load_model(spec)
    yield spec
    srv.stop()


def test_plan_structure_then_the_climb_takes_a_time_within_it(
    tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    task = write_climb_task(tmp_path / "t", [model], RUNGS, test=60)
    out = tmp_path / "out"
    assert main(["climb", str(task), "--plan", "--out", str(out), "--track", "none"]) == 0
    shown = capsys.readouterr().out
    assert "plan: animals (low / expected / high)" in shown and "plan.json" in shown
    assert not (out / "climb.json").exists()  # a plan climbs nothing
    data = json.loads((out / "plan.json").read_text())
    assert data["task"] == "animals" and data["fingerprint"] == load_task(task).fingerprint()
    # x2 either way, or the machine's oversubscription when more (other jobs share it)
    spread = max(2.0, data["machine"]["load_average_1m"] / data["machine"]["cpus"])
    assert data["spread"] == pytest.approx(spread, abs=0.01) and data["machine"]["cpus"] >= 1
    assert [(r["rung"], r["model"]) for r in data["rungs"]] == [
        ("planted", model),
        ("again", model),
    ]
    first = data["rungs"][0]
    assert first["probe"]["records"] == PROBE_RECORDS and first["fit_bytes"] is None  # an API model
    for key in ("wall_s", "peak_bytes", "cost_usd"):
        b = first[key]
        assert 0 <= b["low"] <= b["expected"] <= b["high"], key
    # 60 records at 40 ms: about 2.4 s of answering
    assert 1.2 < first["wall_s"]["expected"] < 6.0
    assert first["wall_s"]["high"] == pytest.approx(
        data["spread"] ** 2 * first["wall_s"]["low"], rel=1e-4
    )

    result = climb(task, ClimbOptions(out=out, all_rungs=True, optimise=False))
    plan = read_plan(out, result.task.fingerprint())
    assert plan is not None
    for row in result.rows:
        planned = plan.find(row.rung, row.model)
        assert planned is not None and planned.wall_s is not None
        assert planned.wall_s.contains(row.timing.wall_s), (row.rung, row.timing.wall_s)
        assert planned.peak_bytes is not None and planned.peak_bytes.contains(row.memory.peak_bytes)
    html = (out / "report.html").read_text()
    assert "Plan against measured" in html
    assert "2 of 2 rungs took a time within the plan&#x27;s range" in html


def test_a_plan_of_other_data_is_not_shown(tmp_path: Path, model: str) -> None:
    task = write_climb_task(tmp_path / "t", [model], RUNGS, test=20)
    out = tmp_path / "out"
    plan = make_plan(load_task(task), [model])
    out.mkdir()
    write_plan(out, plan)
    assert read_plan(out, plan.fingerprint) is not None
    assert read_plan(out, "0" * 16) is None
    assert Bounds.around(3.0, 2.0) == Bounds(1.5, 3.0, 6.0)


@pytest.mark.slow
def test_a_fine_tuning_rung_on_the_tiny_model_takes_a_time_within_its_plan(
    tiny_causal_lm: Path, tmp_path: Path
) -> None:
    full = "{rung: full, train: {max_steps: 20, batch_size: 8, lr: 0.003, warmup_steps: 2}}"
    rungs = f"  - zero_shot\n  - {full}\n"
    task = write_climb_task(tmp_path / "t", [f"hf:{tiny_causal_lm}"], rungs, train=40, test=16)
    out = tmp_path / "out"
    loaded = load_task(task)
    plan = make_plan(loaded, loaded.spec.models)
    write_plan(out, plan)
    planned = plan.find("full", f"hf:{tiny_causal_lm}")
    assert planned is not None and planned.probe["steps_planned"] == 20
    assert planned.fit_bytes is not None and planned.fit_bytes > 0  # ladder fit counted it
    assert planned.probe["seconds_per_step"] > 0
    result = climb(task, ClimbOptions(out=out, all_rungs=True, optimise=False))
    for row in result.rows:
        p = plan.find(row.rung, row.model)
        assert p is not None and p.wall_s is not None
        assert p.wall_s.contains(row.timing.wall_s), (row.rung, row.timing.wall_s, p.wall_s)
