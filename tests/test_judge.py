"""LLM-as-judge against a real OpenAI-protocol server whose replies the tests script, and a
real tiny local model whose replies are not JSON."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ladder.cli.main import main
from ladder.errors import ConfigError
from ladder.evaluate.judge import (
    JudgeSettings,
    PairwiseVerdict,
    compare_pairwise,
    grade_single,
    single_verdict_model,
)
from ladder.evaluate.rubric import BUILTIN_RUBRICS, load_rubric
from ladder.evaluate.score import CISettings
from ladder.evaluate.verdicts import parse_verdict
from ladder.models import load_model
from ladder.models.base import LanguageModel
from openai_server import OpenAITestServer

FAST = {"retry_base_delay": 0.001, "timeout": 5.0}
NO_CI = JudgeSettings(ci=CISettings(resamples=0))
HELPFUL = BUILTIN_RUBRICS["helpfulness"]


@pytest.fixture(scope="module")
def _running_server() -> Iterator[OpenAITestServer]:
    server = OpenAITestServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(_running_server: OpenAITestServer) -> OpenAITestServer:
    _running_server.reset()
    return _running_server


def _judge(server: OpenAITestServer, model: str = "echo") -> LanguageModel:
    return load_model(f"openai:{model}@{server.base_url}", **FAST)


def _section(body: dict[str, Any], name: str) -> str:
    """The text under ``[name]`` in the first user message of a judge request."""
    user = body["messages"][1]["content"]
    match = re.search(rf"\[{re.escape(name)}\]\n(.*?)\n", user)
    assert match, user
    return match.group(1)


def _grade_by_length(body: dict[str, Any]) -> str:
    """A scripted judge: score = number of words of the answer."""
    answer = _section(body, "Answer")
    return json.dumps({"rationale": f"{len(answer.split())} words", "score": len(answer.split())})


# --- single-answer grading ------------------------------------------------------------------


def test_single_grading_scores_rows_and_records_the_setup(server: OpenAITestServer) -> None:
    server.responder = _grade_by_length
    answers = ["one two", "one two three four", "one two three", "a b c d e f"]
    result = grade_single(_judge(server), answers, rubric=HELPFUL, settings=JudgeSettings(seed=7))
    assert [row["score"] for row in result.rows] == [2, 4, 3, 6]
    assert result.rows[1]["rationale"] == "4 words"
    assert result.score.value == pytest.approx(3.75)
    assert result.score.ci_low is not None and result.score.ci_high is not None
    assert 2.0 <= result.score.ci_low <= 3.75 <= result.score.ci_high <= 6.0
    sig = result.score.signature
    for part in ("metric:judge|", "judge:echo", "backend:openai", "temp:0", "judge_seed:7"):
        assert part in sig
    assert f"rubric:helpfulness-{HELPFUL.digest}" in sig and "scale:1-10" in sig
    assert "valid:4/4" in sig and result.errors == 0
    bodies = [r.body for r in server.requests]
    assert len(bodies) == 4  # one request per row, no retries
    assert all(b["temperature"] == 0 and b["seed"] == 7 for b in bodies)
    assert bodies[0]["messages"][0]["role"] == "system"


def test_invalid_verdict_is_retried_with_the_validation_error(server: OpenAITestServer) -> None:
    def responder(body: dict[str, Any]) -> str:
        if len(body["messages"]) == 2:  # first attempt: a score off the 1-10 scale
            return 'Sure! {"rationale": "great", "score": 11}'
        return '```json\n{"rationale": "great", "score": 9}\n```'

    server.responder = responder
    result = grade_single(_judge(server), ["fine answer"], rubric=HELPFUL, settings=NO_CI)
    row = result.rows[0]
    assert row["score"] == 9 and row["attempts"] == 2 and row["error"] is None
    assert len(server.requests) == 2
    retry = server.requests[1].body["messages"]
    assert retry[2] == {"role": "assistant", "content": 'Sure! {"rationale": "great", "score": 11}'}
    assert retry[3]["role"] == "user"
    assert "score: Input should be less than or equal to 10" in retry[3]["content"]
    assert result.score.value == 9.0


def test_always_invalid_verdict_is_a_recorded_error_not_nan(server: OpenAITestServer) -> None:
    def responder(body: dict[str, Any]) -> str:
        answer = _section(body, "Answer")
        return "I refuse" if "bad" in answer else _grade_by_length(body)

    server.responder = responder
    answers = ["one two", "bad", "one two three four"]
    settings = JudgeSettings(attempts=3, ci=CISettings(resamples=100))
    result = grade_single(_judge(server), answers, rubric=HELPFUL, settings=settings)
    bad = result.rows[1]
    assert bad["score"] is None and bad["attempts"] == 3
    assert bad["error"] == "invalid verdict after 3 attempt(s): no JSON object in the reply"
    assert bad["replies"] == ["I refuse"] * 3
    assert len(server.requests) == 2 + 3
    score = result.score
    assert score.value == pytest.approx(3.0)  # mean over the two valid rows
    assert score.n == 2 and score.per_example == [2.0, 4.0]
    assert not any(math.isnan(v) for v in score.per_example)
    assert score.details["errors"] == 1 and score.details["failed_rows"] == [2]
    assert "valid:2/3" in score.signature
    assert result.summary()["errors"] == 1


def test_unreachable_judge_fails_every_row_visibly(server: OpenAITestServer) -> None:
    judge = load_model(f"openai:no-such-model@{server.base_url}", **FAST)
    result = grade_single(judge, ["a", "b"], rubric=HELPFUL, settings=NO_CI)
    assert result.errors == 2
    assert all(row["error"].startswith("judge request failed:") for row in result.rows)
    assert result.score.n == 0 and result.score.to_dict()["value"] is None
    assert "valid:0/2" in result.score.signature


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('{"rationale": "ok", "score": 3}', 3),
        ('Here you go:\n```json\n{"rationale": "ok", "score": "4"}\n```', 4),
        ('My verdict is {"score": 5, "rationale": "ok"} as you asked.', 5),
        ('{"rationale": "ok", "score": 3.5}', "score: Input should be a valid integer"),
        ('{"rationale": "ok"}', "score: Field required"),
        ('{"rationale": "ok", "score": 3', "no JSON object"),
        ('{"rationale": "ok", "score": 3,}', "reply: Invalid JSON"),
    ],
)
def test_parse_verdict(reply: str, expected: int | str) -> None:
    verdict, problem = parse_verdict(reply, single_verdict_model(1, 5))
    if isinstance(expected, int):
        assert verdict is not None and verdict.score == expected and problem == ""  # type: ignore[attr-defined]
    else:
        assert verdict is None and expected in problem


def test_pairwise_verdict_accepts_case_variants() -> None:
    for raw, winner in (("a", "A"), (" B. ", "B"), ("Tie", "tie")):
        verdict, _ = parse_verdict(json.dumps({"rationale": "r", "winner": raw}), PairwiseVerdict)
        assert verdict is not None and verdict.winner == winner


# --- pairwise -------------------------------------------------------------------------------


def _prefer(word: str) -> Callable[[dict[str, Any]], str]:
    """A consistent judge: the answer containing ``word`` wins, wherever it is shown."""

    def responder(body: dict[str, Any]) -> str:
        a, b = _section(body, "Answer A"), _section(body, "Answer B")
        winner = "A" if word in a and word not in b else "B" if word in b else "tie"
        return json.dumps({"rationale": "scripted", "winner": winner})

    return responder


def test_pairwise_judges_both_orders_and_counts_wins(server: OpenAITestServer) -> None:
    server.responder = _prefer("GOOD")
    answers = ["GOOD one", "plain two", "GOOD three", "same"]
    baselines = ["plain one", "GOOD two", "plain three", "same"]
    result = compare_pairwise(
        _judge(server), answers, baselines, rubric=BUILTIN_RUBRICS["pairwise"], settings=NO_CI
    )
    assert [row["outcome"] for row in result.rows] == ["win", "loss", "win", "tie"]
    assert all(row["consistent"] for row in result.rows)
    assert result.score.value == pytest.approx((1 + 0 + 1 + 0.5) / 4)
    assert (
        result.score.details | {"win": 2, "loss": 1, "tie": 1, "inconsistent": 0}
        == result.score.details
    )
    assert len(server.requests) == 8
    shown_first = [_section(r.body, "Answer A") for r in server.requests]
    assert sorted(shown_first) == sorted(answers + baselines)  # each answer shown first once
    assert "orders:both" in result.score.signature and "disagree:tie" in result.score.signature
    row = result.rows[0]
    assert row["answer_first"]["winner"] == "answer" and row["baseline_first"]["winner"] == "answer"


def test_position_biased_judge_gets_ties(server: OpenAITestServer) -> None:
    server.responder = lambda body: '{"rationale": "first is best", "winner": "A"}'
    result = compare_pairwise(
        _judge(server),
        ["x", "y", "z"],
        ["p", "q", "r"],
        rubric=BUILTIN_RUBRICS["pairwise"],
        settings=NO_CI,
    )
    assert [row["outcome"] for row in result.rows] == ["tie"] * 3
    assert [row["consistent"] for row in result.rows] == [False] * 3
    assert result.score.value == 0.5
    assert result.score.details["inconsistent"] == 3 and result.score.details["tie"] == 3


def test_pairwise_row_with_one_failed_order_is_an_error(server: OpenAITestServer) -> None:
    def responder(body: dict[str, Any]) -> str:
        if _section(body, "Answer A") == "broken":
            return "no verdict"
        return _prefer("GOOD")(body)

    server.responder = responder
    result = compare_pairwise(
        _judge(server),
        ["GOOD a", "broken"],
        ["b", "c"],
        rubric=BUILTIN_RUBRICS["pairwise"],
        settings=JudgeSettings(attempts=2, ci=CISettings(resamples=0)),
    )
    ok, failed = result.rows
    assert ok["outcome"] == "win" and ok["error"] is None
    assert failed["value"] is None
    assert failed["error"].startswith("answer first: invalid verdict after 2 attempt(s)")
    assert failed["baseline_first"]["error"] is None  # the other order was fine
    assert result.score.value == 1.0 and "valid:1/2" in result.score.signature


# --- rubrics --------------------------------------------------------------------------------


def test_default_rubrics_follow_mode_and_references() -> None:
    assert load_rubric(None, mode="single", has_reference=False).name == "helpfulness"
    assert load_rubric(None, mode="single", has_reference=True).name == "correctness"
    assert load_rubric(None, mode="pairwise", has_reference=False).name == "pairwise"
    with pytest.raises(ConfigError, match="pass --references"):
        load_rubric("correctness", mode="single", has_reference=False)
    with pytest.raises(ConfigError, match="pairwise rubric but the mode is single"):
        load_rubric("pairwise", mode="single", has_reference=False)
    with pytest.raises(ConfigError, match="not a built-in rubric"):
        load_rubric("nope", mode="single", has_reference=False)


def test_rubric_file_sets_scale_and_template(server: OpenAITestServer, tmp_path: Path) -> None:
    path = tmp_path / "brevity.yaml"
    path.write_text(
        "name: brevity\nscale: [1, 3]\ncriteria: Shorter is better.\n"
        "template: |\n"
        "  Grade {{ answer }} for {{ criteria }} from {{ scale_min }} to {{ scale_max }}.\n"
    )
    rubric = load_rubric(path, mode="single", has_reference=False)
    server.responder = lambda body: '{"rationale": "short", "score": 3}'
    result = grade_single(_judge(server), ["ok"], rubric=rubric, settings=NO_CI)
    sent = server.requests[0].body["messages"][1]["content"]
    assert sent == "Grade ok for Shorter is better. from 1 to 3.\n"
    assert result.score.value == 3.0 and "scale:1-3" in result.score.signature
    server.responder = lambda body: '{"rationale": "long", "score": 4}'  # off the 1-3 scale
    assert grade_single(_judge(server), ["ok"], rubric=rubric, settings=NO_CI).errors == 1


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name: x\ncriteria: c\ncolour: red\n", ":3: field 'colour': Extra inputs"),
        ("name: x\ncriteria: c\nscale: [5, 1]\n", ":3: field 'scale'"),
        ("name: x\ncriteria: c\ntemplate: '{{ answr }}'\n", "'answr' is undefined"),
        ("name: x\n", "field 'criteria': Field required"),
    ],
)
def test_bad_rubric_file_is_one_line_with_file_and_line(
    tmp_path: Path, text: str, needle: str
) -> None:
    path = tmp_path / "rubric.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_rubric(path, mode="single", has_reference=False)
    message = str(info.value)
    assert needle in message and str(path) in message and "\n" not in message


# --- a local hf: judge ----------------------------------------------------------------------


def test_local_judge_with_unparseable_replies_records_row_errors(tiny_causal_lm: Path) -> None:
    judge = load_model(f"hf:{tiny_causal_lm}", device="cpu")
    settings = JudgeSettings(attempts=2, max_tokens=8, ci=CISettings(resamples=0))
    result = grade_single(judge, ["the cat sat", "a dog ran"], rubric=HELPFUL, settings=settings)
    assert result.errors == 2
    for row in result.rows:
        assert row["score"] is None and row["attempts"] == 2
        assert row["error"].startswith("invalid verdict after 2 attempt(s): ")
        assert len(row["replies"]) == 2 and all(isinstance(r, str) for r in row["replies"])
    assert result.score.n == 0 and result.score.per_example == []
    assert result.score.to_dict()["value"] is None  # JSON null, never a number made up
    assert f"judge:{tiny_causal_lm.name}" in result.score.signature
    assert "backend:hf" in result.score.signature and "valid:0/2" in result.score.signature


# --- ladder judge ---------------------------------------------------------------------------


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_cli_single_json_and_outputs(
    server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.responder = _grade_by_length
    preds = tmp_path / "preds.jsonl"
    preds.write_text(
        "".join(
            json.dumps({"question": f"q{i}", "prediction": p}) + "\n"
            for i, p in enumerate(["a b", "a b c d"])
        )
    )
    argv = ["judge", "--predictions", str(preds), "--questions", str(preds)]
    argv += ["--judge", f"openai:echo@{server.base_url}", "--out", str(tmp_path / "run"), "--json"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["metric"] == "judge" and printed["value"] == 3.0
    assert printed["ci_low"] is not None and printed["errors"] == 0 and printed["rows"] == 2
    assert "judge:echo" in printed["signature"]
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "judgments.jsonl").read_text().splitlines()
    ]
    assert [r["question"] for r in rows] == ["q0", "q1"] and [r["score"] for r in rows] == [2, 4]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["errors"] == 0 and summary["config"]["mode"] == "single"
    sent = sorted(r.body["messages"][1]["content"] for r in server.requests)  # any order
    assert ["[Question]\nq0\n" in sent[0], "[Question]\nq1\n" in sent[1]] == [True, True]
    assert "[Answer]\na b\n" in sent[0] and "[Answer]\na b c d\n" in sent[1]


def _pairwise_argv(server: OpenAITestServer, tmp_path: Path) -> list[str]:
    server.responder = _prefer("GOOD")
    preds = _write(tmp_path / "preds.txt", ["GOOD a", "b", "GOOD c"])
    base = _write(tmp_path / "base.txt", ["x", "GOOD y", "z"])
    return [
        "judge",
        "--predictions",
        str(preds),
        "--baseline",
        str(base),
        "--mode",
        "pairwise",
        "--judge",
        f"openai:echo@{server.base_url}",
    ]


def test_cli_pairwise_prints_the_win_rate(
    server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*_pairwise_argv(server, tmp_path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["metric"] == "judge_pairwise" and printed["value"] == pytest.approx(2 / 3)
    assert printed["details"]["win"] == 2 and printed["details"]["loss"] == 1
    assert len(server.requests) == 6


@pytest.mark.slow  # a fresh interpreter imports torch: several seconds on a busy machine
def test_cli_pairwise_runs_in_a_subprocess(server: OpenAITestServer, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "ladder.cli.main", *_pairwise_argv(server, tmp_path)]
    env = {"COLUMNS": "200", "PATH": ""}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "judge_pairwise" in done.stdout and "0.6667" in done.stdout and "3/3" in done.stdout


def test_cli_all_rows_failed_exits_2_after_writing_rows(
    server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.responder = lambda body: "nothing useful"
    preds = _write(tmp_path / "p.txt", ["a", "b"])
    out = tmp_path / "run"
    argv = [
        "judge",
        "--predictions",
        str(preds),
        "--judge",
        f"openai:echo@{server.base_url}",
        "--attempts",
        "1",
        "--out",
        str(out),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "all 2 rows failed" in err and len(err.splitlines()) == 1
    assert len((out / "judgments.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--references", "{short}"], "has 1 items"),
        (["--references", "{missing}"], "no such file"),
        (["--rubric", "{bad_rubric}"], "field 'colour'"),
        (["--mode", "triple"], "--mode"),
        (["--mode", "pairwise"], "--mode pairwise needs --baseline"),
        (["--mode", "faithfulness"], "needs --contexts"),
        (["--field", "passages"], "--field 'passages': write it as INPUT=NAME"),
        (["--field", "context=passages"], "INPUT must be one of predictions, "),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    paths = {
        "short": _write(tmp_path / "short.txt", ["x"]),
        "missing": tmp_path / "missing.txt",
        "bad_rubric": _write(tmp_path / "r.yaml", ["name: r", "criteria: c", "colour: red"]),
    }
    preds = _write(tmp_path / "p.txt", ["a", "b"])
    argv = ["judge", "--predictions", str(preds), "--judge", "openai:echo@http://127.0.0.1:9/v1"]
    argv += [a.format(**{k: str(v) for k, v in paths.items()}) for a in extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err


def test_local_judge_decodes_under_the_verdict_schema(tiny_json_lm: Path) -> None:
    # A random model whose tokenizer can spell JSON: constrained decoding makes every verdict
    # parse and fall inside the scale, in one attempt, with no retries.
    judge = load_model(f"hf:{tiny_json_lm}", device="cpu")
    settings = JudgeSettings(attempts=3, max_tokens=48, ci=CISettings(resamples=0))
    answers = ["the cat sat", "a dog ran", "blue bird", "it was big"]
    result = grade_single(judge, answers, rubric=HELPFUL, settings=settings)
    assert result.errors == 0 and result.score.n == 4
    low, high = HELPFUL.scale
    for row in result.rows:
        assert low <= row["score"] <= high and row["attempts"] == 1
