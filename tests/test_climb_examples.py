"""The shipped climb examples (tagger, riddles, rag-qa, offensive) and the chain rung.

Each example's generator is deterministic and writes valid data; each task file loads (its
generator runs when the data is missing); a quick climb of each runs end to end on the tiny
random Llama, with fewer rungs, steps and test records than the shipped task. The chain
rung runs against a real OpenAI-protocol HTTP server whose replies the tests script, so
what each step sent and received can be checked; the riddles' judge is ``ladder judge`` on
the predictions a climb wrote.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from conftest import TableEmbedder
from ladder.cli.main import main
from ladder.climb import ClimbOptions, climb, load_task
from ladder.errors import ConfigError
from openai_server import OpenAITestServer

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ("tagger", "riddles", "rag-qa", "offensive")
# example -> (train, dev, test) records the generator writes
SIZES = {
    "tagger": (400, 40, 60),
    "riddles": (300, 30, 40),
    "rag-qa": (240, 23, 97),
    "offensive": (240, 30, 60),
}


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private LADDER_HOME with a price for the scripted API model (per million tokens)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "prices.yaml").write_text('"openai:nologprobs": {input: 1.0, output: 2.0}\n')
    monkeypatch.setenv("LADDER_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    srv = OpenAITestServer().start()
    yield srv
    srv.stop()


def generator(example: str) -> ModuleType:
    """The example's generate.py, imported as a module."""
    path = ROOT / "examples" / example / "generate.py"
    spec = importlib.util.spec_from_file_location(f"gen_{example.replace('-', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_example(example: str, dest: Path, **changes: Any) -> Path:
    """The example folder copied without data, its task.yaml updated with ``changes``."""
    folder = dest / example
    shutil.copytree(ROOT / "examples" / example, folder, ignore=shutil.ignore_patterns("data"))
    task = folder / "task.yaml"
    spec = yaml.safe_load(task.read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key].update(value)
        else:
            spec[key] = value
    task.write_text(yaml.safe_dump(spec, sort_keys=False))
    return task


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.*"))}


# -- generators and task files ---------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES)
def test_generator_is_deterministic(example: str, tmp_path: Path) -> None:
    module = generator(example)
    module.generate(tmp_path / "a")
    module.generate(tmp_path / "b")
    first, second = files_of(tmp_path / "a"), files_of(tmp_path / "b")
    assert first == second and {"train.jsonl", "dev.jsonl", "test.jsonl"} <= set(first)


@pytest.mark.parametrize("example", EXAMPLES)
def test_task_loads_and_its_generator_writes_valid_data(example: str, tmp_path: Path) -> None:
    task = load_task(copy_example(example, tmp_path))  # data/ is missing: generate.py runs
    spec = task.spec
    train, dev, test = (
        [json.loads(x) for x in (task.base / "data" / f"{s}.jsonl").read_text().splitlines()]
        for s in ("train", "dev", "test")
    )
    assert (len(train), len(dev), len(test)) == SIZES[example]
    assert "how to run:" in (ROOT / "examples" / example / "task.yaml").read_text()
    assert spec.models == ["builtin:tiny"] and spec.compute_hour_usd > 0
    key = spec.data.input
    if example != "rag-qa":  # rag-qa asks about the same facts in every split, by design
        texts = [{r[key] for r in split} for split in (train, dev, test)]
        assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert all(spec.data.reference in r for r in train + dev + test)


def test_rag_qa_answers_are_spans_of_their_documents(tmp_path: Path) -> None:
    generator("rag-qa").generate(tmp_path)
    docs = {p.name: p.read_text() for p in (tmp_path / "knowledge").glob("*.md")}
    assert len(docs) == 24
    rows = {
        split: [json.loads(x) for x in (tmp_path / f"{split}.jsonl").read_text().splitlines()]
        for split in ("train", "dev", "test")
    }
    for row in rows["train"] + rows["dev"] + rows["test"]:
        start = row["answer_start"]
        assert docs[row["doc"]][start : start + len(row["answer"])] == row["answer"]
        assert row["town"] in row["question"]
    # closed-book fine-tuning can learn every test fact (asked two ways), never the test question
    asked: dict[tuple[str, str], set[str]] = {}
    for row in rows["train"]:
        asked.setdefault((row["town"], row["fact"]), set()).add(row["question"])
    assert len(asked) == 120 and all(len(q) == 2 for q in asked.values())
    for row in rows["dev"] + rows["test"]:
        assert row["question"] not in asked[(row["town"], row["fact"])]


def test_rag_qa_reader_is_the_closed_book_training_asked_the_rag_way() -> None:
    spec = yaml.safe_load((ROOT / "examples" / "rag-qa" / "task.yaml").read_text())
    rungs = {r.get("label", r["rung"]): r for r in spec["rungs"]}
    assert list(rungs) == ["closed_book", "rag", "finetune", "reader"]
    rag, finetune, reader = rungs["rag"], rungs["finetune"], rungs["reader"]
    assert reader["rung"] == finetune["rung"] == "full"
    assert reader["train"] == finetune["train"]  # the sources are the only difference
    assert reader["retrieve"] == {"k": rag["k"], "mode": rag.get("mode", "hybrid")}
    assert reader["max_seq_len"] == 128  # builtin:tiny's context


def test_offensive_data_is_balanced_and_keywords_do_not_decide(tmp_path: Path) -> None:
    generator("offensive").generate(tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    labels = [r["label"] for r in rows]
    assert labels.count("offensive") == labels.count("not_offensive") == 120
    for word in ("turnip", "absolut"):
        with_word = {r["label"] for r in rows if word in r["text"].lower()}
        assert with_word == {"offensive", "not_offensive"}  # the word alone does not decide


def test_riddles_reference_carries_the_article_facts(tmp_path: Path) -> None:
    module = generator("riddles")
    module.generate(tmp_path)
    for line in (tmp_path / "test.jsonl").read_text().splitlines():
        row = json.loads(line)
        number = next(w for w in row["riddle"].split() if w.isdigit())
        assert number in row["article"] and "What am I?" in row["riddle"]
        place = next(p for p in module.PLACES if p in row["article"])
        assert place in row["summary"] and place in row["riddle"]


# -- quick climbs of each example on the tiny random Llama -----------------------------------

QUICK_FULL = {"rung": "full", "train": {"max_steps": 4, "batch_size": 4, "eval_every": 4}}


@pytest.mark.parametrize(
    ("example", "rungs"),
    [
        ("tagger", [{"rung": "zero_shot"}, QUICK_FULL]),
        ("offensive", [{"rung": "few_shot", "k": 2, "selector": "random"}, QUICK_FULL]),
        ("rag-qa", [{"rung": "zero_shot", "label": "closed_book"}, {"rung": "rag", "k": 1}]),
        ("riddles", [{"rung": "zero_shot"}, {"rung": "chain", "chain": "chain.yaml"}]),
    ],
)
def test_quick_climb_of_each_example(
    example: str, rungs: list[dict[str, Any]], tiny_causal_lm: Path, tmp_path: Path
) -> None:
    task = copy_example(
        example, tmp_path, rungs=rungs, data={"test_limit": 6}, params={"max_tokens": 6}
    )
    options = ClimbOptions(
        out=tmp_path / "out",
        all_rungs=True,
        models=[f"hf:{tiny_causal_lm}"],
        embedder=TableEmbedder(),
    )
    result = climb(task, options)
    assert [r.status for r in result.rows] == ["done"] * len(rungs)
    assert [r.score.n for r in result.rows] == [6] * len(rungs)
    metric = load_task(task).spec.metric_name()
    scores = [r.score for r in result.rows]
    assert all(s.metric == metric and 0.0 <= (s.value or 0.0) <= 1.0 for s in scores)
    assert result.report is not None and result.report.is_file()
    for row in result.rows:
        lines = (Path(row.provenance.folder) / "predictions.jsonl").read_text().splitlines()
        assert len(lines) == 6 and all("prediction" in json.loads(x) for x in lines)


# -- the chain rung -------------------------------------------------------------------------


def scripted_step(body: dict[str, Any]) -> str:
    """Step 1: "SUMMARY OF" the article's last word; step 2: a "RIDDLE about" that word."""
    text = str(body["messages"][-1]["content"]).split()
    if "SUMMARY" in text:
        return f"RIDDLE about {text[-1]}"
    return f"SUMMARY OF {text[-1].strip('.')}"


def riddles_task(tmp_path: Path, steps: Any = None, limit: int = 5) -> Path:
    rung: dict[str, Any] = {"rung": "chain"}
    if steps is None:
        rung["chain"] = "chain.yaml"
    else:
        rung["steps"] = steps
    return copy_example("riddles", tmp_path, rungs=[rung], data={"test_limit": limit})


INLINE = [
    {"name": "summary", "template": {"input": "{{ input }}"}, "params": {"max_tokens": 8}},
    {"name": "riddle", "template": {"input": "{{ steps.summary }}"}},
]


def test_chain_rung_feeds_each_step_the_one_before(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    server.reset()
    server.responder = scripted_step
    task = riddles_task(tmp_path, INLINE)
    result = climb(task, ClimbOptions(out=tmp_path / "out", models=[api(server)]))
    [row] = result.rows
    assert row.status == "done" and row.score.n == 5
    raw_file = Path(row.provenance.folder) / "predictions.raw.jsonl"
    raw = [json.loads(x) for x in raw_file.read_text().splitlines()]
    tests = load_task(task).test
    for item, record in zip(raw, tests, strict=True):
        last_word = record["article"].split()[-1].strip(".")
        assert item["steps"]["summary"] == f"SUMMARY OF {last_word}"
        assert item["output"] == item["steps"]["riddle"] == f"RIDDLE about {last_word}"
        assert item["prompts"]["riddle"][-1]["content"].endswith(f"\nSUMMARY OF {last_word}")
    assert server.count("/v1/chat/completions") == 10  # two steps x five records
    assert row.cost.prompt_tokens > 0 and row.cost.usd > 0  # priced per token (prices.yaml)
    # max_tokens: the step's own 8 for the summary, the task's 40 for the riddle
    sent = sorted({r.body.get("max_tokens") for r in server.requests})
    assert sent == [8, 40]


def api(server: OpenAITestServer) -> str:
    return f"openai:nologprobs@{server.base_url}"


def test_chain_steps_cannot_read_the_reference(server: OpenAITestServer, tmp_path: Path) -> None:
    server.reset()
    steps = [{"name": "cheat", "template": {"input": "{{ riddle }}"}}]
    task = riddles_task(tmp_path, steps)
    with pytest.raises(ConfigError, match="riddle"):
        climb(task, ClimbOptions(out=tmp_path / "out", models=[api(server)]))
    assert server.count() == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"chain": "chain.yaml", "steps": INLINE}, "either 'chain'"),
        ({"chain": "missing.yaml"}, "option 'chain': no file"),
        ({"steps": [{"name": "a b", "template": {"input": "x"}}]}, "option 'steps.0.name'"),
        ({"steps": [{"name": "a", "template": {"input": "{{ steps.b }}"}}]}, "unknown step 'b'"),
    ],
)
def test_bad_chain_options_are_one_line_errors(
    options: dict[str, Any], message: str, tmp_path: Path
) -> None:
    from ladder.climb.chain_rung import build_task_chain

    task = load_task(riddles_task(tmp_path))
    with pytest.raises(ConfigError, match=message) as err:
        build_task_chain(task, options)
    assert "\n" not in str(err.value)


