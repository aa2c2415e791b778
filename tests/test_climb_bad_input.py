"""Bad input to ``ladder climb``: one clear line, and the results of finished rungs are kept.

A task-file mistake (a metric that does not fit the output type, a rung that needs training
data or preference pairs the task does not give) stops the CLI before anything runs: exit
2, one line on stderr naming file:line and the field, and an earlier climb in the same
``--out`` is left exactly as it was. A budget exceeded mid-climb stops after the rung that
passed it: exit 0, one "Stopped: budget ..." line, every finished row kept (and resumable
with a higher budget).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from conftest import CLIMB_LABELS, file_hashes, write_climb_task
from ladder.cli.main import main
from ladder.climb import ClimbOptions, climb
from ladder.climb.state import load_state
from openai_server import OpenAITestServer


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    srv = OpenAITestServer().start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "prices.yaml").write_text(
        '"openai:nologprobs": {input: 1.0, output: 2.0}\n'
    )
    monkeypatch.setenv("LADDER_HOME", str(tmp_path / "home"))


def oracle(body: Mapping[str, Any]) -> str:
    text = str(body["messages"][-1]["content"])
    return CLIMB_LABELS[re.findall(r"\b(cat|dog|bird)\b", text)[-1]]


def snapshot(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()
    }


BAD = {
    "metric": (
        lambda t: t.replace("metric: accuracy", "metric: rougeL"),
        r"task.yaml:4: field 'metric': rougeL does not fit output type 'label'; use one of ",
    ),
    "no train data": (
        lambda t: t.replace("train: train.jsonl, ", "").replace(
            "  - zero_shot\n", "  - zero_shot\n  - lora\n"
        ),
        r"task.yaml:10: field 'rungs.1': rung lora trains on data but the task has no data.train",
    ),
    "no pairs": (
        lambda t: t.replace("  - zero_shot\n", "  - zero_shot\n  - dpo\n"),
        r"task.yaml:10: field 'rungs.1': rung dpo trains on preference pairs but the task has no "
        "data.preference",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_task_mistakes_are_one_line_and_keep_the_earlier_climb(
    case: str, tmp_path: Path, server: OpenAITestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.responder = oracle
    task = write_climb_task(
        tmp_path / "t", [f"openai:nologprobs@{server.base_url}"], "  - zero_shot\n"
    )
    out = tmp_path / "out"
    assert main(["climb", str(task), "--out", str(out), "--no-optimise"]) == 0
    before = snapshot(out)
    capsys.readouterr()
    edit, message = BAD[case]
    task.write_text(edit(task.read_text()))
    assert main(["climb", str(task), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert re.search(message, line) and line.startswith("ladder: error: ")
    assert captured.out == ""
    assert snapshot(out) == before  # the finished climb's results are untouched
    assert [r.score.value for r in load_state(out)] == [1.0]


def test_budget_exceeded_mid_climb_stops_keeps_rows_and_resumes(
    tmp_path: Path, server: OpenAITestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.responder = lambda body: "purple"
    rungs = "  - zero_shot\n  - cot\n  - {rung: few_shot, k: 1}\n"
    model = f"openai:nologprobs@{server.base_url}"
    task = write_climb_task(tmp_path / "t", [model], rungs, extra="max_cost_usd: 0.001\n")
    out, board = tmp_path / "out", tmp_path / "board.json"
    assert main(["climb", str(task), "--all", "--out", str(out), "--json", str(board)]) == 0
    stdout = capsys.readouterr().out
    stopped = [line for line in stdout.splitlines() if line.startswith("Stopped:")]
    assert stopped == ["Stopped: budget: the climb cost $0.0016, over max_cost_usd $0.001"]
    data = json.loads(board.read_text())
    assert [r["rung"] for r in data["leaderboard"]] == ["zero_shot", "cot"]  # few_shot never ran
    assert data["stopped"].startswith("budget:") and data["variants"] == []
    for row in load_state(out):
        assert (Path(row.provenance.folder) / "predictions.jsonl").is_file()
    # a higher budget: --resume keeps both finished rows and runs only few_shot
    task.write_text(task.read_text().replace("max_cost_usd: 0.001", "max_cost_usd: 1.0"))
    asked = len(server.requests)
    result = climb(task, ClimbOptions(out=out, all_rungs=True, resume=True))
    assert [r.rung for r in result.rows] == ["zero_shot", "cot", "few_shot"]
    assert len(server.requests) - asked == 30  # only few_shot's 30 records


def test_a_failed_generator_leaves_no_half_written_data(tmp_path: Path) -> None:
    from ladder.climb import load_task
    from ladder.errors import ConfigError

    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "gen.py").write_text(
        "import pathlib, sys\n"
        "out = pathlib.Path(sys.argv[1])\n"
        '(out / \'test.jsonl\').write_text(\'{"text": "the cat", "la\')\n'  # cut off
        "sys.exit('gen: disk full while writing test.jsonl')\n"
    )
    task = folder / "task.yaml"
    task.write_text(
        "name: t\n"
        "data: {test: data/test.jsonl, input: text, reference: label, generator: gen.py}\n"
        "good_enough: 0.5\n"
        "rungs: [zero_shot]\n"
    )
    with pytest.raises(ConfigError) as err:
        load_task(task)
    assert str(err.value) == (
        f"{task}:2: the data generator failed: gen: disk full while writing test.jsonl"
    )
    # Nothing to mistake for data, and no leftover scratch folder.
    assert sorted(p.name for p in folder.iterdir()) == ["gen.py", "task.yaml"]
    # The generator fixed, the next load writes the data and reads it.
    (folder / "gen.py").write_text(
        "import json, pathlib, sys\n"
        "out = pathlib.Path(sys.argv[1])\n"
        "(out / 'test.jsonl').write_text(json.dumps({'text': 'the cat', 'label': 'red'}))\n"
    )
    assert [r["answer"] for r in load_task(task).test] == ["red"]


# -- an earlier climb's results go only when the user says so --------------------------------


@pytest.fixture
def earlier(tmp_path: Path, server: OpenAITestServer) -> tuple[Path, Path, dict[str, str]]:
    """A finished climb in ``out``: (task, out, its byte-for-byte snapshot)."""
    server.responder = oracle
    task = write_climb_task(
        tmp_path / "t", [f"openai:nologprobs@{server.base_url}"], "  - zero_shot\n"
    )
    out = tmp_path / "out"
    assert main(["climb", str(task), "--out", str(out), "--no-optimise"]) == 0
    return task, out, file_hashes(out)


@pytest.mark.parametrize("flags", [[], ["--overwrite"]])
def test_a_mistyped_model_stops_before_the_earlier_climb_is_touched(
    flags: list[str],
    earlier: tuple[Path, Path, dict[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    task, out, before = earlier
    capsys.readouterr()
    args = ["climb", str(task), "--out", str(out), "--model", "hf:/models/none", *flags]
    assert main(args) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line == (
        "ladder: error: hf checkpoint /models/none does not exist: give a local directory "
        "made by save_pretrained (ladder never downloads from a hub)"
    )
    assert captured.out == ""  # not even "zero_shot on …: running"
    assert file_hashes(out) == before


def test_a_second_climb_needs_resume_or_overwrite(
    earlier: tuple[Path, Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    task, out, before = earlier
    capsys.readouterr()
    assert main(["climb", str(task), "--out", str(out)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f"ladder: error: {out} already holds a climb of 'animals' (1 finished rung); pass "
        "--resume to keep them and run the rest, --overwrite to replace them, or another --out"
    )
    assert main(["climb", str(task), "--out", str(out), "--resume", "--overwrite"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert file_hashes(out) == before
    # --resume keeps the finished rung as it was, byte for byte
    assert main(["climb", str(task), "--out", str(out), "--resume", "--no-optimise"]) == 0
    rung = [name for name in before if name.startswith("rungs/")]
    assert rung and all(file_hashes(out)[name] == before[name] for name in rung)


def test_overwrite_replaces_only_the_models_it_climbs(
    earlier: tuple[Path, Path, dict[str, str]], server: OpenAITestServer
) -> None:
    task, out, before = earlier
    other = f"openai:echo@{server.base_url}"
    args = ["climb", str(task), "--out", str(out), "--model", other, "--overwrite"]
    assert main([*args, "--no-optimise"]) == 0
    after = file_hashes(out)
    first = {name: digest for name, digest in before.items() if name.startswith("rungs/")}
    assert first and all(after[name] == digest for name, digest in first.items())
    assert [r.model for r in load_state(out)] == [other]
    assert len({Path(name).parts[1] for name in after if name.startswith("rungs/")}) == 2


def test_model_folders_are_unique_per_spec() -> None:
    from ladder.climb.state import model_folder

    assert model_folder("builtin:tiny") == "builtin-tiny"
    assert model_folder("hf:/a/m") != model_folder("hf:/a-m")
    assert model_folder("hf:/a/m").startswith("hf-a-m-")
    long = "openai:" + "x" * 80
    assert model_folder(long) != model_folder(long + "y") and len(model_folder(long)) <= 57
