"""GRPO's arithmetic against TRL's own code, and GRPO learning through the one loop.

The agreement test calls ``trl.GRPOTrainer._compute_loss`` (TRL 1.16, the dev extra) on the
same fixed tensors as :func:`ladder.train.grpo_loss.grpo_sequence_loss`: sampled answers,
advantages, old and reference log-probabilities all fixed. TRL settings matched:
``loss_type="grpo"`` (token mean per answer, then mean over answers), ``beta=0.04``,
``epsilon=0.2`` (= ``epsilon_high``), ``importance_sampling_level="token"``, no entropy or
off-policy masks, no vLLM correction, one accumulation step. The stand-in ``self`` gives
TRL's method only those settings and our per-token log-probabilities (TRL's own
log-probability helper needs its patched, fused LM head).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ladder.data.formats import encode_examples, parse_records
from ladder.train.batches import TrainBatches
from ladder.train.config import TrainConfig
from ladder.train.grpo_loss import (
    GRPOObjective,
    completion_mask,
    group_advantages,
    grpo_sequence_loss,
    token_logps,
)


def _tiny(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(path)


def test_group_advantages_match_trl_normalisation() -> None:
    from trl.trainer.utils import nanstd

    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 2.0, 2.0, 2.0, 2.0])  # 2 groups of 4
    grouped = rewards.view(-1, 4)
    mean = grouped.mean(1).repeat_interleave(4)
    std = nanstd(grouped, dim=1).repeat_interleave(4)
    expected = (rewards - mean) / (std + 1e-4)  # TRL, scale_rewards="group"
    got = group_advantages(rewards, 4)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert got[4:].abs().max() == 0.0  # a group with equal rewards teaches nothing


def test_completion_mask_stops_after_first_eos() -> None:
    ids = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8]])
    assert completion_mask(ids, 2).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]


@pytest.mark.parametrize("beta", [0.04, 0.0])
def test_loss_agrees_with_trl_compute_loss(tiny_causal_lm: Path, beta: float) -> None:
    from accelerate import Accelerator
    from trl import GRPOTrainer

    model, _ = _tiny(tiny_causal_lm)
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    prompt = torch.randint(3, vocab, (4, 5), generator=g)  # fixed "sampled" batch
    answers = torch.randint(3, vocab, (4, 6), generator=g)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 6, [1] * 2 + [0] * 4])
    ids = torch.cat([prompt, answers], 1)
    attention = torch.cat([torch.ones_like(prompt), mask], 1)
    with torch.no_grad():
        now = token_logps(model, ids, attention, 6)
    # Old and reference policies a little off the current one, so clipping and KL both act.
    old = now + 0.3 * torch.randn(now.shape, generator=g)
    ref = now + 0.2 * torch.randn(now.shape, generator=g)
    advantages = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), 4)

    ours = grpo_sequence_loss(
        token_logps(model, ids, attention, 6), old, ref, advantages, mask, beta=beta
    ).mean()
    ours.backward()
    ours_grad = model.model.embed_tokens.weight.grad.clone()
    model.zero_grad()

    def per_token(_model, input_ids, attention_mask, keep, **_kw):
        return token_logps(_model, input_ids, attention_mask, keep), torch.zeros(4, keep), None

    trainer = SimpleNamespace(
        _get_per_token_logps_and_entropies=per_token, top_entropy_quantile=1.0,
        aux_loss_enabled=False, off_policy_mask_threshold=None,
        importance_sampling_level="token", beta=beta, loss_type="grpo", epsilon_low=0.2,
        epsilon_high=0.2, use_vllm=False, model=model, current_gradient_accumulation_steps=1,
        _entropy_bonus_enabled=False, accelerator=Accelerator(cpu=True),
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    )  # fmt: skip
    inputs = {
        "prompt_ids": prompt, "prompt_mask": torch.ones_like(prompt), "completion_ids": answers,
        "completion_mask": mask, "advantages": advantages, "old_per_token_logps": old,
        "ref_per_token_logps": ref,
    }  # fmt: skip
    theirs = GRPOTrainer._compute_loss(trainer, model, inputs)
    theirs.backward()
    assert abs(ours.item() - theirs.item()) < 1e-5
    torch.testing.assert_close(ours_grad, model.model.embed_tokens.weight.grad, atol=1e-5, rtol=0)


class _WordReward:
    """1 for each answer that spells ``word``: a verifiable reward for the learning test."""

    def __init__(self, word: str) -> None:
        self.word = word

    def score(self, prompts, answers, references=None) -> list[float]:
        return [float(self.word in a) for a in answers]


@pytest.mark.slow  # ~30 s on a loaded 2-core machine
def test_grpo_raises_the_reward_through_the_one_loop(tiny_causal_lm: Path, tmp_path: Path) -> None:
    """A few GRPO steps of LoRA adapters make a rewarded word more frequent in samples."""
    from ladder.train.finetune_config import LoraSettings
    from ladder.train.loop import train
    from ladder.train.methods.lora import add_lora

    torch.manual_seed(0)
    model, tokenizer = _tiny(tiny_causal_lm)
    records = [{"instruction": "the cat sat on the", "output": "mat ."}] * 4
    encoded = encode_examples(tokenizer, parse_records(_rows(records), "alpaca"), 64)
    model = add_lora(model, LoraSettings(rank=4, alpha=8, target_modules="all-linear"), tmp_path)
    objective = GRPOObjective(
        _WordReward("bird"), tokenizer, group_size=8, beta=0.04, max_new_tokens=6, seed=1
    )
    batches = TrainBatches(encoded, batch_size=2, pad_id=0, seed=0)

    def reward_rate(calls: int) -> float:
        rewards = []
        for batch in itertools.islice(batches, calls):
            with torch.no_grad():
                objective.loss_sum(model, batch, {})
            rewards += objective.last_rewards
        return sum(rewards) / len(rewards)

    before = reward_rate(2)
    config = TrainConfig(max_steps=8, batch_size=2, lr=3e-2, warmup_steps=0, log_every=5,
                         save_every=100, eval_every=100, seed=0)  # fmt: skip
    result = train(model, batches, None, config, tmp_path / "run", progress=False,
                   objective=objective)  # fmt: skip
    after = reward_rate(2)
    print("GRPO-RATES", before, after, result.train_losses)
    assert result.steps == 8
    # Measured: 0.09 before, 0.53 after (15 steps: 1.0); the margin is for BLAS differences.
    assert after > before + 0.25, (before, after)


def _rows(records: list[dict[str, str]]):
    from ladder.data.io import Record

    return [Record(dict(r), "mem.jsonl", i + 1) for i, r in enumerate(records)]
