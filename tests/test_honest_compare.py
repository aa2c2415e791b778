"""Honest paired comparisons: the minimum detectable effect, "tied", "too small to tell".

Planted differences with known answers: identical answers tie; a large improvement on a big
split is better; the same improvement on a tiny split is too small to tell, naming the size
that would tell it; and the climb's stop rule follows the call.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import climb_rows
from ladder.climb import ClimbOptions, climb, register_rung
from ladder.climb.honest import (
    BETTER,
    TIED,
    TOO_SMALL,
    WORSE,
    compare,
    minimum_detectable_effect,
    needed_records,
)
from ladder.climb.measure import paired_test
from ladder.climb.rungs import RungContext, RungResult
from ladder.climb.task import LoadedTask

# Ten records: A answers 9 right, B 5 (B's right ones among A's): a difference of +0.4,
# per-record differences four 1s and six 0s (sd 0.516).
A10 = [1] * 9 + [0]
B10 = [1] * 5 + [0] * 5


def _outcome(a: list[int], b: list[int], repeat: int = 1):  # type: ignore[no-untyped-def]
    """The paired test of answer lists a and b (1 right, 0 wrong), each repeated."""
    refs = ["red"] * (len(a) * repeat)
    pred_a = ["red" if x else "blue" for x in a] * repeat
    pred_b = ["red" if x else "blue" for x in b] * repeat
    return paired_test(
        "accuracy", {}, pred_a, pred_b, refs, resamples=1000, confidence=0.95, seed=0
    )


def test_the_mde_and_needed_size_follow_the_normal_approximation() -> None:
    sd = math.sqrt(0.4 * 0.6 * 10 / 9)  # sample sd of four 1s and six 0s
    # (1.96 + 0.8416) * sd / sqrt(n)
    assert minimum_detectable_effect(sd, 10, 0.05) == pytest.approx(
        2.8016 * sd / math.sqrt(10), rel=1e-4
    )
    assert needed_records(0.4, sd, 0.05) == 14  # (2.8016 * 0.5164 / 0.4)^2 = 13.08 -> 14
    assert needed_records(0.0, sd, 0.05) is None  # no split detects no difference
    # every record moved the same way: sd 0, so the sign test's floor (2 * 0.5^6 < 0.05)
    assert needed_records(1.0, 0.0, 0.05) == 6


def test_identical_answers_are_tied() -> None:
    said = compare(_outcome(A10, A10, repeat=20), 0.95)
    assert said.call == TIED and said.delta == 0.0 and said.needed_n is None
    assert said.mde == 0.0 and "tied with zero_shot (the CI includes 0" in said.describe(
        "zero_shot"
    )


def test_a_large_improvement_on_a_big_split_is_better_and_on_a_tiny_one_too_small() -> None:
    big = compare(_outcome(A10, B10, repeat=20), 0.95)  # 200 records
    assert big.call == BETTER and big.delta == pytest.approx(0.4) and big.ci_low > 0
    assert big.mde == pytest.approx(2.8016 * 0.4924 / math.sqrt(200), abs=0.01) and big.mde < 0.4
    tiny = compare(_outcome(A10, B10), 0.95)  # the same effect on 10 records
    assert tiny.ci_low > 0  # the bootstrap alone would call it significant
    assert tiny.call == TOO_SMALL and tiny.needed_n == 14 and tiny.mde > 0.4
    text = tiny.describe("few_shot")
    assert "too small to tell against few_shot" in text and "would need 14 records" in text
    worse = compare(_outcome(B10, A10, repeat=20), 0.95)
    assert worse.call == WORSE and worse.delta == pytest.approx(-0.4)


def test_a_corpus_metric_states_its_mde_from_the_bootstrap() -> None:
    refs = (["red", "blue"] * 100)[:200]
    pred_a = list(refs)
    pred_b = ["red"] * 200
    outcome = paired_test("f1", {}, pred_a, pred_b, refs, resamples=300, confidence=0.95, seed=0)
    said = compare(outcome, 0.95)
    assert outcome.n == 200 and outcome.spread > 0 and said.call == BETTER
    assert 0 < said.mde < said.delta


# -- the climb's stop rule follows the call --------------------------------------------------


class PlantedRung:
    """Answers the first ``right`` share of the test records right, the rest wrong."""

    def __init__(self, right: float) -> None:
        self.right = right

    def run(self, task: LoadedTask, model: str, ctx: RungContext) -> RungResult:
        n = len(task.test)
        k = round(self.right * n)
        answers = [r["answer"] if i < k else "purple" for i, r in enumerate(task.test)]
        return RungResult(model, answers, answers, [0.001] * n)


register_rung(
    "planted_share", lambda name, options: PlantedRung(float(options["right"])), options={"right"}
)


def _task(folder: Path, test: int) -> Path:
    """A label task with distinct test inputs (numbered), climbed by two planted rungs."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = climb_rows(test, 2)
    lines = [{"text": f"record {i}: {r['text']}", "label": r["label"]} for i, r in enumerate(rows)]
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    task = folder / "task.yaml"
    task.write_text(
        "name: planted\n"
        "data: {test: test.jsonl, input: text, reference: label}\n"
        "output: {type: label, labels: [red, blue, green]}\n"
        "good_enough: 0.8\n"
        "optimise: false\n"
        "models: ['openai:never@http://127.0.0.1:9/v1']\n"
        "rungs:\n"
        "  - {rung: planted_share, label: half, right: 0.5}\n"
        "  - {rung: planted_share, label: most, right: 0.9}\n"
    )
    return task


def test_the_climb_refuses_to_call_a_rung_better_on_a_split_too_small_to_tell(
    tmp_path: Path,
) -> None:
    small = climb(_task(tmp_path / "small", 10), ClimbOptions(out=tmp_path / "o1"))
    most = small.rows[1]
    assert most.below is not None and most.below.call == TOO_SMALL and most.below.needed_n == 14
    assert not most.verdict.good_enough and small.recommendation is None
    assert "the test split would need 14 records to detect 0.400" in most.verdict.reason
    record = json.loads((tmp_path / "o1" / "climb.json").read_text())["rows"][1]
    assert record["call_vs_below"] == TOO_SMALL and record["needed_n_vs_below"] == 14
    assert "too small to tell, MDE" in (tmp_path / "o1" / "report.html").read_text()

    big = climb(_task(tmp_path / "big", 200), ClimbOptions(out=tmp_path / "o2"))
    most = big.rows[1]
    assert most.below is not None and most.below.call == BETTER and most.verdict.good_enough
    assert "significantly better than half: better than half" in most.verdict.reason
    assert big.recommendation is most
