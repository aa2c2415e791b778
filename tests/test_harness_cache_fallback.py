"""The harness's cache, the generate-then-extract multiple-choice fallback, and MMLU CSVs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ladder.cache_store import ResponseCache
from ladder.cli.main import main
from ladder.errors import ConfigError, UnsupportedError
from ladder.evaluate.datasets import load_docs
from ladder.evaluate.harness import evaluate_task
from ladder.evaluate.mc_generate import extract_choice
from ladder.evaluate.tasks import TaskConfig, load_task
from ladder.models import load_model
from openai_server import OpenAITestServer

DOCS = [
    {"question": "q0", "choices": ["red", "blue", "green"], "answer": 1},
    {"question": "q1", "choices": ["cat", "dog", "bird", "log"], "answer": 0},
    {"question": "q2", "choices": ["on", "under"], "answer": 1},
    {"question": "q3", "choices": ["big", "small", "slow"], "answer": 2},
    {"question": "q4", "choices": ["sad", "happy"], "answer": 0},
    {"question": "q5", "choices": ["the mat", "the tree", "the log"], "answer": 2},
]
# Scripted replies in the shapes chat models use; q3's and q5's are wrong, q4's names nothing.
REPLIES = {
    "q0": "B",
    "q1": "The answer is A.",
    "q2": "(B) under",
    "q3": "Answer: A",
    "q4": "I am not sure.",
    "q5": "the tree",
}
EXPECTED = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("LADDER_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def _running_server() -> Iterator[OpenAITestServer]:
    server = OpenAITestServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(_running_server: OpenAITestServer) -> OpenAITestServer:
    _running_server.reset()
    return _running_server


def letter_responder(body: dict[str, Any]) -> str | None:
    """Answer the question in the last chat message with its scripted reply."""
    messages = body.get("messages")  # the log-likelihood probe is a plain completion
    match = re.search(r"Question: (q\d)", messages[-1]["content"]) if messages else None
    return REPLIES[match.group(1)] if match else None


def write_task(tmp_path: Path, rows: list[dict[str, Any]] = DOCS, **fields: Any) -> TaskConfig:
    data = tmp_path / "mc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base: dict[str, Any] = {
        "task": "toy",
        "dataset_path": data,
        "doc_to_text": "Question: {{ question }}\nAnswer:",
        "doc_to_target": "answer",
        "doc_to_choice": "choices",
    }
    return TaskConfig(**{**base, **fields})


def spec(server: OpenAITestServer, model: str) -> str:
    return f"openai:{model}@{server.base_url}"


def lm_for(server: OpenAITestServer, model: str) -> Any:
    return load_model(spec(server, model), max_retries=0, retry_base_delay=0.001)


# -- cache -----------------------------------------------------------------------------


def test_rerun_is_served_from_the_cache(
    server: OpenAITestServer, tmp_path: Path, tiny_causal_lm: Path
) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    task = write_task(tmp_path, num_fewshot=1)
    first = evaluate_task(lm_for(server, "echo"), task, cache=cache)
    calls = server.count()
    pairs = sum(len(d["choices"]) for d in DOCS)
    assert calls == pairs and first.cache == {"hits": 0, "misses": pairs}
    second = evaluate_task(lm_for(server, "echo"), task, cache=cache)
    assert server.count() == calls  # zero model calls
    assert second.cache == {"hits": pairs, "misses": 0}
    assert [s["loglikelihoods"] for s in second.samples] == [
        s["loglikelihoods"] for s in first.samples
    ]
    for name in ("acc", "acc_norm"):
        assert second.scores[name].value == first.scores[name].value
        assert second.scores[name].signature == first.scores[name].signature
    # A local model: the same, counted by the cache (no server to count requests on).
    local = load_model(f"hf:{tiny_causal_lm}")
    cold = evaluate_task(local, task, cache=cache, batch_size=4)
    warm = evaluate_task(local, task, cache=cache, batch_size=2)
    assert cold.cache == {"hits": 0, "misses": pairs} and warm.cache == {"hits": pairs, "misses": 0}
    assert warm.scores["acc_norm"].value == cold.scores["acc_norm"].value


def test_generation_task_rerun_makes_no_calls(server: OpenAITestServer, tmp_path: Path) -> None:
    task = write_task(
        tmp_path,
        output_type="generate_until",
        doc_to_target="{{ choices[answer] }}",
        doc_to_choice=None,
        metric_list=["exact"],
        generation_kwargs={"until": ["\n"], "max_tokens": 8},
    )
    cache = ResponseCache(tmp_path / "c.sqlite")
    first = evaluate_task(lm_for(server, "echo"), task, cache=cache)
    calls = server.count()
    second = evaluate_task(lm_for(server, "echo"), task, cache=cache)
    assert calls == len(DOCS) and server.count() == calls
    assert [s["generation"] for s in second.samples] == [s["generation"] for s in first.samples]
    assert second.scores["exact"].value == first.scores["exact"].value


def test_cli_caches_by_default_and_no_cache_bypasses(
    server: OpenAITestServer, tmp_path: Path, _home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = write_task(tmp_path)
    yaml_file = tmp_path / "task.yaml"
    yaml_file.write_text(
        "task: toy\ndataset_path: mc.jsonl\ndoc_to_text: 'Question: {{ question }}\\nAnswer:'\n"
        "doc_to_target: answer\ndoc_to_choice: choices\n"
    )
    args = ["eval", str(yaml_file), "--model", spec(server, "echo"), "--json"]
    pairs = sum(len(d["choices"]) for d in DOCS)
    assert main(args) == 0 and server.count() == pairs
    first = json.loads(capsys.readouterr().out)
    assert main(args) == 0 and server.count() == pairs
    assert json.loads(capsys.readouterr().out) == first
    db = _home / "cache" / "responses.sqlite"
    assert len(ResponseCache(db)) == pairs
    assert main([*args, "--no-cache"]) == 0 and server.count() == 2 * pairs
    assert json.loads(capsys.readouterr().out) == first
    assert main(args[:-1]) == 0
    assert f"response cache: {pairs} answered from cache, 0 computed" in capsys.readouterr().out
    assert task.task == "toy"


# -- generate-then-extract fallback ------------------------------------------------------


@pytest.mark.parametrize("model", ["chat-only", "nologprobs"])
def test_auto_falls_back_to_generation(
    server: OpenAITestServer, tmp_path: Path, model: str
) -> None:
    server.responder = letter_responder
    result = evaluate_task(lm_for(server, model), write_task(tmp_path))
    assert result.mode == "generate" and server.count("/v1/completions") == 1  # the probe
    assert server.count("/v1/chat/completions") == len(DOCS)
    assert result.scores["acc"].per_example == EXPECTED
    assert result.scores["acc"].value == pytest.approx(0.5)
    assert "mode:generate" in result.scores["acc"].signature
    assert "acc_norm" not in result.scores and "acc_norm" in result.not_defined
    summary = result.summary()
    assert summary["mode"] == "generate" and set(summary["metrics"]) == {"acc"}
    assert "not defined" in summary["not_defined"]["acc_norm"]
    sample = result.samples[0]
    assert sample["generation"] == "B" and sample["prediction"] == 1 and sample["correct"]
    assert result.samples[4]["prediction"] is None
    question = server.requests[-1].body["messages"][-1]["content"]
    assert "\nA. " in question and "Answer with the letter" in question


def test_generate_mode_fewshot_turns_and_explicit_modes(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    server.responder = letter_responder
    task = write_task(tmp_path, num_fewshot=2, multiple_choice={"mode": "generate"})
    result = evaluate_task(lm_for(server, "echo"), task)
    assert server.count("/v1/completions") == 0  # no log-likelihood probe in generate mode
    assert result.scores["acc"].per_example == EXPECTED
    messages = server.requests[0].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    golds = {d["question"]: "ABCD"[d["answer"]] for d in DOCS}
    for ask, answer in zip(messages[0:4:2], messages[1:4:2], strict=True):
        shown = re.search(r"Question: (q\d)", ask["content"])
        assert shown is not None and answer["content"] == golds[shown.group(1)]
    strict = write_task(tmp_path, multiple_choice={"mode": "loglikelihood"})
    with pytest.raises(UnsupportedError, match="--mc-mode generate"):
        evaluate_task(lm_for(server, "chat-only"), strict)
    # The argument overrides the task's mode.
    forced = evaluate_task(lm_for(server, "echo"), write_task(tmp_path), mc_mode="generate")
    assert forced.mode == "generate" and forced.scores["acc"].value == pytest.approx(0.5)


def test_cli_generate_mode_reports_acc_norm_as_not_defined(
    server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.responder = letter_responder
    write_task(tmp_path)
    yaml_file = tmp_path / "task.yaml"
    yaml_file.write_text(
        "task: toy\ndataset_path: mc.jsonl\ndoc_to_text: 'Question: {{ question }}\\nAnswer:'\n"
        "doc_to_target: answer\ndoc_to_choice: choices\n"
    )
    args = ["eval", str(yaml_file), "--model", spec(server, "chat-only")]
    assert main([*args, "--json", "--no-cache"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["mode"] == "generate" and payload["metrics"]["acc"]["value"] == 0.5
    assert "acc_norm" in payload["not_defined"] and "acc_norm" not in payload["metrics"]
    assert main([*args, "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "generate mode" in out and re.search(r"acc_norm\s*│\s*not defined", out)
    assert main([*args, "--mc-mode", "bogus"]) == 2
    assert "--mc-mode" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("B", 1),
        (" (c) ", 2),  # a lone lower-case letter is an answer too
        ("a cat", None),  # ... but not inside a sentence, where it is the article
        ("C.", 2),
        ("The answer is D", 3),
        ("answer: (A)", 0),
        ("B) blue, because the sky", 1),
        ("I would say green.", 2),
        ("the big red dog", 3),  # contains 'red' too: the longest named choice wins
        ("Because it is", None),  # a word that starts with B is not the letter B
        ("Definitely C, not the others", 2),
        ("A or B", None),
        ("", None),
    ],
)
def test_extract_choice(reply: str, expected: int | None) -> None:
    assert extract_choice(reply, ["red", "blue", "green", "the big red dog"]) == expected


# -- MMLU-style CSV ----------------------------------------------------------------------

MMLU = 'What is 2+2?,3,4,5,6,B\n"Which, of these, is red?",sky,grass,blood,snow,C\n'


def test_mmlu_csv_loads_and_evaluates(tmp_path: Path, tiny_causal_lm: Path) -> None:
    (tmp_path / "dev.csv").write_text(MMLU)
    docs = load_docs(tmp_path / "dev.csv", "mmlu_csv")
    assert docs[1].record["question"] == "Which, of these, is red?"
    assert docs[1].record["choices"] == ["sky", "grass", "blood", "snow"]
    assert docs[1].record["C"] == "blood" and docs[1].record["answer"] == "C"
    assert docs[1].where.endswith("dev.csv:2")
    (tmp_path / "mmlu.yaml").write_text(
        "task: mmlu-toy\ndataset_path: dev.csv\ndataset_format: mmlu_csv\n"
        'doc_to_text: "{{ question }}\\nA. {{ A }}\\nB. {{ B }}\\nC. {{ C }}\\nD. {{ D }}'
        '\\nAnswer:"\n'
        "doc_to_target: answer\ndoc_to_choice: choices\n"
    )
    result = evaluate_task(load_model(f"hf:{tiny_causal_lm}"), load_task(tmp_path / "mmlu.yaml"))
    assert [s["gold"] for s in result.samples] == [1, 2] and result.mode == "loglikelihood"
    assert result.samples[0]["prompt"] == "What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"


@pytest.mark.parametrize(
    ("fmt", "text", "error"),
    [
        ("csv", MMLU, r"x.csv:1: dataset_format csv expects a header row.*mmlu_csv"),
        (
            "mmlu_csv",
            "question,A,B,C,D,answer\n" + MMLU,
            r"x.csv:1: dataset_format mmlu_csv expects no header.*'answer'.*dataset_format: csv",
        ),
        ("mmlu_csv", MMLU + "Odd?,1,2,3,4,E\n", r"x.csv:3: answer 'E' is not a letter A-D"),
        ("mmlu_csv", MMLU + "Short?,1,2,A\n", r"x.csv:3: expected 6 columns .* got 4"),
    ],
)
def test_csv_header_mismatch_is_one_clear_error(
    tmp_path: Path, fmt: Any, text: str, error: str
) -> None:
    (tmp_path / "x.csv").write_text(text)
    with pytest.raises(ConfigError, match=error):
        load_docs(tmp_path / "x.csv", fmt)
