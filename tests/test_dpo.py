"""DPO (Rafailov et al. 2023): the loss as a pure function, and a run through the one loop."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from _finetune_data import preference_rows, write_jsonl
from ladder.data.formats import Encoded
from ladder.train.finetune import finetune
from ladder.train.finetune_config import FinetuneConfig
from ladder.train.preference import DPOObjective, dpo_loss, reference_logps, sequence_logps


def test_dpo_loss_values() -> None:
    zero = torch.zeros(3)
    # Policy equal to the reference: no preference yet, loss log 2 for every pair.
    assert torch.allclose(dpo_loss(zero, zero, zero, zero, beta=0.1), torch.full((3,), math.log(2)))
    chosen, rejected = torch.tensor([-1.0]), torch.tensor([-3.0])
    ref_c, ref_r = torch.tensor([-2.0]), torch.tensor([-2.0])
    # margin = (-1 + 2) - (-3 + 2) = 2; loss = -log sigmoid(0.5 * 2) = log(1 + e^-1)
    expected = math.log1p(math.exp(-1.0))
    assert dpo_loss(chosen, rejected, ref_c, ref_r, beta=0.5).item() == pytest.approx(expected)
    # Preferring the rejected reply costs more than preferring the chosen one.
    assert dpo_loss(rejected, chosen, ref_c, ref_r, beta=0.5).item() > expected


def test_sequence_logps_sums_target_tokens_only() -> None:
    logits = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[-100, -100, 3, 1], [-100, 2, -100, -100]])
    logp = torch.log_softmax(logits, dim=-1)
    expected = torch.stack([logp[0, 1, 3] + logp[0, 2, 1], logp[1, 0, 2]])
    assert torch.allclose(sequence_logps(logits, labels), expected)


def test_objective_sums_pairs_and_counts_them() -> None:
    class Fixed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.logits = torch.nn.Parameter(torch.zeros(4, 3, 5))

        def forward(self, **_: object) -> object:
            return type("Out", (), {"logits": self.logits})()

    batch = {
        "input_ids": torch.zeros(4, 3, dtype=torch.long),
        "attention_mask": torch.ones(4, 3, dtype=torch.long),
        "labels": torch.tensor([[-100, 1, 2]] * 4),
        "ref_logps": torch.full((4,), 2 * math.log(1 / 5)),  # the uniform model's own
    }
    objective = DPOObjective(beta=0.1)
    assert objective.units(batch).item() == 2
    assert objective.loss_sum(Fixed(), batch, {}).item() == pytest.approx(2 * math.log(2))


class _Bigram(torch.nn.Module):
    """Next-token logits from the current token alone, so padding never changes a row."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.table = torch.nn.Embedding(7, 7)

    def forward(self, input_ids: torch.Tensor, **_: object) -> object:
        return type("Out", (), {"logits": self.table(input_ids)})()


def test_reference_logps_are_each_replys_own_in_any_batch_size() -> None:
    def reply(ids: list[int], prompt: int) -> Encoded:
        return Encoded(ids, [-100] * prompt + ids[prompt:])

    pairs = [
        (reply([1, 2, 3, 4], 2), reply([1, 2, 5], 2)),
        (reply([6, 1], 1), reply([6, 3, 3, 2, 1], 1)),
        (reply([2, 2, 2], 1), reply([4, 5], 1)),
    ]
    model = _Bigram().train()
    got = reference_logps(model, pairs, pad_id=0, batch_size=2)  # (N, 2)
    assert model.training  # the caller's mode is given back
    for row, pair in zip(got, pairs, strict=True):
        for value, one in zip(row, pair, strict=True):
            ids = torch.tensor([one.input_ids])
            alone = sequence_logps(model(input_ids=ids).logits, torch.tensor([one.labels]))
            assert value.item() == pytest.approx(alone.item(), abs=1e-6)
    assert torch.equal(got, reference_logps(model, pairs, pad_id=0, batch_size=3))


@pytest.mark.parametrize("weights", ["lora", "full"])
def test_dpo_learns_the_preferred_replies(
    tiny_causal_lm: Path, tmp_path: Path, weights: str
) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(60))
    cfg = FinetuneConfig(
        model=f"hf:{tiny_causal_lm}",
        data=str(data),
        method="dpo",
        out=str(tmp_path / "out"),
        dpo={"beta": 0.1, "weights": weights},
        train={"max_steps": 20, "lr": 3e-3 if weights == "full" else 1e-2, "warmup_steps": 2,
               "eval_every": 10, "save_every": 20},
    )  # fmt: skip
    result = finetune(cfg, progress=False)
    assert result.base_eval is not None and result.final_eval is not None
    # Before training the policy is the reference: exactly log 2 per pair.
    assert result.base_eval.loss == pytest.approx(math.log(2), abs=1e-5)
    assert result.final_eval.loss < 0.45  # measured: lora 0.08, full 0.0003
    assert result.preference_accuracy is not None and result.preference_accuracy >= 0.9
    assert (result.model_dir / "model.safetensors").is_file()  # type: ignore[operator]
    assert (result.adapter_dir is not None) == (weights == "lora")
