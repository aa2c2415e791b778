"""GRPO (Shao et al. 2024, DeepSeekMath, sec. 4.1) as an objective of the one training loop.

For each prompt q the current policy samples a group of G answers o_1..o_G, a reward
scores each, and every token of answer i gets the group-normalised advantage

    A_i = (r_i - mean(r)) / (std(r) + eps)

The objective per answer is the mean over its tokens t of

    min(ρ_t A_i, clip(ρ_t, 1 - ε, 1 + ε) A_i) - β KL_t,   ρ_t = π(o_t|q,o_<t) / π_old(o_t|...)
    KL_t = π_ref/π - log(π_ref/π) - 1                      (the k3 estimator, the paper's eq. 4)

and the loss is its negative, averaged over the answers. Here each group is sampled and used
for one update (μ = 1 in the paper's algorithm 1), so π_old is the policy itself, detached:
ρ_t is 1 in value and carries the policy gradient. The reference π_ref is the model with
its LoRA adapters switched off (they start at zero, so that is the model before GRPO).

The arithmetic (:func:`group_advantages`, :func:`grpo_sequence_loss`) is pure and matches
TRL's ``GRPOTrainer`` with ``loss_type="grpo"``, ``scale_rewards="group"``,
``importance_sampling_level="token"``, ``num_iterations=1`` (tests/test_grpo_loss.py calls
TRL's own ``_compute_loss`` on the same tensors). :class:`GRPOObjective` samples, scores
and calls them; the loop never knows it is doing RL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import torch

from ladder.data.formats import IGNORE_INDEX

__all__ = [
    "ADVANTAGE_EPS",
    "GRPOObjective",
    "Scorer",
    "completion_mask",
    "group_advantages",
    "grpo_sequence_loss",
    "mean_reward",
    "token_logps",
]

# TRL's constant: keeps a group whose rewards are all equal at advantage 0, not 0/0.
ADVANTAGE_EPS = 1e-4


class Scorer(Protocol):
    """What GRPO needs of a reward (:class:`ladder.evaluate.reward.Reward` is one)."""

    def score(
        self, prompts: Sequence[Any], answers: Sequence[str], references: Sequence[Any] | None
    ) -> list[float]:
        """One reward per answer, higher is better."""
        ...


def group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(N·G,) rewards, G consecutive per prompt → (N·G,) group-normalised advantages.

    The standard deviation is the unbiased one (Bessel's correction), as TRL computes it.
    """
    grouped = rewards.float().view(-1, group_size)  # (N, G)
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(mean)
    return ((grouped - mean) / (std + ADVANTAGE_EPS)).view(-1)


def grpo_sequence_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
) -> torch.Tensor:
    """Per-answer GRPO loss: the token mean of the clipped surrogate plus β·KL (k3).

    Args:
        logps: (B, C) log-probabilities of the sampled answer tokens under the policy.
        old_logps: (B, C) the same under the policy that sampled them (no gradient).
        ref_logps: (B, C) the same under the reference; unused (may be None) when β is 0.
        advantages: (B,) one advantage per answer.
        mask: (B, C) 1 on answer tokens, 0 on padding.
        beta: weight of the KL penalty to the reference.
        epsilon_low: the ratio is clipped below at 1 - epsilon_low ...
        epsilon_high: ... and above at 1 + epsilon_high.

    Returns:
        (B,) losses; the objective's value is their mean.
    """
    ratio = torch.exp(logps - old_logps)  # (B, C)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    adv = advantages.unsqueeze(1)  # (B, 1)
    per_token = -torch.min(ratio * adv, clipped * adv)
    if beta != 0.0:
        assert ref_logps is not None, "beta > 0 needs the reference log-probabilities"
        delta = ref_logps - logps
        per_token = per_token + beta * (torch.exp(delta) - delta - 1)  # k3 ≥ 0
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


def token_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    answer_len: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """(B, answer_len) log-probabilities of the last ``answer_len`` tokens of each row, fp32,
    under logits / ``temperature`` (the distribution the answers were sampled from)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    # (B, C, V): position t predicts token t+1
    logits = logits[:, -answer_len - 1 : -1, :].float() / temperature
    targets = input_ids[:, -answer_len:]
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def completion_mask(completions: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """(B, C) 1 up to and including each row's first EOS, 0 after it."""
    if eos_id is None:
        return torch.ones_like(completions)
    is_eos = completions == eos_id
    after = (is_eos.cumsum(dim=1) - is_eos.long()) > 0  # strictly after the first EOS
    return (~after).long()


