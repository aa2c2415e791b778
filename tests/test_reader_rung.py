"""The fine-tuned reader: a fine-tuning rung with ``retrieve`` trains and answers with sources.

The task (conftest ``write_climb_task``): "the ADJ ANIMAL sat on the" → the animal's colour;
its knowledge is one sentence per animal ("the cat is red ."). A ``full`` rung with
``retrieve: {k: 1}`` must put the retrieved sentence in every training record and every
test prompt (the ``rag`` rung's prompt), learn, and on ``--resume`` reuse its training.
Retrieval is BM25 (``mode: text``): the animal's name picks its fact; the letter-count
``TableEmbedder`` stands in for MiniLM.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import CLIMB_LABELS, TableEmbedder, write_climb_task
from ladder.climb import ClimbOptions, ClimbResult, climb, load_task
from ladder.climb.finetune_rungs import TunedAnswerRung
from ladder.climb.rag_rung import SOURCES_FIELD, TaskRetrieval
from ladder.climb.rungs import Retrieved, RungContext, get_rung_class
from ladder.errors import ConfigError

READER = (
    "{rung: full, label: reader, retrieve: {k: 1, mode: text}, "
    "train: {max_steps: 30, batch_size: 8, lr: 0.003, warmup_steps: 2, eval_every: 10, "
    "save_every: 30}}"
)


def reader_task(folder: Path, model: str, rungs: str = READER, knowledge: bool = True) -> Path:
    """The animals task with one fact per animal in ``facts/`` and the ``rungs`` (YAML)."""
    task = write_climb_task(folder, [model], f"  - {rungs}\n", test=12)
    if knowledge:
        facts = folder / "facts"
        facts.mkdir()
        for animal, colour in CLIMB_LABELS.items():
            (facts / f"{animal}.txt").write_text(f"the {animal} is {colour} .")
        text = task.read_text().replace("reference: label}", "reference: label, knowledge: facts}")
        task.write_text(text)
    return task


def animal_of(text: str) -> str:
    return next(a for a in CLIMB_LABELS if f" {a} " in f" {text} ")


@pytest.fixture(scope="module")
def climbed(tiny_causal_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> ClimbResult:
    root = tmp_path_factory.mktemp("reader")
    rungs = f"{{rung: rag, k: 1, mode: text}}\n  - {READER}"  # the same prompt, untrained
    task = reader_task(root / "task", f"hf:{tiny_causal_lm}", rungs)
    options = ClimbOptions(
        out=root / "out", embedder=TableEmbedder(), optimise=False, all_rungs=True
    )
    return climb(task, options)


def test_training_records_carry_the_sources_retrieved_for_their_input(
    climbed: ClimbResult,
) -> None:
    row = climbed.rows[1]
    train = Path(row.provenance.folder) / "train.jsonl"
    rows = [json.loads(x) for x in train.read_text().splitlines()]
    assert len(rows) == 80
    for item in rows:
        user, answer = item["messages"][-2]["content"], item["messages"][-1]["content"]
        animal = animal_of(user.rsplit("sat on the", 1)[0].split("\n")[-1])
        # the rag rung's prompt: the sources in the instructions, then the input
        assert "Use the numbered sources below" in user
        assert f"[1] the {animal} is {CLIMB_LABELS[animal]} ." in user  # the right fact first
        assert "[2]" not in user and answer == CLIMB_LABELS[animal]


def raw_rows(folder: str) -> list[dict[str, Any]]:
    return [
        json.loads(x) for x in (Path(folder) / "predictions.raw.jsonl").read_text().splitlines()
    ]


def test_reader_learns_and_is_asked_with_the_rag_rungs_prompt(climbed: ClimbResult) -> None:
    rag, row = climbed.rows
    assert row.status == "done" and row.score.n == 12
    folder = row.provenance.folder
    for mine, theirs in zip(raw_rows(folder), raw_rows(rag.provenance.folder), strict=True):
        assert mine["prompt"] == theirs["prompt"]  # asked exactly as the rag rung asks
        animal = animal_of(mine["input"]["input"])
        assert f"[1] the {animal} is {CLIMB_LABELS[animal]} ." in mine["prompt"][-1]["content"]
    # the same prompts: the random model cannot read them, 30 steps of training can
    assert (rag.score.value, row.score.value) == (0.0, 1.0)  # measured: 0 and 12 of 12 right
    assert row.verdict.good_enough and row.below is not None and row.below.p_value == 0.0
    losses = row.training.losses
    assert len(losses) == 30 and losses[-1] < losses[0] / 4
    assert row.answered_by.endswith("01-reader/ft/model")
    summary = json.loads((Path(folder) / "finetune.json").read_text())
    assert summary["retrieval_seconds"] > 0.0  # train-side retrieval, charged as training
    assert row.training.seconds >= summary["train_seconds"] and row.cost.compute_seconds > 0


def test_resume_reuses_the_finished_training(
    climbed: ClimbResult, tmp_path: Path, tiny_causal_lm: Path
) -> None:
    out = climbed.out
    row = climbed.rows[1]
    weights = Path(row.answered_by.removeprefix("hf:")) / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    state = json.loads((out / "climb.json").read_text())
    state["rows"], state["finished"] = [], False  # as if interrupted after training
    (out / "climb.json").write_text(json.dumps(state))
    lines: list[str] = []
    task = load_task(climbed.task.path)
    options = ClimbOptions(
        out=out, embedder=TableEmbedder(), optimise=False, resume=True, log=lines.append
    )
    again = climb(task.path, options)
    assert any("reusing the finished training" in line for line in lines)
    assert weights.stat().st_mtime_ns == stamp and again.rows[1].score.value == row.score.value


@pytest.mark.parametrize(
    ("retrieve", "message"),
    [
        ("3", "option 'retrieve' is 3; use a mapping"),
        ("{k: 0}", "option 'retrieve.k' is 0; use a whole number"),
        ("{mode: fuzzy}", "option 'retrieve.mode' is 'fuzzy'; use hybrid or dense or text"),
        ("{top: 2}", "option 'retrieve' has no setting 'top'"),
        ("{chunk_tokens: 2}", "option 'retrieve.chunk_tokens' is 2"),
    ],
)
def test_bad_retrieve_options_are_one_line_errors_at_load_time(
    retrieve: str, message: str, tmp_path: Path
) -> None:
    task = reader_task(tmp_path / "t", "hf:unused", f"{{rung: lora, retrieve: {retrieve}}}")
    with pytest.raises(ConfigError, match=message) as err:
        load_task(task)
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{task}:") and ":9:" in text  # rungs.0 is line 9


def test_retrieve_makes_a_fine_tuning_rung_need_knowledge(tmp_path: Path) -> None:
    for name in ("full", "lora", "qlora", "freeze"):
        entry = get_rung_class(name)
        assert entry.wants_knowledge({"retrieve": {"k": 1}}) and not entry.wants_knowledge({})
    assert get_rung_class("rag").wants_knowledge({})
    task = reader_task(tmp_path / "t", "hf:unused", knowledge=False)
    with pytest.raises(ConfigError) as err:
        load_task(task)
    assert str(err.value) == (
        f"{task}:9: field 'rungs.0': rung full (option 'retrieve') retrieves from "
        "data.knowledge, which the task does not set; add it or drop the option"
    )
    with pytest.raises(ConfigError):  # refused before anything runs
        climb(task, ClimbOptions(out=tmp_path / "out", embedder=TableEmbedder()))
    assert not (tmp_path / "out").exists()


def test_task_retrieval_ranks_the_matching_fact_first(tmp_path: Path) -> None:
    task = load_task(reader_task(tmp_path / "t", "hf:unused"))
    ctx = RungContext(tmp_path / "rung", embedder=TableEmbedder())
    retrieval = TaskRetrieval.index(task, {"k": 2, "mode": "text"}, ctx)  # BM25: the animal
    records, seconds = retrieval.with_sources(task.test)
    assert len(records) == len(seconds) == 12 and retrieval.settings().chunks == 3
    for record in records:
        animal = animal_of(record["input"])
        first, *rest = record[SOURCES_FIELD].split("\n")  # BM25 drops chunks with no match
        assert first == f"[1] the {animal} is {CLIMB_LABELS[animal]} ." and len(rest) <= 1


def test_tuned_answer_rung_asks_the_checkpoint_as_its_rung_did(
    climbed: ClimbResult, tmp_path: Path
) -> None:
    row = climbed.rows[1]
    options = {"retrieve": {"k": 1, "mode": "text"}, "train": {"max_steps": 1}}
    rung = TunedAnswerRung.build("answer", options)
    assert set(rung.options) == {"retrieve"}  # training settings are not its business
    ctx = RungContext(tmp_path / "answer", embedder=TableEmbedder())
    result = rung.run(climbed.task, row.answered_by, ctx)
    again = raw_rows(str(ctx.out))
    assert [r["prompt"] for r in again] == [r["prompt"] for r in raw_rows(row.provenance.folder)]
    assert result.outputs == [r["output"] for r in raw_rows(row.provenance.folder)]
    assert result.retrieval == Retrieved(k=1, mode="text", chunks=3)
