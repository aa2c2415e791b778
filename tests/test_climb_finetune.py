"""The climb with real training on the tiny Llama: fine-tuning beats prompting, reproducibly.

The task (conftest ``write_climb_task``): "the ADJ ANIMAL sat on the" → the animal's colour,
accuracy on 30 held-out records. The random 2-layer Llama cannot do it by prompting; 30
steps of full fine-tuning can. The same climb runs twice (module fixture, ~10 s in all)
and must give the same scores.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import TableEmbedder, write_climb_task
from ladder.climb import ClimbOptions, ClimbResult, climb, load_task

FULL = (
    "{rung: full, train: {max_steps: 30, batch_size: 8, lr: 0.003, warmup_steps: 2, "
    "eval_every: 10, save_every: 30}}"
)
RUNGS = f"  - zero_shot\n  - {{rung: few_shot, k: 2, selector: random}}\n  - {FULL}\n"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def climbs(tiny_causal_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> list[ClimbResult]:
    root = tmp_path_factory.mktemp("climb")
    extra = "optimise: [quantise]\ncompute_hour_usd: 1.0\n"  # int8 of the tuned checkpoint
    task = write_climb_task(root / "task", [f"hf:{tiny_causal_lm}"], RUNGS, extra=extra)
    return [climb(task, ClimbOptions(out=root / f"out{i}", all_rungs=True)) for i in range(2)]


def test_finetuning_beats_zero_shot_with_pinned_numbers(climbs: list[ClimbResult]) -> None:
    zero, few, full = climbs[0].rows
    assert (zero.score.value, few.score.value) == (0.0, 0.0)  # a random model does not know
    assert full.score.value == pytest.approx(25 / 30)  # measured: 25 of 30 right after 30 steps
    assert full.score.ci_low == pytest.approx(0.667, abs=1e-3)
    assert full.score.ci_high == pytest.approx(0.967, abs=1e-3)
    assert full.verdict.good_enough and full.below is not None
    assert (full.below.rung, full.below.p_value) == ("few_shot", 0.0)
    assert (
        climbs[0].recommendation is full and "significantly better than few_shot" in climbs[0].why
    )
    losses = full.training.losses
    assert len(losses) == 30 and losses[-1] < losses[0] / 4
    assert full.answered_by.endswith("02-full/ft/model") and full.cost.compute_seconds > 0


def test_int8_variant_of_the_fine_tuned_checkpoint(climbs: list[ClimbResult]) -> None:
    full = climbs[0].rows[2]
    [variant] = climbs[0].variants
    assert variant.name == "dynamic int8" and variant.model == full.answered_by + "#int8"
    assert variant.score.value == pytest.approx(25 / 30)  # measured: the same 25 right as full
    assert variant.verdict == "keeps quality" and variant.difference is not None
    d = variant.difference
    assert d.delta == 0.0 and d.ci_low <= 0.0 <= d.ci_high
    # it keeps the training cost of the checkpoint it quantised
    assert variant.cost.usd > full.training.seconds / 3600 > 0
    assert variant.savings.cost is not None


def test_the_same_climb_twice_gives_identical_scores(climbs: list[ClimbResult]) -> None:
    first, second = ([(r.rung, r.score, r.below) for r in c.rows] for c in climbs)
    assert first == second
    assert [(v.name, v.score, v.difference) for v in climbs[0].variants] == [
        (v.name, v.score, v.difference) for v in climbs[1].variants
    ]
    assert climbs[0].rows[2].training.losses == climbs[1].rows[2].training.losses
    preds = [(Path(c.rows[2].provenance.folder) / "predictions.jsonl").read_text() for c in climbs]
    assert [json.loads(x)["prediction"] for x in preds[0].splitlines()] == [
        json.loads(x)["prediction"] for x in preds[1].splitlines()
    ]


def test_report_has_every_part(climbs: list[ClimbResult]) -> None:
    assert climbs[0].report is not None
    page = climbs[0].report.read_text()
    for part in (
        "plot-score",
        "plot-frontier",
        "plot-loss",
        "Recommendation: full on",
        "class='right'",
        "class='wrong'",
        "<script>",
    ):
        assert part in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # self-contained


def test_rag_rung_puts_retrieved_sources_in_the_prompt(
    tiny_causal_lm: Path, tmp_path: Path
) -> None:
    task_file = write_climb_task(
        tmp_path / "t", [f"hf:{tiny_causal_lm}"], "  - {rung: rag, k: 1}\n", test=6
    )
    facts = tmp_path / "t" / "facts"
    facts.mkdir()
    (facts / "cats.txt").write_text("A cat is always red.")
    (facts / "dogs.txt").write_text("A dog is always blue.")
    text = task_file.read_text().replace("reference: label}", "reference: label, knowledge: facts}")
    task_file.write_text(text)
    result = climb(task_file, ClimbOptions(out=tmp_path / "out", embedder=TableEmbedder()))
    [row] = result.rows
    assert row.status == "done" and row.score.n == 6
    folder = Path(row.provenance.folder)
    raw = [json.loads(x) for x in (folder / "predictions.raw.jsonl").read_text().splitlines()]
    for item in raw:
        prompt = item["prompt"][-1]["content"]
        animal = (
            "cat"
            if " cat " in item["input"]["input"]
            else "dog"
            if " dog " in item["input"]["input"]
            else None
        )
        assert "[1] A " in prompt
        if animal is not None:  # the letter-count embedder ranks the matching fact first
            assert f"[1] A {animal} is always" in prompt
    assert (folder / "kb" / "knowledge").is_dir()


def test_tagger_example_generates_its_data_and_loads(tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "examples" / "tagger", tmp_path / "tagger", ignore=shutil.ignore_patterns("data")
    )
    task = load_task(tmp_path / "tagger" / "task.yaml")  # runs generate.py: data/ is missing
    assert (len(task.train), len(task.dev), len(task.test)) == (400, 40, 60)
    assert task.spec.metric_name() == "set_f1" and task.spec.output.type == "json_list"
    first = task.test[0]
    assert json.loads(first["answer"]) == first["models"]
    assert all(name in first["input"] for name in first["models"])
    texts = [r["input"] for r in task.train] + [r["input"] for r in task.test]
    assert len(set(texts)) == len(texts)  # no text in two splits
    again = load_task(tmp_path / "tagger" / "task.yaml")
    assert again.fingerprint() == task.fingerprint()  # the generator is deterministic


@pytest.mark.slow
def test_adapter_rungs_merge_and_answer(tiny_causal_lm: Path, tmp_path: Path) -> None:
    lora = (
        "{rung: lora, train: {max_steps: 30, batch_size: 8, lr: 0.01, warmup_steps: 2, "
        "eval_every: 10, save_every: 30}}"
    )
    qlora = lora.replace("rung: lora", "rung: qlora")
    task = write_climb_task(tmp_path / "t", [f"hf:{tiny_causal_lm}"], f"  - {lora}\n  - {qlora}\n")
    result = climb(task, ClimbOptions(out=tmp_path / "out", all_rungs=True))
    for row in result.rows:
        assert row.status == "done" and len(row.training.losses) == 30
        assert (Path(row.answered_by.removeprefix("hf:")) / "model.safetensors").is_file()
        assert row.training.losses[-1] < row.training.losses[0]
