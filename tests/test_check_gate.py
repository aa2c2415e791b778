"""``ladder check``: the regression gate on climbs with planted answers — it catches a
planted regression (exit 1), passes the no-change case and a drop within the margin (exit 0),
and refuses a missing baseline, other records or another metric in one line (exit 2)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import _planted  # noqa: F401  (registers the planted rung)
from conftest import write_climb_task
from ladder.cli.main import main
from ladder.climb import ClimbOptions, climb
from openai_server import OpenAITestServer

GOOD = [0, 1, 2]  # the baseline: wrong on 3 of 60 test records
SPEC_ = "openai:echo@{}"


@pytest.fixture(scope="module")
def model() -> Iterator[str]:
    """A model spec the climb accepts; the planted rung never calls it."""
    srv = OpenAITestServer().start()
    yield SPEC_.format(srv.base_url)
    srv.stop()


def _climb(folder: Path, model: str, wrong: list[int], extra: str = "", test: int = 60) -> Path:
    """A one-rung climb of the planted rung into ``folder/out``; returns that folder."""
    rungs = f"  - {{rung: planted, wrong: {wrong}}}\n"
    task = write_climb_task(folder / "t", [model], rungs, extra=extra, test=test)
    climb(task, ClimbOptions(out=folder / "out", optimise=False))
    return folder / "out"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory, model: str) -> Path:
    return _climb(tmp_path_factory.mktemp("base"), model, GOOD)


def _rung_folder(out: Path) -> Path:
    [folder] = (out / "rungs").glob("*/00-planted")
    return folder


def _check(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["check", *args])
    got = capsys.readouterr()
    return code, got.out, got.err


def test_a_planted_regression_fails_the_gate(
    tmp_path: Path, model: str, baseline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = _climb(tmp_path, model, list(range(20)))  # breaks records 3-19
    code, out, _ = _check([str(_rung_folder(new)), "--baseline", str(baseline), "--json"], capsys)
    assert code == 1
    verdict = json.loads(out)
    assert verdict["verdict"] == "fail" and verdict["exit_code"] == 1
    assert verdict["metric"] == "accuracy" and verdict["n"] == 60
    assert verdict["baseline"]["value"] == pytest.approx(57 / 60)
    assert verdict["new"]["value"] == pytest.approx(40 / 60)
    assert verdict["delta"] == pytest.approx(-17 / 60)
    assert verdict["ci_low"] <= verdict["delta"] <= verdict["ci_high"] < 0
    assert (verdict["margin"], verdict["confidence"], verdict["seed"]) == (0.0, 0.95, 0)
    assert (verdict["fixed"], verdict["broken"]) == (0, 17)
    assert sorted(f["index"] for f in verdict["flips"]) == list(range(3, 20))
    assert verdict["flips"][0]["id"] == "test.jsonl:4"
    # the same check in words
    code, out, _ = _check([str(new), "--rung", "planted", "--baseline", str(baseline)], capsys)
    assert code == 1
    assert out.startswith("FAIL: accuracy 0.667 vs baseline 0.950: difference -0.283")
    assert "0 fixed, 17 broken of 60" in out


def test_no_change_passes(
    tmp_path: Path, model: str, baseline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    again = _climb(tmp_path, model, GOOD)
    code, out, _ = _check([str(again), "--baseline", str(baseline), "--json"], capsys)
    assert code == 0
    verdict = json.loads(out)
    assert verdict["verdict"] == "pass" and verdict["delta"] == 0.0
    assert verdict["fixed"] == verdict["broken"] == 0 and verdict["flips"] == []


def test_a_drop_within_the_task_margin_passes(
    tmp_path: Path, model: str, baseline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 10 records broken: a significant drop of 0.167, within a margin of 0.3, not 0.02
    new = _climb(tmp_path, model, list(range(13)), extra="gate: {margin: 0.3}\n")
    task = tmp_path / "t" / "task.yaml"
    args = [str(new), "--rung", "planted", "--baseline", str(baseline), "--task", str(task)]
    args.append("--json")
    code, out, err = _check(args, capsys)
    assert code == 0, err
    verdict = json.loads(out)
    assert verdict["margin"] == 0.3 and verdict["ci_high"] < 0
    assert "worse, but not by more than the margin" in verdict["reason"]
    code, out, _ = _check([*args, "--margin", "0.02"], capsys)
    assert code == 1 and json.loads(out)["margin"] == 0.02


def test_the_new_run_made_now_from_task_and_model(
    tmp_path: Path, model: str, baseline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = write_climb_task(
        tmp_path / "t", [model], f"  - {{rung: planted, wrong: {GOOD}}}\n", test=60
    )
    args = ["--task", str(task), "--model", model, "--baseline", str(baseline)]
    code, out, _ = _check([*args, "--out", str(tmp_path / "now"), "--json"], capsys)
    assert code == 0 and json.loads(out)["delta"] == 0.0
    [saved] = (tmp_path / "now").glob("*/planted/check.json")
    assert json.loads(saved.read_text())["verdict"] == "pass"


def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, model: str, baseline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    code, _, err = _check([str(baseline), "--baseline", str(missing)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"--baseline {missing}: no such folder; pass a climb folder" in err

    fewer = _climb(tmp_path / "fewer", model, GOOD, test=30)
    code, _, err = _check([str(fewer), "--baseline", str(baseline)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{baseline} answered 60 test records, {fewer} 30: not the same test records" in err

    other = _climb(tmp_path / "other", model, GOOD)
    task = other.parent / "t" / "test.jsonl"
    rows = [json.loads(x) for x in task.read_text().splitlines()]
    rows[4]["text"] = "the big cat sat on a mat"
    task.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (other / "climb.json").unlink()
    climb(other.parent / "t" / "task.yaml", ClimbOptions(out=other, optimise=False))
    code, _, err = _check([str(other), "--baseline", str(baseline)], capsys)
    assert code == 2 and "test record test.jsonl:5 differs: its input is" in err

    f1 = _climb(tmp_path / "f1", model, GOOD)
    state = json.loads((f1 / "climb.json").read_text())
    state["rows"][0]["metric"] = "f1"
    (f1 / "climb.json").write_text(json.dumps(state))
    code, _, err = _check([str(f1), "--baseline", str(baseline)], capsys)
    assert code == 2 and "scored with f1, but the comparison uses accuracy" in err


def test_the_github_actions_example_runs_a_check_that_fits_the_cli() -> None:
    import shlex

    import typer
    import yaml

    from _docs_commands import check
    from ladder.cli.main import app

    job = yaml.safe_load((Path(__file__).parents[1] / "examples/ci/ladder-gate.yml").read_text())
    steps = job["jobs"]["gate"]["steps"]
    [command] = [s["run"] for s in steps if "ladder check" in s.get("run", "")]
    argv = shlex.split(command.split("|")[0])
    assert argv[:2] == ["ladder", "check"] and "--baseline" in argv
    check(typer.main.get_command(app), argv[1:], mention=False)