class GRPOObjective:
    """The loop's objective for GRPO on prompt batches (an SFT batch's unlabelled prefix).

    A batch is what :class:`ladder.train.batches.TrainBatches` yields for instruction data:
    each row's prompt is its tokens before the first label, and its reference (what a
    metric reward compares with) the labelled tokens, decoded.

    Args:
        reward: scores the sampled answers.
        tokenizer: decodes prompts, answers and references for the reward.
        group_size: answers sampled per prompt (G).
        beta: KL weight (the paper uses 0.04).
        epsilon: clipping range of the policy ratio.
        max_new_tokens: longest sampled answer.
        temperature: sampling temperature; the log-probabilities are of the same
            tempered distribution, as in TRL.
        seed: sampling seed; each call draws from ``seed`` plus its call number.

    Its validation figure is ``mean_reward``: the mean reward of one sampled group per
    validation prompt (:func:`mean_reward`).
    """

    validation_metric = "mean_reward"

    def __init__(
        self,
        reward: Scorer,
        tokenizer: Any,
        *,
        group_size: int = 4,
        beta: float = 0.04,
        epsilon: float = 0.2,
        max_new_tokens: int = 32,
        temperature: float = 1.0,
        seed: int = 0,
    ) -> None:
        if group_size < 2:
            raise ValueError("GRPO needs at least 2 answers per prompt to compare them")
        self.reward, self.tokenizer = reward, tokenizer
        self.group_size, self.beta, self.epsilon = group_size, beta, epsilon
        self.max_new_tokens, self.temperature, self.seed = max_new_tokens, temperature, seed
        self.calls = 0
        self.last_rewards: list[float] = []  # the latest batch's rewards, for reports

    def units(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Answers in the batch: G per prompt."""
        return torch.tensor(batch["input_ids"].size(0) * self.group_size)

    def loss_sum(
        self,
        model: torch.nn.Module,
        batch: Mapping[str, torch.Tensor],
        forward_kwargs: Mapping[str, Any],
    ) -> torch.Tensor:
        """Summed per-answer GRPO loss of G fresh answers to each of the batch's prompts."""
        self.calls += 1
        total = torch.zeros((), device=batch["input_ids"].device)
        self.last_rewards = []
        for row in range(batch["input_ids"].size(0)):
            prompt, reference = _split_row(batch, row)
            total = total + self._group_loss(model, prompt, reference, row).sum()
        return total

    def _group_loss(
        self, model: torch.nn.Module, prompt: torch.Tensor, reference: torch.Tensor, row: int
    ) -> torch.Tensor:
        """(G,) losses of one prompt's group."""
        answers, mask = self._sample(model, prompt, row)  # (G, C) each
        texts = self.tokenizer.batch_decode(answers * mask, skip_special_tokens=True)
        prompt_text = self.tokenizer.decode(prompt, skip_special_tokens=True)
        # The labelled tokens end with the chat template's turn separator (often a newline),
        # which is not part of the record's reference as the climb's metric reads it.
        ref_text = self.tokenizer.decode(reference, skip_special_tokens=True).strip()
        g = self.group_size
        rewards = self.reward.score([prompt_text] * g, texts, [ref_text] * g)
        self.last_rewards += rewards
        advantages = group_advantages(torch.tensor(rewards), g).to(prompt.device)
        ids = torch.cat([prompt.expand(g, -1), answers], dim=1)  # (G, P + C)
        attention = torch.cat([torch.ones_like(prompt).expand(g, -1), mask], dim=1)
        n, ref = answers.size(1), None
        if self.beta != 0.0:
            with torch.no_grad(), _adapters_off(model):
                ref = token_logps(model, ids, attention, n, self.temperature)
        logps = token_logps(model, ids, attention, n, self.temperature)
        return grpo_sequence_loss(
            logps, logps.detach(), ref, advantages, mask,
            beta=self.beta, epsilon_low=self.epsilon, epsilon_high=self.epsilon,
        )  # fmt: skip

    def validation_value(self, model: torch.nn.Module, items: Any, pad_id: int) -> float:
        """Mean reward of one sampled group per validation record."""
        return mean_reward(self, model, items, pad_id)

    @torch.no_grad()
    def _sample(
        self, model: torch.nn.Module, prompt: torch.Tensor, row: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """G answers to one (unpadded) prompt and their masks; seeded, in eval mode.

        A plain loop of forward passes rather than ``generate``: GRPO's answers are short,
        it draws from its own seeded generator (the caller's RNG is left alone), and it
        samples exactly the tempered distribution :func:`token_logps` scores.
        """
        was_training = model.training
        model.eval()
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        generator = torch.Generator(device=prompt.device)
        generator.manual_seed(self.seed + 1_000_003 * self.calls + row)
        ids = prompt.unsqueeze(0).expand(self.group_size, -1)  # (G, P)
        finished = torch.zeros(self.group_size, dtype=torch.bool, device=prompt.device)
        for _ in range(self.max_new_tokens):
            logits = model(input_ids=ids, use_cache=False).logits[:, -1, :].float()  # (G, V)
            probs = torch.softmax(logits / self.temperature, dim=-1)
            drawn = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (G,)
            drawn = torch.where(finished, torch.full_like(drawn, pad), drawn)
            ids = torch.cat([ids, drawn.unsqueeze(1)], dim=1)
            finished |= drawn == eos
            if bool(finished.all()):
                break
        model.train(was_training)
        answers = ids[:, prompt.size(0) :]
        return answers, completion_mask(answers, eos)


@torch.no_grad()
def mean_reward(objective: GRPOObjective, model: torch.nn.Module, items: Any, pad_id: int) -> float:
    """Mean reward of one sampled group per encoded record (e.g. the validation split)."""
    from ladder.train.batches import eval_batches

    device = next(model.parameters()).device
    rewards: list[float] = []
    for batch in eval_batches(items, batch_size=8, pad_id=pad_id):
        objective.loss_sum(model, {k: v.to(device) for k, v in batch.items()}, {})
        rewards += objective.last_rewards
    return sum(rewards) / len(rewards) if rewards else float("nan")


def _split_row(batch: Mapping[str, torch.Tensor], row: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One row's prompt ids (before the first label) and reference ids (the labelled ones)."""
    labels = batch["labels"][row]
    attended = batch["attention_mask"][row].bool()
    labelled = (labels != IGNORE_INDEX) & attended
    start = int(labelled.nonzero()[0]) if labelled.any() else int(attended.sum())
    return batch["input_ids"][row, :start], batch["input_ids"][row][labelled]


@contextlib.contextmanager
def _adapters_off(model: torch.nn.Module) -> Iterator[None]:
    """The reference policy: a PEFT model with its adapters disabled."""
    disable = getattr(model, "disable_adapter", None)
    if disable is None:  # full weights have no reference left to compare with
        raise ValueError("GRPO's KL penalty needs LoRA adapters (the base is the reference)")
    with disable():
        yield
