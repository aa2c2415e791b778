"""Best-of-n (:mod:`ladder.prompts.best_of_n`): ``ladder generate --best-of`` and the climb's
``best_of_n`` rung, on the tiny Llama with a tiny classifier's P(toxic) as the reward.

Sample 0 is drawn with the seed itself, so best-of-n keeps the plain seeded answer or one
the reward scores higher: its mean reward is above n=1's on the same seeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import mean

import pytest

from _reward_fixtures import build_tiny_classifier
from conftest import write_climb_task
from ladder.cli.main import main
from ladder.errors import ConfigError
from ladder.evaluate.reward import load_reward
from ladder.models.base import GenerationParams
from ladder.prompts.best_of_n import best_of_n

PROMPTS = ["the cat sat on the", "the dog ran under the", "a bird flew over", "the big red"]
PARAMS = GenerationParams(max_tokens=6, temperature=1.0, seed=5)


@pytest.fixture(scope="module")
def reward_spec(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"hf:{build_tiny_classifier(tmp_path_factory.mktemp('clf') / 'tox')}:toxic"


@pytest.fixture(scope="module")
def lm(tiny_causal_lm: Path):
    from ladder.models import load_model

    return load_model(f"hf:{tiny_causal_lm}", device="cpu")


def test_best_of_n_keeps_a_higher_reward_than_one_sample_on_the_same_seeds(
    lm, reward_spec: str
) -> None:
    reward = load_reward(reward_spec)
    prompts = [[{"role": "user", "content": p}] for p in PROMPTS]
    one = best_of_n(lm, prompts, PARAMS, reward, 1)
    four = best_of_n(lm, prompts, PARAMS, reward, 4)
    for single, best in zip(one, four, strict=True):
        assert best.candidates[0].text == single.best.text  # sample 0 is the seeded answer
        assert best.rewards[best.index] == max(best.rewards)
        assert len({c.text for c in best.candidates}) > 1  # the samples differ
    # Measured: mean P(toxic) 0.622 with one sample, 0.844 with the best of four.
    gain = mean(b.rewards[b.index] for b in four) - mean(s.rewards[0] for s in one)
    assert gain > 0.1


def test_ties_keep_the_first_sample(lm) -> None:
    class Flat:
        name = "flat"
        needs_references = False

        def score(self, prompts, answers, references=None):
            return [1.0] * len(answers)

    [result] = best_of_n(lm, ["the cat"], PARAMS, Flat(), 3)
    assert result.index == 0


def test_generate_best_of_prints_the_highest_reward_sample(
    tiny_causal_lm: Path, reward_spec: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["generate", f"hf:{tiny_causal_lm}", "the cat sat on the", "--max-tokens", "6",
            "--temperature", "1", "--seed", "5", "--best-of", "4",
            "--reward", reward_spec]  # fmt: skip
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["best_of"] == 4 and len(out["samples"]) == len(out["rewards"]) == 4
    assert out["kept"] == out["rewards"].index(max(out["rewards"]))
    assert out["text"] == out["samples"][out["kept"]]
    assert main(args) == 0  # without --json: the kept text alone, the same one
    assert capsys.readouterr().out == out["text"] + "\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--best-of", "3", "--temperature", "0", "--reward", "REWARD"], "set a temperature"),
        (["--best-of", "3", "--temperature", "1"], "--best-of needs --reward"),
        (["--best-of", "0", "--temperature", "1", "--reward", "REWARD"], "at least 1"),
    ],
)
def test_generate_bad_best_of_settings_are_one_line(
    tiny_causal_lm: Path,
    reward_spec: str,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    args = [reward_spec if a == "REWARD" else a for a in extra]
    assert main(["generate", f"hf:{tiny_causal_lm}", "the cat", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_the_best_of_n_rung_climbs_after_zero_shot(
    tiny_causal_lm: Path, reward_spec: str, tmp_path: Path
) -> None:
    from ladder.climb import ClimbOptions, climb

    rungs = (
        f'  - zero_shot\n  - {{rung: best_of_n, n: 3, reward: "{reward_spec}", temperature: 1.0}}\n'
    )
    task = write_climb_task(tmp_path / "t", [f"hf:{tiny_causal_lm}"], rungs,
                            extra="optimise: false\n", test=8)  # fmt: skip
    result = climb(task, ClimbOptions(out=tmp_path / "out", all_rungs=True))
    zero, best = result.rows
    assert best.rung == "best_of_n" and best.status == "done" and best.below is not None
    rows = [
        json.loads(line)
        for line in (Path(best.provenance.folder) / "predictions.raw.jsonl")
        .read_text()
        .splitlines()
    ]
    assert len(rows) == 8
    for row in rows:
        assert len(row["samples"]) == 3 and row["output"] == row["samples"][row["kept"]]
        assert row["rewards"][row["kept"]] == max(row["rewards"])
    assert best.cost.completion_tokens > zero.cost.completion_tokens  # it paid for 3 samples


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("{rung: best_of_n, n: 3}", "needs reward: hf:PATH"),
        ("{rung: best_of_n, n: 3, reward: metric}", "test references it is scored on"),
        ('{rung: best_of_n, n: 3, reward: "hf:x", temperature: 0}', "set a temperature"),
    ],
)
def test_bad_rung_options_fail_when_the_task_loads(
    tiny_causal_lm: Path, tmp_path: Path, options: str, message: str
) -> None:
    from ladder.climb import load_task

    task = write_climb_task(tmp_path / "t", [f"hf:{tiny_causal_lm}"], f"  - {options}\n")
    with pytest.raises(ConfigError, match=message) as info:
        load_task(task)
    assert "task.yaml" in str(info.value) and "\n" not in str(info.value)


def test_generate_with_a_causal_lm_as_reward_is_one_line_exit_2(
    tiny_causal_lm: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["generate", f"hf:{tiny_causal_lm}", "the cat", "--best-of", "2", "--temperature", "1"]
    assert main([*args, "--reward", f"hf:{tiny_causal_lm}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a sequence classifier" in err


def test_generate_refuses_a_metric_reward(
    tiny_causal_lm: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["generate", f"hf:{tiny_causal_lm}", "x", "--best-of", "2", "--temperature", "1"]
    assert main([*args, "--reward", "metric:exact", "--json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no reference answers" in err


def test_reward_metric_in_a_climb_is_the_tasks_metric_on_parsed_answers(
    tiny_causal_lm: Path, tmp_path: Path
) -> None:
    from ladder.climb import load_task
    from ladder.climb.best_of_n_rung import task_reward_context

    task = load_task(write_climb_task(tmp_path / "t", [f"hf:{tiny_causal_lm}"], "  - zero_shot\n"))
    reward = load_reward("metric", task_reward_context(task))
    assert reward.name == "metric:accuracy"
    refs = [r["answer"] for r in task.train[:3]]
    # label answers are parsed as the climb parses them: first line, case, a closing period
    answers = [f"{refs[0].upper()}.\nbecause", refs[1], "purple"]
    assert reward.score(["p"] * 3, answers, refs) == [1.0, 1.0, 0.0]
