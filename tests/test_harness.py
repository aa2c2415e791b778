"""The evaluation harness: MC scoring by hand, batch invariance, few-shot, loaders, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ladder.cli.main import main
from ladder.errors import ConfigError
from ladder.evaluate.datasets import load_docs
from ladder.evaluate.harness import choose, evaluate_task, fewshot_prompt, write_outputs
from ladder.evaluate.tasks import TaskConfig, load_task

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tasks" / "arith-mc.yaml"

MC_DOCS = [
    # Very different choice lengths: the long one loses on the sum, wins per character.
    {
        "question": "What sat on the mat?",
        "choices": ["a", "the cat sat on the mat and the dog ran"],
        "answer": 1,
    },
    {
        "question": "Which is red?",
        "choices": ["the big red dog", "blue", "a small green tree"],
        "answer": 0,
    },
    {"question": "Is it happy?", "choices": ["it was happy and then it was sad", "?"], "answer": 0},
    {"question": "Where?", "choices": ["on the log", "under the tree", "over"], "answer": "C"},
    {
        "question": "What ran?",
        "choices": ["dog", "the quick blue bird flew over the red log"],
        "answer": 0,
    },
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def mc_task(data: Path, **overrides: Any) -> TaskConfig:
    fields: dict[str, Any] = {
        "task": "toy-mc",
        "dataset_path": data,
        "doc_to_text": "Question: {{ question }}\nAnswer:",
        "doc_to_target": "answer",
        "doc_to_choice": "choices",
    }
    return TaskConfig(**{**fields, **overrides})


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `ladder eval` caches responses in the home folder by default: keep it per test.
    monkeypatch.setenv("LADDER_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def lm(tiny_causal_lm: Path) -> Any:
    import ladder

    return ladder.load_model("hf:" + str(tiny_causal_lm))


def test_mc_scores_equal_a_hand_computation(lm: Any, tmp_path: Path) -> None:
    task = mc_task(write_jsonl(tmp_path / "mc.jsonl", MC_DOCS))
    result = evaluate_task(lm, task)
    acc, acc_norm, disagree = [], [], 0
    for doc, sample in zip(MC_DOCS, result.samples, strict=True):
        prompt = f"Question: {doc['question']}\nAnswer:"
        lls = [lm.loglikelihood(prompt, " " + c) for c in doc["choices"]]
        raw = max(range(len(lls)), key=lambda j: lls[j])
        norm = max(range(len(lls)), key=lambda j: lls[j] / len(doc["choices"][j]))
        gold = doc["answer"] if isinstance(doc["answer"], int) else "ABC".index(doc["answer"])
        assert sample["loglikelihoods"] == pytest.approx(lls, abs=1e-4)
        assert (sample["prediction"], sample["prediction_norm"], sample["gold"]) == (
            raw,
            norm,
            gold,
        )
        acc.append(raw == gold)
        acc_norm.append(norm == gold)
        disagree += raw != norm
    assert disagree >= 1  # the length normalisation really changes a prediction
    assert result.scores["acc"].value == pytest.approx(sum(acc) / len(acc))
    assert result.scores["acc_norm"].value == pytest.approx(sum(acc_norm) / len(acc_norm))
    score = result.scores["acc"]
    assert score.ci_low is not None and score.ci_low <= score.value <= score.ci_high
    assert "task:toy-mc" in score.signature and "fewshot:0" in score.signature
    assert "output:multiple_choice" in score.signature and "batch" not in score.signature


def test_choose_normalises_by_choice_characters() -> None:
    # -4 over 1 char vs -9 over 30 chars: acc picks the first, acc_norm the second.
    assert choose([-4.0, -9.0], ["a", "x" * 30]) == (0, 1)
    assert choose([-1.0, -1.0], ["ab", "cd"]) == (0, 0)  # ties go to the lowest index


def test_scores_do_not_depend_on_batch_size(lm: Any, tmp_path: Path) -> None:
    task = mc_task(write_jsonl(tmp_path / "mc.jsonl", MC_DOCS), num_fewshot=1)
    runs = [evaluate_task(lm, task, batch_size=size) for size in (1, 3, 8)]
    first = runs[0]
    for other in runs[1:]:
        for name in ("acc", "acc_norm"):
            assert other.scores[name].value == first.scores[name].value
            assert other.scores[name].signature == first.scores[name].signature
        for a, b in zip(first.samples, other.samples, strict=True):
            assert (a["prediction"], a["prediction_norm"]) == (
                b["prediction"],
                b["prediction_norm"],
            )
            assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], abs=1e-4)


def test_fewshot_prompt_is_deterministic_and_excludes_the_doc(tmp_path: Path) -> None:
    rows = [{"question": f"q{i}?", "choices": ["x", "y"], "answer": i % 2} for i in range(6)]
    task = mc_task(write_jsonl(tmp_path / "mc.jsonl", rows), num_fewshot=3)
    docs = load_docs(task.dataset_path, "jsonl")
    for i in range(len(docs)):
        prompt = fewshot_prompt(task, docs[i], i, docs, same_split=True)
        assert prompt == fewshot_prompt(task, docs[i], i, docs, same_split=True)
        shots, question = prompt.rsplit("\n\n", 1), f"Question: q{i}?\nAnswer:"
        assert shots[1] == question and f"q{i}?" not in shots[0]
        assert shots[0].count("Question:") == 3
        assert "Question: q" in shots[0] and shots[0].split("\n\n")[0].endswith((" x", " y"))
    too_many = task.model_copy(update={"num_fewshot": 6})
    with pytest.raises(ConfigError, match="num_fewshot"):
        fewshot_prompt(too_many, docs[0], 0, docs, same_split=True)


def test_loaders_parse_mc_jsonl_csv_and_squad(tmp_path: Path) -> None:
    jsonl = load_docs(write_jsonl(tmp_path / "a.jsonl", MC_DOCS[:2]), "jsonl")
    assert jsonl[1].record["choices"][0] == "the big red dog" and jsonl[1].where.endswith(":2")
    csv_file = tmp_path / "mmlu.csv"
    csv_file.write_text("question,A,B,C,D,answer\nWhat is 2+2?,3,4,5,6,B\nOne?,1,2,3,4,A\n")
    docs = load_docs(csv_file, "csv")
    assert docs[0].record["choices"] == ["3", "4", "5", "6"] and docs[1].where.endswith(":3")
    task = mc_task(csv_file, dataset_format="csv")
    assert task.format == "csv"
    squad = {
        "version": "v2.0",
        "data": [
            {
                "title": "Cats",
                "paragraphs": [
                    {
                        "context": "The cat sat on the mat.",
                        "qas": [
                            {
                                "id": "q1",
                                "question": "Where?",
                                "answers": [{"text": "on the mat", "answer_start": 8}],
                            },
                            {"id": "q2", "question": "Why?", "answers": [], "is_impossible": True},
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "squad.json").write_text(json.dumps(squad))
    records = [d.record for d in load_docs(tmp_path / "squad.json", "squad")]
    assert records[0]["answers"] == ["on the mat"] and not records[0]["is_impossible"]
    assert records[1]["answers"] == [] and records[1]["is_impossible"]
    assert records[1]["context"] == "The cat sat on the mat." and records[1]["title"] == "Cats"


def test_bad_data_names_file_and_line(lm: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(MC_DOCS[0]) + "\n{not json\n")
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: invalid JSON"):
        load_docs(bad, "jsonl")
    out_of_range = write_jsonl(tmp_path / "oor.jsonl", [MC_DOCS[1], {**MC_DOCS[1], "answer": 5}])
    with pytest.raises(ConfigError, match=r"oor.jsonl:2: answer index 5 is out of range"):
        evaluate_task(lm, mc_task(out_of_range))
    missing = write_jsonl(tmp_path / "missing.jsonl", [{"choices": ["a", "b"], "answer": 0}])
    with pytest.raises(ConfigError, match=r"missing.jsonl:1: doc_to_text: 'question' is undefined"):
        evaluate_task(lm, mc_task(missing))
    (tmp_path / "s.json").write_text(json.dumps({"data": [{"paragraphs": [{"qas": []}]}]}))
    with pytest.raises(
        ConfigError, match=r"s.json: data\[0\].paragraphs\[0\]: missing field 'context'"
    ):
        load_docs(tmp_path / "s.json", "squad")


def test_generate_until_with_regex_extraction_and_exact(lm: Any, tmp_path: Path) -> None:
    from ladder.models.base import GenerationParams

    rows = [{"q": "the cat", "a": "x"}, {"q": "a dog ran", "a": "y"}, {"q": "big", "a": "z"}]
    data = write_jsonl(tmp_path / "gen.jsonl", rows)
    task = TaskConfig(
        task="toy-gen",
        dataset_path=data,
        output_type="generate_until",
        doc_to_text="{{ q }}",
        doc_to_target="a",
        generation_kwargs={"until": ["!"], "max_tokens": 6},
        answer_extraction={"kind": "regex", "pattern": r"(\w+)\W*$"},
        metric_list=["exact"],
    )
    params = GenerationParams(max_tokens=6, stop=("!",))
    texts = [c.text for c in lm.generate([r["q"] for r in rows], params)]
    words = [(m.group(1) if (m := re.search(r"(\w+)\W*$", t)) else "") for t in texts]
    # Make the first document's gold the model's own (extracted) answer: exact must be 1 there.
    rows[0]["a"] = words[0]
    write_jsonl(data, rows)
    result = evaluate_task(lm, task, batch_size=len(rows))
    assert [s["prediction"] for s in result.samples] == words
    expected = [float(w == r["a"]) for w, r in zip(words, rows, strict=True)]
    assert result.scores["exact"].per_example == expected and expected[0] == 1.0
    signature = result.scores["exact"].signature
    assert (
        signature.startswith("metric:exact|task:toy-gen|") and "output:generate_until" in signature
    )


def test_unknown_yaml_key_exits_2_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = tmp_path / "task.yaml"
    task.write_text("task: t\ndataset_path: d.jsonl\ndoc_to_text: q\ndoc_to_target: a\nshots: 3\n")
    assert main(["eval", str(task), "--model", "hf:nowhere"]) == 2
    err = capsys.readouterr().err
    assert f"{task}:5" in err and "shots" in err and len(err.strip().splitlines()) == 1


def test_cli_json_and_outputs(
    tiny_causal_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_jsonl(tmp_path / "mc.jsonl", MC_DOCS)
    yaml_text = (
        "task: toy-mc\ndataset_path: mc.jsonl\ndoc_to_text: 'Q: {{ question }}\\nA:'\n"
        "doc_to_target: answer\ndoc_to_choice: choices\n"
    )
    (tmp_path / "task.yaml").write_text(yaml_text)
    out = tmp_path / "run"
    args = ["eval", str(tmp_path / "task.yaml"), "--model", f"hf:{tiny_causal_lm}"]
    assert main([*args, "--json", "--limit", "3", "--out", str(out)]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"task", "model", "n", "metrics"} and payload["n"] == 3
    assert set(payload["metrics"]) == {"acc", "acc_norm"}
    assert set(payload["metrics"]["acc"]) == {"value", "ci_low", "ci_high", "signature"}
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and {"doc", "prompt", "choices", "loglikelihoods"} <= set(samples[0])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"] == payload["metrics"] and summary["config"]["task"] == "toy-mc"


def test_shipped_example_runs(lm: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = load_task(EXAMPLE)
    assert task.dataset_path.is_file() and task.num_fewshot == 2
    result = evaluate_task(lm, task, limit=5)
    assert result.n == 5 and set(result.scores) == {"acc", "acc_norm"}
    assert all(s["prompt"].count("Question:") == 3 for s in result.samples)
    samples, summary = write_outputs(result, tmp_path / "out")
    assert len(samples.read_text().splitlines()) == 5 and json.loads(summary.read_text())["n"] == 5


def test_shipped_data_is_what_the_script_generates() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_arith_mc", EXAMPLE.with_name("make_arith_mc.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = "".join(json.dumps(d) + "\n" for d in module.make_docs())
    assert EXAMPLE.with_name("arith-mc.jsonl").read_text() == expected


def test_cli_logs_one_run_to_the_track_store(
    tiny_causal_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_jsonl(tmp_path / "mc.jsonl", MC_DOCS)
    (tmp_path / "task.yaml").write_text(
        "task: toy-mc\ndataset_path: mc.jsonl\ndoc_to_text: 'Q: {{ question }}\\nA:'\n"
        "doc_to_target: answer\ndoc_to_choice: choices\n"
    )
    events = tmp_path / "events.jsonl"
    args = ["eval", str(tmp_path / "task.yaml"), "--model", f"hf:{tiny_causal_lm}", "--limit", "2"]
    assert main([*args, "--track", f"jsonl:{events}", "--resamples", "0"]) == 0
    assert f"Run logged to jsonl:{events}" in capsys.readouterr().out
    logged = [json.loads(line) for line in events.read_text().splitlines()]
    start = logged[0]
    assert start["event"] == "run_start" and start["name"] == "eval toy-mc"
    assert start["tags"]["task"] == "toy-mc" and logged[-1]["status"] == "FINISHED"
    metrics = {k for e in logged if e["event"] == "metrics" for k in e["metrics"]}
    assert {"acc", "acc_norm"} <= metrics
