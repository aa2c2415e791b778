"""The dpo rung (Rafailov et al. 2023) in a climb on the tiny Llama, with generated pairs.

Pairs: "the ADJ ANIMAL sat on the" → the animal's colour chosen, another colour rejected.
One climb (module fixture, --all, ~7 s): full fine-tuning, then dpo on top of the full
rung's checkpoint (the default ``start: sft``); dpo from the base model (``start: base``)
is a slow test.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from conftest import CLIMB_LABELS, climb_rows, write_climb_task
from ladder.cli.main import main
from ladder.climb import ClimbOptions, ClimbResult, climb, load_task
from ladder.climb.dpo_rung import DPORung
from ladder.climb.grpo_rung import GRPORung
from ladder.climb.rungs import RungContext
from ladder.errors import ConfigError, UnsupportedError

STEPS = "max_steps: 20, batch_size: 8, warmup_steps: 2, eval_every: 10, save_every: 20"
FULL = f"{{rung: full, train: {{{STEPS.replace('20', '30')}, lr: 0.003}}}}"
DPO = f"{{rung: dpo, beta: 0.1, train: {{{STEPS}, lr: 0.01}}}}"
RUNGS = f"  - {FULL}\n  - {DPO}\n"


def write_pairs(path: Path, n: int, seed: int) -> Path:
    """Preference pairs over the climb task's inputs: the right colour over another one."""
    rng = random.Random(seed)
    rows = []
    for row in climb_rows(n, seed):
        wrong = rng.choice([c for c in CLIMB_LABELS.values() if c != row["label"]])
        rows.append({"prompt": row["text"], "chosen": row["label"], "rejected": wrong})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def with_pairs(task: Path) -> Path:
    write_pairs(task.parent / "pairs.jsonl", 60, seed=7)
    text = task.read_text().replace(
        "reference: label}", "reference: label, preference: pairs.jsonl}"
    )
    task.write_text(text)
    return task


@pytest.fixture(scope="module")
def climbed(tiny_causal_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> ClimbResult:
    root = tmp_path_factory.mktemp("dpo")
    task = write_climb_task(root / "t", [f"hf:{tiny_causal_lm}"], RUNGS, extra="optimise: false\n")
    return climb(with_pairs(task), ClimbOptions(out=root / "out", all_rungs=True))


def test_dpo_on_top_of_the_sft_checkpoint_raises_margin_and_score(
    climbed: ClimbResult,
) -> None:
    full, dpo = climbed.rows
    assert dpo.status == "done" and dpo.answered_by.endswith("01-dpo/ft/model")
    summary = json.loads((Path(dpo.provenance.folder) / "finetune.json").read_text())
    assert summary["start"] == full.answered_by  # LoRA on top of the full rung's checkpoint
    metrics = dpo.training.metrics
    # before training the policy is its own reference: log 2 per held-out pair, margin 0
    assert metrics["base_validation_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert metrics["validation_loss"] == pytest.approx(0.400, abs=0.02)  # the margin rose
    assert metrics["preference_accuracy"] == 1.0
    # its cost carries the SFT training it started from, as well as its own
    seconds = dpo.training.seconds
    assert seconds == pytest.approx(full.training.seconds + summary["train_seconds"])
    assert dpo.cost.compute_seconds > seconds
    assert full.score.value == pytest.approx(25 / 30)  # as in test_climb_finetune
    assert dpo.score.value == pytest.approx(28 / 30)  # measured: preference tuning fixed 3 answers
    assert dpo.below is not None and dpo.below.rung == "full"
    assert len(dpo.training.losses) == 20


@pytest.mark.parametrize("build", [DPORung.build, GRPORung.build], ids=["dpo", "grpo"])
def test_a_rung_after_sft_refuses_an_unknown_start_in_one_line(build: object) -> None:
    # both rungs check `start` in one place (ladder.climb.after_sft)
    with pytest.raises(ConfigError, match=r"^rung r: option 'start' is 'middle'; use sft or base$"):
        build("r", {"start": "middle"})  # type: ignore[operator]


@pytest.mark.slow
def test_dpo_from_the_base_raises_the_margin_only(tiny_causal_lm: Path, tmp_path: Path) -> None:
    rungs = f"  - {DPO.replace('rung: dpo,', 'rung: dpo, start: base,')}\n"
    task = write_climb_task(
        tmp_path / "t", [f"hf:{tiny_causal_lm}"], rungs, extra="optimise: false\n"
    )
    [row] = climb(with_pairs(task), ClimbOptions(out=tmp_path / "out")).rows
    summary = json.loads((Path(row.provenance.folder) / "finetune.json").read_text())
    assert summary["start"] == f"hf:{tiny_causal_lm}"
    metrics = row.training.metrics
    assert metrics["base_validation_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert metrics["validation_loss"] == pytest.approx(0.449, abs=0.02)
    assert metrics["preference_accuracy"] == 1.0
    # measured: margins alone do not teach the random model the answer
    assert row.score.value == 0.0


def test_dpo_listed_without_pairs_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = write_climb_task(tmp_path / "t", ["hf:x"], "  - zero_shot\n  - dpo\n")
    assert main(["climb", str(task), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"ladder: error: {task}:10: field 'rungs.1': rung dpo trains on preference pairs but "
        "the task has no data.preference; add a pairs file or drop the rung"
    )


def test_dpo_in_the_default_rungs_is_skipped_without_pairs(tmp_path: Path) -> None:
    task_file = write_climb_task(tmp_path / "t", ["hf:x"], "  - zero_shot\n")
    text = task_file.read_text()
    task_file.write_text(text[: text.index("rungs:")])  # the default rungs
    task = load_task(task_file)
    assert [s.rung for s in task.spec.rung_specs()][-2:] == ["full", "dpo"]
    with pytest.raises(UnsupportedError, match=r"the task has no data.preference"):
        DPORung.build("dpo", {}).run(task, "hf:x", RungContext(tmp_path / "r"))


def test_bad_pairs_name_file_line_and_field(tmp_path: Path) -> None:
    task = with_pairs(write_climb_task(tmp_path / "t", ["hf:x"], "  - dpo\n"))
    pairs = task.parent / "pairs.jsonl"
    lines = pairs.read_text().splitlines()
    lines[2] = json.dumps({"prompt": "the cat sat on the", "chosen": "red"})
    pairs.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"pairs.jsonl:3: missing field 'rejected'"):
        load_task(task)
    lines[2] = json.dumps({"prompt": "the cat sat on the", "chosen": "red", "rejected": "red"})
    pairs.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"pairs.jsonl:3: field 'rejected' equals 'chosen'"):
        load_task(task)
    loaded = load_task(with_pairs(task))
    assert len(loaded.preference) == 60 and "preference" in loaded.data_hashes
