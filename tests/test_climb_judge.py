"""The climb's judge column: an LLM judge grades every rung's answers next to the metric.

Two real OpenAI-protocol HTTP servers (``tests/openai_server.py``): one answers the task (a
scripted model that knows the label of cats only), the other is the judge, scripted to give
5 to an answer equal to the reference and 1 otherwise — so the judge column is a function of
the answers the test can check exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from conftest import CLIMB_LABELS, write_climb_task
from ladder.cli.main import main
from ladder.climb import ClimbOptions, climb, load_task
from ladder.errors import ConfigError
from openai_server import OpenAITestServer


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[OpenAITestServer, OpenAITestServer]]:
    model, judge = OpenAITestServer().start(), OpenAITestServer().start()
    yield model, judge
    model.stop()
    judge.stop()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("LADDER_HOME", str(tmp_path / "home"))


def knows_cats(body: Mapping[str, Any]) -> str:
    """Right for cats, "blue" for everything else (right for dogs, wrong for birds)."""
    text = str(body["messages"][-1]["content"])
    animal = re.findall(r"\b(cat|dog|bird)\b", text)[-1]
    return CLIMB_LABELS[animal] if animal == "cat" else "blue"


def _section(text: str, name: str) -> str:
    found = re.search(rf"\[{re.escape(name)}\]\n(.*?)(?:\n\n|\n\[|$)", text, re.DOTALL)
    assert found, f"no [{name}] in the judge prompt"
    return found.group(1).strip()


def strict_judge(body: Mapping[str, Any]) -> str:
    """5 when the answer is the reference, else 1; the rationale says which."""
    text = str(body["messages"][-1]["content"])
    same = _section(text, "Answer") == _section(text, "Reference answer")
    return json.dumps({"rationale": "matches" if same else "differs", "score": 5 if same else 1})


def _asked(server: OpenAITestServer) -> int:
    return sum(1 for r in server.requests if r.path.endswith("/chat/completions"))


def _task(tmp_path: Path, model: OpenAITestServer, judge: str = "", rungs: str = "") -> Path:
    return write_climb_task(
        tmp_path / "t",
        [f"openai:nologprobs@{model.base_url}"],
        rungs or "  - zero_shot\n",
        extra=f"optimise: false\n{judge}",
        test=20,
    )


def test_judge_column_grades_every_answer_with_a_ci(
    tmp_path: Path, servers: tuple[OpenAITestServer, OpenAITestServer]
) -> None:
    model, judge = servers
    model.responder, judge.responder = knows_cats, strict_judge
    spec = f"openai:nologprobs@{judge.base_url}"
    task = _task(tmp_path, model, f"judge: {{model: '{spec}', max_tokens: 64}}\n")
    asked = _asked(judge)
    result = climb(task, ClimbOptions(out=tmp_path / "out"))
    row = result.rows[0]
    assert row.score.value is not None and 0.0 < row.score.value < 1.0  # birds are wrong
    # The judge saw every answer and its reference: grade 5 when right, 1 when wrong.
    assert _asked(judge) - asked == 20
    judged = row.judge
    assert judged is not None and judged.value == pytest.approx(1.0 + 4.0 * row.score.value)
    assert judged.ci_low is not None and judged.ci_high is not None
    assert judged.ci_low < judged.value < judged.ci_high
    assert judged.valid == "20/20" and "rubric:correctness-" in judged.signature
    verdicts = [json.loads(x) for x in (Path(row.provenance.folder) / "judgments.jsonl").open()]
    assert len(verdicts) == 20 and {v["rationale"] for v in verdicts} == {"matches", "differs"}
    board = json.loads((tmp_path / "out" / "leaderboard.json").read_text())
    assert board["judge"]["model"] == spec
    assert board["leaderboard"][0]["judge_value"] == pytest.approx(judged.value)
    html = (tmp_path / "out" / "report.html").read_text()
    assert "judge [95% CI]" in html and f"{judged.value:.2f} [" in html


def test_min_score_makes_the_judge_part_of_the_stop_rule(
    tmp_path: Path, servers: tuple[OpenAITestServer, OpenAITestServer]
) -> None:
    model, judge = servers
    model.responder = knows_cats
    judge.responder = lambda body: '{"rationale": "no", "score": 2}'
    spec = f"openai:nologprobs@{judge.base_url}"
    task = _task(tmp_path, model, f"judge: {{model: '{spec}', min_score: 3}}\ngood_enough: 0.1\n")
    task.write_text(task.read_text().replace("good_enough: 0.8\n", ""))
    row = climb(task, ClimbOptions(out=tmp_path / "out")).rows[0]
    assert row.score.value is not None and row.score.value >= 0.1  # the metric alone would pass
    assert not row.verdict.good_enough
    assert row.verdict.reason == "judge 2.000 is below judge.min_score 3.0"


def test_resume_with_a_judge_grades_finished_rungs_without_rerunning_them(
    tmp_path: Path, servers: tuple[OpenAITestServer, OpenAITestServer]
) -> None:
    model, judge = servers
    model.responder, judge.responder = knows_cats, strict_judge
    task = _task(tmp_path, model, rungs="  - zero_shot\n  - {rung: few_shot, k: 2}\n")
    out = tmp_path / "out"
    first = climb(task, ClimbOptions(out=out, all_rungs=True))
    assert all(r.judge is None for r in first.rows)
    answered = _asked(model)
    options = ClimbOptions(
        out=out, all_rungs=True, resume=True, judge=f"openai:nologprobs@{judge.base_url}"
    )
    again = climb(task, options)
    assert _asked(model) == answered  # the finished rungs were not asked again
    assert [r.score.value for r in again.rows] == [r.score.value for r in first.rows]
    for row in again.rows:
        assert row.judge is not None
        assert row.judge.value == pytest.approx(1.0 + 4.0 * (row.score.value or 0.0))
    # Graded once: a second resume with the same judge asks it nothing.
    graded = _asked(judge)
    climb(task, options)
    assert _asked(judge) == graded


def test_a_judge_that_never_gives_a_valid_verdict_leaves_the_column_empty(
    tmp_path: Path, servers: tuple[OpenAITestServer, OpenAITestServer]
) -> None:
    model, judge = servers
    model.responder = knows_cats
    judge.responder = lambda body: "I think it is fine."
    spec = f"openai:nologprobs@{judge.base_url}"
    task = _task(tmp_path, model, f"judge: {{model: '{spec}', attempts: 1}}\n")
    row = climb(task, ClimbOptions(out=tmp_path / "out")).rows[0]
    assert row.score.value is not None  # the metric is still there
    assert row.judge is not None and row.judge.value is None and row.judge.valid == "0/20"
    judgments = Path(row.provenance.folder) / "judgments.jsonl"
    errors = [json.loads(x)["error"] for x in judgments.open()]
    assert all(errors)


def test_judge_section_without_a_model_judges_nothing_and_says_so(
    tmp_path: Path, servers: tuple[OpenAITestServer, OpenAITestServer]
) -> None:
    model, _ = servers
    model.responder = knows_cats
    task = _task(tmp_path, model, "judge: {rubric: helpfulness}\n")
    said: list[str] = []
    result = climb(task, ClimbOptions(out=tmp_path / "out", log=said.append))
    assert result.judge is None and result.rows[0].judge is None
    assert any("no judge model" in line and "--judge" in line for line in said)


def test_bad_judge_rubric_names_the_file_line_and_field(
    tmp_path: Path, servers: tuple[OpenAITestServer, OpenAITestServer]
) -> None:
    model, _ = servers
    task = _task(tmp_path, model, "judge:\n  model: hf:x\n  rubric: missing.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_task(task)
    assert str(err.value).startswith(f"{task}:11: field 'judge.rubric': rubric ")
    assert "missing.yaml" in str(err.value)
    pairwise = _task(tmp_path, model, "judge: {model: 'hf:x', rubric: pairwise}\n")
    with pytest.raises(ConfigError, match=r"field 'judge\.rubric'.*pairwise"):
        load_task(pairwise)


def test_cli_judge_flag_prints_the_judge_column(
    tmp_path: Path,
    servers: tuple[OpenAITestServer, OpenAITestServer],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # one line per table row
    model, judge = servers
    model.responder, judge.responder = knows_cats, strict_judge
    task = _task(tmp_path, model)
    args = ["climb", str(task), "--out", str(tmp_path / "out"), "--track", "none"]
    assert main([*args, "--judge", f"openai:nologprobs@{judge.base_url}"]) == 0
    printed = capsys.readouterr().out
    assert "judge" in printed
    board = json.loads((tmp_path / "out" / "leaderboard.json").read_text())
    value = board["leaderboard"][0]["judge_value"]
    line = next(ln for ln in printed.splitlines() if "zero_shot" in ln)
    assert f"{value:.2f} [" in line


def test_riddles_example_is_judged_on_its_own_rubric(
    tmp_path: Path, servers: tuple[OpenAITestServer, OpenAITestServer]
) -> None:
    import shutil

    import yaml

    model, judge = servers
    folder = tmp_path / "riddles"
    root = Path(__file__).resolve().parents[1] / "examples" / "riddles"
    shutil.copytree(root, folder, ignore=shutil.ignore_patterns("data"))
    spec = yaml.safe_load((folder / "task.yaml").read_text())
    spec.update(rungs=["zero_shot"], optimise=False)
    spec["data"]["test_limit"] = 4
    (folder / "task.yaml").write_text(yaml.safe_dump(spec))
    model.responder = lambda body: "I am news. What am I? The news."
    prompts: list[str] = []

    def riddle_judge(body: Mapping[str, Any]) -> str:
        prompts.append(str(body["messages"][-1]["content"]))
        return '{"rationale": "a riddle, wrong answer", "score": 3}'

    judge.responder = riddle_judge
    options = ClimbOptions(
        out=tmp_path / "out",
        models=[f"openai:nologprobs@{model.base_url}"],
        judge=f"openai:nologprobs@{judge.base_url}",
    )
    row = climb(folder / "task.yaml", options).rows[0]
    assert row.judge is not None and row.judge.value == 3.0
    assert "rubric:riddle-" in row.judge.signature
    assert len(prompts) == 4 and all('ends with "What am I?"' in p for p in prompts)
    tests = [json.loads(x) for x in (folder / "data" / "test.jsonl").open()][:4]
    for record in tests:  # each judge prompt: the article, then its reference riddle
        pair = f"[Question]\n{record['article']}\n\n[Reference answer]\n{record['riddle']}\n"
        assert sum(pair in p for p in prompts) == 1


def test_judge_calls_are_traced_in_the_rung_run(
    tmp_path: Path, servers: tuple[OpenAITestServer, OpenAITestServer]
) -> None:
    model, judge = servers
    model.responder, judge.responder = knows_cats, strict_judge
    task = _task(tmp_path, model)
    events = tmp_path / "events.jsonl"
    options = ClimbOptions(
        out=tmp_path / "out",
        judge=f"openai:nologprobs@{judge.base_url}",
        tracking_uri=f"jsonl:{events}",
    )
    climb(task, options)
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    rung_run = next(
        e["run"] for e in lines if e["event"] == "run_start" and e["name"] == "rung zero_shot"
    )
    spans = [e for e in lines if e["event"] == "span" and e["run"] == rung_run]
    assert sum(1 for e in spans if e["name"] == "judge") >= 1
    metrics = {
        k for e in lines if e["event"] == "metrics" and e["run"] == rung_run for k in e["metrics"]
    }
    assert {"judge_value", "judge_ci_low", "judge_ci_high"} <= metrics
    stored = {Path(e["stored"]).name for e in lines if e["event"] == "artifact"}
    assert {"judgments.jsonl", "judge.json"} <= stored


def test_a_bad_judge_spec_stops_the_climb_before_any_rung_runs(
    tmp_path: Path,
    servers: tuple[OpenAITestServer, OpenAITestServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    model, _ = servers
    model.responder = knows_cats
    task = _task(tmp_path, model)
    asked = _asked(model)
    args = ["climb", str(task), "--out", str(tmp_path / "out"), "--track", "none"]
    assert main([*args, "--judge", "gpt-4o"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--judge: unknown model spec 'gpt-4o'" in err
    assert _asked(model) == asked and not (tmp_path / "out").exists()
    task.write_text(task.read_text() + "judge: {model: llama3}\n")
    with pytest.raises(ConfigError, match=r"task\.yaml: field 'judge\.model': unknown model spec"):
        climb(task, ClimbOptions(out=tmp_path / "out"))
