"""``ladder finetune --method reward``: a Bradley–Terry reward model on the tiny Llama.

Pairs: "the ADJ ANIMAL sat on the" with the animal's reply chosen over another animal's
(tests/_finetune_data.py), validation pairs from another seed. The new score head starts at
zero, so the loss starts at exactly log 2 and every pair is a tie; a few steps teach the
rule. One run (module fixture, ~10 s on 2 loaded cores).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from _finetune_data import preference_rows, write_jsonl
from ladder.cli.main import main
from ladder.train.finetune import FinetuneResult, finetune
from ladder.train.finetune_config import FinetuneConfig
from ladder.train.reward_loss import bradley_terry_loss

STEPS = 12


@pytest.fixture(scope="module")
def trained(tiny_causal_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> FinetuneResult:
    root = tmp_path_factory.mktemp("reward")
    cfg = FinetuneConfig(
        model=f"hf:{tiny_causal_lm}",
        data=str(write_jsonl(root / "pairs.jsonl", preference_rows(60, seed=0))),
        validation_data=str(write_jsonl(root / "val.jsonl", preference_rows(30, seed=1))),
        method="reward",
        out=str(root / "rm"),
        train={"max_steps": STEPS, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2,
               "eval_every": STEPS, "save_every": STEPS},
    )  # fmt: skip
    return finetune(cfg, progress=False)


def test_bradley_terry_loss_is_log_2_at_a_tie_and_falls_with_the_margin() -> None:
    chosen = torch.tensor([0.0, 1.0, 5.0, -1.0])
    rejected = torch.tensor([0.0, 0.0, 0.0, 0.0])
    loss = bradley_terry_loss(chosen, rejected)
    assert loss[0].item() == pytest.approx(math.log(2))
    assert loss[1].item() == pytest.approx(math.log(1 + math.exp(-1)))
    assert loss[2].item() < 0.01 and loss[3].item() > math.log(2)  # wrong order costs more


def test_the_reward_model_learns_which_reply_is_right(trained: FinetuneResult) -> None:
    assert trained.base_eval is not None and trained.final_eval is not None
    assert trained.base_eval.loss == pytest.approx(math.log(2), abs=1e-6)  # a zero head
    # Measured on the 30 held-out pairs after 12 steps: 0.394, 29 of 30 ranked right
    # (train loss 0.693 → 0.345); before training every pair is a tie.
    assert trained.final_eval.loss == pytest.approx(0.394, abs=0.03)
    assert trained.train_losses[0] == pytest.approx(math.log(2), abs=1e-6)
    assert trained.train_losses[-1] < 0.5
    assert trained.preference_accuracy is not None and trained.preference_accuracy >= 0.9


def test_saves_a_sequence_classifier_with_its_accuracy_in_the_card(
    trained: FinetuneResult,
) -> None:
    assert trained.model_dir is not None and trained.adapter_dir is None
    config = json.loads((trained.model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    assert len(config["id2label"]) == 1  # one output: the reward
    assert config["pad_token_id"] == 0  # the classifier reads each row's last non-pad token
    card = (trained.model_dir / "README.md").read_text()
    assert "ladder-reward" in card and "preference_accuracy" in card


def test_the_trained_model_is_a_reward_that_ranks_held_out_pairs(
    trained: FinetuneResult,
) -> None:
    from ladder.evaluate.reward import load_reward

    reward = load_reward(f"hf:{trained.model_dir}")
    pairs = preference_rows(30, seed=2)
    prompts = [p["prompt"] for p in pairs]
    chosen = reward.score(prompts, [p["chosen"] for p in pairs])
    rejected = reward.score(prompts, [p["rejected"] for p in pairs])
    right = sum(c > r for c, r in zip(chosen, rejected, strict=True))
    assert right / len(pairs) >= 0.9
    # scored as trained: the same numbers whatever the batch (padding is not read)
    one_by_one = [
        reward.score([p], [a])[0]
        for p, a in zip(prompts[:4], [x["chosen"] for x in pairs[:4]], strict=True)
    ]
    assert one_by_one == pytest.approx(chosen[:4], abs=1e-5)


def test_a_pair_with_identical_replies_is_one_line_and_nothing_is_written(
    tiny_causal_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = preference_rows(6)
    rows[3]["rejected"] = rows[3]["chosen"]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "rm"
    args = ["--model", f"hf:{tiny_causal_lm}", "--data", str(data), "--out", str(out)]
    assert main(["finetune", *args, "--method", "reward", "--max-steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pairs.jsonl:4" in err and "rejected" in err
    assert not out.exists()


def test_instruction_data_is_refused_for_a_reward_model(
    tiny_causal_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "sft.jsonl", [{"instruction": "a", "output": "b"}] * 4)
    args = ["--model", f"hf:{tiny_causal_lm}", "--data", str(data), "--out", str(tmp_path / "o")]
    assert main(["finetune", *args, "--method", "reward"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs preference pairs" in err


def test_the_cli_trains_one_and_says_how_to_use_it_as_a_reward(
    tiny_causal_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(12))
    out = tmp_path / "rm"
    args = ["--model", f"hf:{tiny_causal_lm}", "--data", str(data), "--out", str(out)]
    assert main(["finetune", *args, "--method", "reward", "--max-steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "Preference accuracy on validation pairs" in printed
    assert f"--best-of 4 --reward hf:{out / 'model'}" in " ".join(printed.split())
