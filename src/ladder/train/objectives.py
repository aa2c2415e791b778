"""What the loop minimises, per model family, and the batch transforms that feed it.

- :class:`NextTokenObjective`: causal LM (decoders; also supervised fine-tuning).
- :class:`MaskedLMObjective` with :func:`mask_tokens`: BERT's masked LM (Devlin et al. 2019):
  15% of the positions are chosen; of those 80% become the mask token, 10% a random token
  and 10% stay as they were; the model predicts the original token at every chosen position.
- :class:`SpanCorruptionObjective` with :func:`corrupt_spans`: T5's span corruption
  (Raffel et al. 2020, sec. 3.1.4): 15% of the tokens, in spans of mean length 3, are each
  replaced by one sentinel in the encoder input; the decoder writes the sentinels followed
  by the tokens they hide.

The transforms run on windows of token ids and draw from a ``torch.Generator`` only, so
:class:`Transformed` batches are the same on every iteration for a seed: that is what lets
a resumed run skip exactly the batches it had consumed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from ladder.train.loss import IGNORE_INDEX, count_targets, next_token_loss

__all__ = [
    "Batch",
    "MaskedLMObjective",
    "NextTokenObjective",
    "Objective",
    "SpanCorruptionObjective",
    "Transform",
    "Transformed",
    "ValidationMetric",
    "aligned_token_loss",
    "corrupt_spans",
    "mask_tokens",
    "span_counts",
]

Batch = Mapping[str, torch.Tensor]
Transform = Callable[[Batch, torch.Generator], dict[str, torch.Tensor]]


class Objective(Protocol):
    """What the loop minimises: a loss *sum* over a batch and the units it averages over.

    The loop divides each micro-batch's sum by the units of the whole accumulation window
    (see :mod:`ladder.train.loss`), so any objective gets accumulation right for free.
    """

    def units(self, batch: Batch) -> torch.Tensor:
        """How many things the batch's loss averages over (target tokens, pairs ...)."""
        ...

    def loss_sum(
        self, model: torch.nn.Module, batch: Batch, forward_kwargs: Mapping[str, Any]
    ) -> torch.Tensor:
        """The summed loss of ``batch`` under ``model`` (a scalar with gradient)."""
        ...


@runtime_checkable
class ValidationMetric(Protocol):
    """An objective that reports its own validation figure besides the loss (a capability:
    ``finetune()`` asks ``isinstance(objective, ValidationMetric)``).

    Attributes:
        validation_metric: the figure's name in results and reports, saying what it is
            (``preference_accuracy`` for a reward model, ``mean_reward`` for GRPO).
    """

    validation_metric: str

    def validation_value(self, model: torch.nn.Module, items: Any, pad_id: int) -> float:
        """The figure on the validation items (encoded records or pairs) after training."""
        ...


class NextTokenObjective:
    """Next-token cross-entropy on the target tokens (``labels`` != -100)."""

    def units(self, batch: Batch) -> torch.Tensor:
        """Number of target tokens."""
        return count_targets(_labels(batch))

    def loss_sum(
        self, model: torch.nn.Module, batch: Batch, forward_kwargs: Mapping[str, Any]
    ) -> torch.Tensor:
        """Summed next-token cross-entropy of the batch."""
        logits = model(
            input_ids=batch["input_ids"],
            attention_mask=batch.get("attention_mask"),
            **forward_kwargs,
        ).logits  # (B, T, V)
        return next_token_loss(logits, _labels(batch))


class MaskedLMObjective:
    """Cross-entropy at the masked positions (``labels`` != -100, not shifted)."""

    def units(self, batch: Batch) -> torch.Tensor:
        """Number of masked positions."""
        return (batch["labels"] != IGNORE_INDEX).sum()

    def loss_sum(
        self, model: torch.nn.Module, batch: Batch, forward_kwargs: Mapping[str, Any]
    ) -> torch.Tensor:
        """Summed cross-entropy of the original tokens at the masked positions."""
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")
        ).logits  # (B, T, V)
        return aligned_token_loss(logits, batch["labels"])


class SpanCorruptionObjective:
    """Cross-entropy of the decoder's targets (sentinels and the spans they hide)."""

    def units(self, batch: Batch) -> torch.Tensor:
        """Number of target tokens."""
        return (batch["labels"] != IGNORE_INDEX).sum()

    def loss_sum(
        self, model: torch.nn.Module, batch: Batch, forward_kwargs: Mapping[str, Any]
    ) -> torch.Tensor:
        """Summed cross-entropy of the targets, teacher-forced."""
        logits = model(
            input_ids=batch["input_ids"],
            decoder_input_ids=batch["decoder_input_ids"],
            **forward_kwargs,
        ).logits  # (B, T_dec, V)
        return aligned_token_loss(logits, batch["labels"])


