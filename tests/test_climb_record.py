"""The climb's record: rows and variants of typed parts, on disk the flat objects they always were.

``climb.json`` and ``leaderboard.json`` hold a row as one flat JSON object; the keys and
their order below are the ones ladder wrote before a row had parts, so a climb folder from
then resumes, and the files keep their shape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import write_climb_task
from ladder.climb import ClimbOptions, climb, load_task, register_rung
from ladder.climb.climb import LEADERBOARD_KEYS
from ladder.climb.parts import (
    Cost,
    Difference,
    JudgeColumn,
    Savings,
    Score,
    Training,
    Verdict,
    VsBelow,
)
from ladder.climb.record import Row, Variant
from ladder.climb.rungs import RungContext, RungResult
from ladder.climb.state import load_state, load_variants
from ladder.climb.stop_rule import over_budget
from ladder.climb.task import LoadedTask

# A fine-tuning row one rung above zero_shot, judged, as climb.json held it (keys in order).
OLD_ROW: dict[str, Any] = {
    "rung": "lora",
    "model": "hf:/models/m",
    "metric": "accuracy",
    "status": "done",
    "value": 0.9,
    "ci_low": 0.8,
    "ci_high": 1.0,
    "n": 30,
    "signature": "metric:accuracy|scale:0-1|ci:bootstrap|bs:1000|conf:0.95|seed:0",
    "cost": 0.0042,
    "latency_p50": 0.011,
    "latency_p95": 0.025,
    "peak_memory": 734003200,
    "good_enough": True,
    "below": "zero_shot",
    "delta_vs_below": 0.4,
    "p_value_vs_below": 0.0,
    "answered_by": "hf:/runs/rungs/hf-m/01-lora/ft/model",
    "prompt_tokens": 780,
    "completion_tokens": 30,
    "compute_seconds": 15.1,
    "wall_s": 16.734,
    "reason": "accuracy 0.900 >= 0.8 and significantly better than zero_shot",
    "train_losses": [2.5, 1.25, 0.5],
    "folder": "/runs/rungs/hf-m/01-lora",
    "run_id": "0123456789abcdef",
    "template_version": "082fd9cd3b19",
    "train_seconds": 14.9,
    "train_metrics": {"validation_loss": 0.7, "base_validation_loss": 2.6},
    "judge_value": 4.2,
    "judge_ci_low": 3.9,
    "judge_ci_high": 4.5,
    "judge_valid": "29/30",
    "judge_signature": "metric:judge|rubric:correctness-ed4edd8a",
    "judge_key": "openai:judge@http://h/v1|correctness-ed4edd8a|max_tokens=64",
}

OLD_VARIANT: dict[str, Any] = {
    "kind": "shots",
    "name": "k=2",
    "of": "hf:/models/m|few_shot",
    "rung": "few_shot",
    "model": "hf:/models/m",
    "metric": "accuracy",
    "status": "done",
    "reason": "accuracy 1.000 vs 1.000, difference +0.000: the interval reaches 0",
    "value": 1.0,
    "ci_low": 1.0,
    "ci_high": 1.0,
    "delta": 0.0,
    "delta_ci_low": -0.1,
    "delta_ci_high": 0.1,
    "keeps_quality": True,
    "verdict": "keeps quality",
    "cost": 0.0005,
    "cost_saving": 0.45,
    "latency_p50": 0.2,
    "latency_saving": 0.3,
    "prompt_tokens": 300,
    "completion_tokens": 30,
    "peak_memory": 1048576,
    "wall_s": 2.5,
    "template_version": "aa11bb22cc33",
    "folder": "/runs/variants/01-shots-k-2",
    "run_id": "fedcba9876543210",
}


def test_a_row_is_its_old_flat_record_key_for_key() -> None:
    row = Row.from_record(OLD_ROW)
    assert row.score == Score("accuracy", 0.9, 0.8, 1.0, 30, OLD_ROW["signature"])
    assert row.cost == Cost(0.0042, 780, 30, 15.1)
    assert row.below == VsBelow("zero_shot", 0.4, 0.0)
    assert row.verdict == Verdict(True, OLD_ROW["reason"])
    assert row.judge == JudgeColumn(
        OLD_ROW["judge_key"], 4.2, 3.9, 4.5, "29/30", "metric:judge|rubric:correctness-ed4edd8a"
    )
    assert row.training == Training([2.5, 1.25, 0.5], 14.9, OLD_ROW["train_metrics"])
    assert (row.memory.peak_bytes, row.timing.wall_s) == (734003200, 16.734)
    assert row.provenance.run_id == "0123456789abcdef" and row.key == "hf:/models/m|lora"
    record = row.to_record()
    assert list(record) == list(OLD_ROW) and record == OLD_ROW
    leaderboard_keys = [k for k in OLD_ROW if k in LEADERBOARD_KEYS]
    assert leaderboard_keys == list(LEADERBOARD_KEYS)


def test_a_variant_is_its_old_flat_record_key_for_key() -> None:
    variant = Variant.from_record(OLD_VARIANT)
    assert variant.difference == Difference(0.0, -0.1, 0.1)
    assert variant.savings == Savings(0.45, 0.3) and variant.keeps_quality
    assert variant.key == "shots:k=2"
    record = variant.to_record()
    # The old keys keep their order; the newer ones (throughput, a gguf variant's file) follow.
    newer = {"tokens_per_s": None, "weights_file": "", "weights_bytes": 0}
    assert list(record) == [*OLD_VARIANT, *newer] and record == {**OLD_VARIANT, **newer}
    gguf = {**OLD_VARIANT, "tokens_per_s": 61.5, "weights_file": "/v/m.gguf", "weights_bytes": 9}
    assert Variant.from_record(gguf).to_record() == gguf


def test_a_skipped_row_and_an_older_record_without_the_judge_take_defaults() -> None:
    older = {k: v for k, v in OLD_ROW.items() if not k.startswith(("judge_", "train_"))}
    row = Row.from_record({**older, "below": None, "status": "skipped", "good_enough": False})
    assert row.judge is None and row.below is None and row.training == Training()
    assert not row.done and not row.verdict.good_enough
    record = row.to_record()
    assert record["judge_key"] == "" and record["judge_value"] is None
    assert record["delta_vs_below"] is None and record["train_losses"] == []


def test_the_budget_check_counts_rows_then_variants(tmp_path: Path) -> None:
    task = load_task(write_climb_task(tmp_path, ["hf:x"], "  - zero_shot\n"))
    rows = [Row.from_record(OLD_ROW)]  # $0.0042
    variants = [Variant.from_record(OLD_VARIANT)]  # $0.0005
    assert over_budget(task, rows, variants) is None  # no budget
    limited = LoadedTask(
        task.spec.model_copy(update={"max_cost_usd": 0.0045}), task.path, [], [], task.test
    )
    assert over_budget(limited, rows) is None
    assert over_budget(limited, rows, variants) == pytest.approx(0.0047)


class NeverRung:
    """A rung that fails the test if it runs: resume must keep its finished row."""

    def run(self, task: LoadedTask, model: str, ctx: RungContext) -> RungResult:
        raise AssertionError(f"{ctx.out.name} ran again on resume")


register_rung("never_again", lambda name, options: NeverRung())


def test_a_climb_folder_written_before_rows_had_parts_resumes(tmp_path: Path) -> None:
    model = "openai:nologprobs@http://127.0.0.1:9/v1"  # never asked
    task_file = write_climb_task(
        tmp_path / "t", [model], "  - never_again\n", extra="optimise: false\n"
    )
    task = load_task(task_file)
    out = tmp_path / "out"
    folder = out / "rungs" / "old" / "00-never_again"
    folder.mkdir(parents=True)
    row = {
        **OLD_ROW,
        "rung": "never_again",
        "model": model,
        "answered_by": model,
        "below": None,
        "delta_vs_below": None,
        "p_value_vs_below": None,
        "train_losses": [],
        "train_seconds": 0.0,
        "train_metrics": {},
        "folder": str(folder),
        **{k: None for k in ("judge_value", "judge_ci_low", "judge_ci_high")},
        **{k: "" for k in ("judge_valid", "judge_signature", "judge_key")},
    }
    old = {"task": "animals", "fingerprint": task.fingerprint(), "finished": True, "rows": [row]}
    old["variants"] = [OLD_VARIANT]
    (out / "climb.json").write_text(json.dumps(old, indent=2) + "\n")

    result = climb(task_file, ClimbOptions(out=out, resume=True))
    assert result.recommendation is result.rows[0]
    assert result.rows[0].to_record() == row
    state = json.loads((out / "climb.json").read_text())
    assert state["rows"] == [row]  # written back as it was read
    assert [r.to_record() for r in load_state(out)] == [row]
    board = json.loads((out / "leaderboard.json").read_text())
    assert board["leaderboard"][0] == {k: row[k] for k in board["leaderboard"][0]}
    assert "never_again on " + model in result.why
    assert [v.to_record() for v in load_variants(out)] == []  # optimise: false tried none