def test_chain_rung_resumes_after_the_rows_it_finished(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    server.reset()
    server.responder = lambda body: "fine"
    task = riddles_task(tmp_path, INLINE, limit=6)
    out = tmp_path / "out"
    climb(task, ClimbOptions(out=out, models=[api(server)]))
    [folder] = list((out / "rungs").glob("*/00-chain"))
    rows_file = folder / "predictions.raw.jsonl"
    lines = rows_file.read_text().splitlines()
    rows_file.write_text("\n".join(lines[:4]) + "\n" + lines[4][:10])  # cut mid-row
    state = json.loads((out / "climb.json").read_text())
    state["rows"], state["finished"] = [], False  # the rung never finished
    (out / "climb.json").write_text(json.dumps(state))
    server.reset()
    server.responder = lambda body: "fine"
    result = climb(task, ClimbOptions(out=out, models=[api(server)], resume=True))
    assert server.count() == 4  # records 5 and 6, two steps each
    assert result.rows[0].score.n == 6 and len(rows_file.read_text().splitlines()) == 6


def test_riddles_judge_grades_the_predictions_a_climb_wrote(
    server: OpenAITestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.reset()
    server.responder = lambda body: "I fall on the town. What am I? Rain."
    task = riddles_task(tmp_path, INLINE)
    result = climb(task, ClimbOptions(out=tmp_path / "out", models=[api(server)]))
    predictions = Path(result.rows[0].provenance.folder) / "predictions.jsonl"
    server.responder = lambda body: (
        '{"rationale": "a riddle, but the facts are missing", "score": 2}'
    )
    args = ["judge", "--predictions", str(predictions), "--references", str(predictions)]
    args += ["--questions", str(predictions), "--judge", api(server), "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["value"] == 2.0 and out["valid"] == 5 and out["rows"] == 5
    judged = [r.body for r in server.requests][-5:]
    assert "What am I? Rain." in judged[0]["messages"][-1]["content"]