def aligned_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of cross-entropies where position t predicts ``labels[t]`` (no shift); fp32."""
    vocab = logits.size(-1)
    return F.cross_entropy(
        logits.float().reshape(-1, vocab),
        labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


# --- masked LM -------------------------------------------------------------------------


def mask_tokens(
    input_ids: torch.Tensor,
    generator: torch.Generator,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int] = (),
    probability: float = 0.15,
) -> dict[str, torch.Tensor]:
    """BERT's masking of (B, T) ids: ``input_ids`` corrupted and ``labels`` (-100 elsewhere).

    Each position not holding a special token is chosen with ``probability``; a chosen
    position becomes ``mask_id`` with probability 0.8, a uniformly random id with 0.1, and
    keeps its token with 0.1 (Devlin et al. 2019, sec. 3.1).
    """
    ids = input_ids.clone()
    shape = ids.shape
    special = torch.isin(ids, torch.tensor(list(special_ids), dtype=ids.dtype))
    chosen = (torch.rand(shape, generator=generator) < probability) & ~special
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    action = torch.rand(shape, generator=generator)  # < 0.8 mask, < 0.9 random, else keep
    random_ids = torch.randint(vocab_size, shape, generator=generator, dtype=ids.dtype)
    ids = torch.where(chosen & (action < 0.8), torch.full_like(ids, mask_id), ids)
    ids = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, ids)
    return {"input_ids": ids, "labels": labels}


# --- span corruption -------------------------------------------------------------------


def span_counts(
    length: int, noise_density: float = 0.15, mean_span: float = 3.0
) -> tuple[int, int]:
    """(noise tokens, noise spans) of a window of ``length`` tokens, as T5 rounds them."""
    noise = min(max(round(length * noise_density), 1), length - 1)
    return noise, max(round(noise / mean_span), 1)


def _segment(items: int, segments: int, generator: torch.Generator) -> list[int]:
    """``items`` split into ``segments`` positive lengths, uniformly at random."""
    cuts = torch.randperm(items - 1, generator=generator)[: segments - 1].add(1).sort().values
    bounds = [0, *cuts.tolist(), items]
    return [b - a for a, b in itertools.pairwise(bounds)]


def corrupt_spans(
    input_ids: torch.Tensor,
    generator: torch.Generator,
    *,
    sentinel_ids: Sequence[int],
    eos_id: int,
    decoder_start_id: int,
    noise_density: float = 0.15,
    mean_span: float = 3.0,
) -> dict[str, torch.Tensor]:
    """T5 span corruption of (B, L) windows: encoder ``input_ids``, ``labels`` and
    ``decoder_input_ids`` (the labels shifted right behind ``decoder_start_id``).

    Each row alternates kept and noise spans, starting with a kept one; the noise tokens
    and the number of spans are fixed by ``L`` (:func:`span_counts`), their lengths random.
    The input is the kept tokens with one sentinel per noise span, then EOS; the target is
    each sentinel followed by the span it replaced, then EOS. Every row has the same
    lengths, so nothing is padded.
    """
    rows, length = input_ids.shape
    noise, spans = span_counts(length, noise_density, mean_span)
    if spans > len(sentinel_ids):
        raise ValueError(
            f"{spans} noise spans need {spans} sentinel tokens, got {len(sentinel_ids)}"
        )
    inputs, targets = [], []
    for row in input_ids.tolist():
        noise_lengths = _segment(noise, spans, generator)
        keep_lengths = _segment(length - noise, spans, generator)
        source, target, at = [], [], 0
        for i, (keep, drop) in enumerate(zip(keep_lengths, noise_lengths, strict=True)):
            source += [*row[at : at + keep], sentinel_ids[i]]
            target += [sentinel_ids[i], *row[at + keep : at + keep + drop]]
            at += keep + drop
        inputs.append([*source, eos_id])
        targets.append([*target, eos_id])
    labels = torch.tensor(targets, dtype=torch.long)  # (B, noise + spans + 1)
    start = torch.full((rows, 1), decoder_start_id, dtype=torch.long)
    return {
        "input_ids": torch.tensor(inputs, dtype=torch.long),  # (B, L - noise + spans + 1)
        "labels": labels,
        "decoder_input_ids": torch.cat([start, labels[:, :-1]], dim=1),
    }


class Transformed:
    """Batches with a seeded transform applied; the same sequence on every iteration.

    Args:
        batches: re-iterable batches of ``input_ids`` windows (e.g. ``PackedBatches``).
        transform: ``(batch, generator) -> batch``, drawing only from the generator.
        seed: seeds a fresh generator each time iteration starts.
    """

    def __init__(self, batches: Iterable[Batch], transform: Transform, seed: int) -> None:
        self.batches = batches
        self.transform = transform
        self.seed = seed

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed)
        for batch in self.batches:
            yield self.transform(batch, generator)


def _labels(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    labels = batch.get("labels")
    return batch["input_ids"] if labels is None else labels
