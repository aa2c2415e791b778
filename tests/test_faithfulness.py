"""Faithfulness by judge, against a real OpenAI-protocol server with scripted verdicts."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ladder.cli.main import main
from ladder.evaluate.faithfulness import check_faithfulness, split_claims
from ladder.evaluate.judge import JudgeSettings
from ladder.evaluate.score import CISettings
from ladder.models import load_model
from ladder.models.base import LanguageModel
from openai_server import OpenAITestServer

NO_CI = JudgeSettings(ci=CISettings(resamples=0))


@pytest.fixture(scope="module")
def _running_server() -> Iterator[OpenAITestServer]:
    server = OpenAITestServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(_running_server: OpenAITestServer) -> OpenAITestServer:
    _running_server.reset()
    return _running_server


def _judge(server: OpenAITestServer) -> LanguageModel:
    return load_model(f"openai:echo@{server.base_url}", retry_base_delay=0.001, timeout=5.0)


def _sections(body: dict[str, Any]) -> dict[str, str]:
    user = body["messages"][1]["content"]
    return dict(re.findall(r"\[(\w+)\]\n(.*?)\n(?:\n|$)", user, re.DOTALL))


def _word_overlap_judge(body: dict[str, Any]) -> str:
    """Supported when every word of the claim (lowercased, no punctuation) is in the context."""
    parts = _sections(body)
    if "Claim" not in parts:  # a request to list claims: one per comma-separated part
        claims = [c.strip() for c in parts["Answer"].split(",")]
        return json.dumps({"claims": claims})
    words = set(re.findall(r"\w+", parts["Context"].lower()))
    supported = set(re.findall(r"\w+", parts["Claim"].lower())) <= words
    return json.dumps({"rationale": "word overlap", "supported": supported})


@pytest.mark.parametrize(
    ("answer", "claims"),
    [
        ("Paris is in France. It is big!", ["Paris is in France.", "It is big!"]),
        ("Dr. Smith met Mr. Jones. They talked.", ["Dr. Smith met Mr. Jones.", "They talked."]),
        ("See e.g. the map. Is it right? Yes.", ["See e.g. the map.", "Yes."]),
        ("- first point\n- second point\n1. third", ["first point", "second point", "third"]),
        (
            "Pi is 3.14 roughly. J. R. R. Tolkien wrote it.",
            ["Pi is 3.14 roughly.", "J. R. R. Tolkien wrote it."],
        ),
        ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
        ("", []),
        ("  ...  \n\n", []),
        ("Why?", []),
    ],
)
def test_split_claims(answer: str, claims: list[str]) -> None:
    assert split_claims(answer) == claims


def test_share_of_supported_claims_per_row(server: OpenAITestServer) -> None:
    server.responder = _word_overlap_judge
    context = "The Eiffel Tower is in Paris. It was finished in 1889."
    answers = [
        "The Eiffel Tower is in Paris. It was finished in 1889.",  # 2/2
        "The Eiffel Tower is in Paris. It is made of gold. It was finished in 1889.",  # 2/3
        "The tower is in Rome.",  # 0/1
    ]
    settings = JudgeSettings(ci=CISettings(resamples=200, seed=1))
    result = check_faithfulness(_judge(server), answers, [context] * 3, settings=settings)
    assert [(r["supported"], r["total"]) for r in result.rows] == [(2, 2), (2, 3), (0, 1)]
    assert [c["supported"] for c in result.rows[1]["claims"]] == [True, False, True]
    assert result.score.value == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert result.score.ci_low is not None and result.score.ci_high is not None
    assert result.score.ci_low <= result.score.value <= result.score.ci_high
    sig = result.score.signature
    assert sig.startswith("metric:faithfulness|claims:sentences|judge:echo|")
    assert "valid:3/3" in sig and "bs:200" in sig
    assert len(server.requests) == 6  # one per claim
    assert all(r.body["temperature"] == 0 for r in server.requests)


def test_empty_answer_and_failed_claim_are_row_errors(server: OpenAITestServer) -> None:
    def responder(body: dict[str, Any]) -> str:
        if "unicorn" in _sections(body)["Claim"]:
            return '{"rationale": "hmm", "supported": "perhaps"}'
        return _word_overlap_judge(body)

    server.responder = responder
    context = "Cats sleep a lot."
    answers = ["Cats sleep a lot.", "", "Cats sleep a lot. A unicorn agrees."]
    settings = JudgeSettings(attempts=2, ci=CISettings(resamples=0))
    result = check_faithfulness(_judge(server), answers, [context] * 3, settings=settings)
    ok, empty, failed = result.rows
    assert ok["value"] == 1.0 and ok["error"] is None
    assert empty["error"] == "the answer has no claims to check" and empty["value"] is None
    assert failed["value"] is None
    assert failed["error"].startswith("claim 2: invalid verdict after 2 attempt(s): supported:")
    assert failed["claims"][0]["supported"] is True  # the checked claim is kept
    assert result.errors == 2
    assert result.score.value == 1.0 and result.score.n == 1
    assert result.score.details["failed_rows"] == [2, 3]


def test_judge_listed_claims(server: OpenAITestServer) -> None:
    server.responder = _word_overlap_judge
    answers = ["cats sleep, cats fly", ""]
    result = check_faithfulness(
        _judge(server), answers, ["cats sleep a lot"] * 2, settings=NO_CI, claims="judge"
    )
    row = result.rows[0]
    assert [c["claim"] for c in row["claims"]] == ["cats sleep", "cats fly"]
    assert row["value"] == 0.5
    assert result.rows[1]["error"] == "the answer has no claims to check"
    assert "claims:judge" in result.score.signature
    assert len(server.requests) == 1 + 2  # list once (empty answers are not sent), check twice


def test_cli_faithfulness_writes_rows(
    server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.responder = _word_overlap_judge
    preds = tmp_path / "answers.txt"
    preds.write_text("Cats sleep. Dogs fly.\nCats sleep.\n")
    contexts = tmp_path / "contexts.jsonl"
    contexts.write_text(
        json.dumps({"context": ["Cats sleep.", "Dogs bark."]})
        + "\n"
        + json.dumps({"context": "Cats sleep."})
        + "\n"
    )
    out = tmp_path / "run"
    argv = ["judge", "--mode", "faithfulness", "--predictions", str(preds), "--contexts"]
    argv += [str(contexts), "--judge", f"openai:echo@{server.base_url}", "--out", str(out)]
    assert main([*argv, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["metric"] == "faithfulness" and printed["value"] == pytest.approx(0.75)
    rows = [json.loads(line) for line in (out / "judgments.jsonl").read_text().splitlines()]
    assert rows[0]["context"] == "Cats sleep.\n\nDogs bark."  # passages joined
    assert [r["value"] for r in rows] == [0.5, 1.0]
    assert main([*argv, "--rubric", "helpfulness"]) == 2
    assert "--rubric does not apply" in capsys.readouterr().err


def test_cli_reads_the_documented_keys_line_by_line_and_field(
    server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/evaluation.md lists context/contexts/passages: each line may use any of them;
    --field INPUT=NAME reads another key."""
    server.responder = _word_overlap_judge
    preds = tmp_path / "answers.jsonl"
    preds.write_text(json.dumps({"answer": "Cats sleep."}) + "\n"
                     + json.dumps({"prediction": "Dogs fly."}) + "\n")  # fmt: skip
    passages = tmp_path / "passages.jsonl"
    passages.write_text(json.dumps({"passages": ["Cats sleep.", "Dogs bark."]}) + "\n"
                        + json.dumps({"context": "Dogs fly."}) + "\n")  # fmt: skip
    judge = f"openai:echo@{server.base_url}"
    argv = ["judge", "--mode", "faithfulness", "--predictions", str(preds), "--judge", judge]
    assert main([*argv, "--contexts", str(passages), "--json", "--resamples", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["value"] == 1.0
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"doc": "Cats sleep."}) + "\n" + json.dumps({"doc": "No."}) + "\n")
    assert main([*argv, "--contexts", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"{other}:1:" in err and "pass --field contexts=NAME" in err and "doc" in err
    assert main([*argv, "--contexts", str(other), "--field", "contexts=doc", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["value"] == 0.5
