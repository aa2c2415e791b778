"""Pretraining objectives: BERT masking (15%, 80/10/10) and T5 span corruption, seeded."""

from __future__ import annotations

import itertools

import pytest
import torch

from ladder.train.loss import IGNORE_INDEX
from ladder.train.objectives import (
    MaskedLMObjective,
    SpanCorruptionObjective,
    Transformed,
    aligned_token_loss,
    corrupt_spans,
    mask_tokens,
    span_counts,
)

MASK, VOCAB, SPECIALS = 99, 100, (0, 1, 2)


def _windows(rows: int, length: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB - 1, (rows, length), generator=generator)


# --- masked LM --------------------------------------------------------------------------


def test_masking_rates_follow_devlin_et_al() -> None:
    ids = _windows(200, 500)
    ids[:, ::10] = 1  # every tenth position a special token (BOS): never chosen
    out = mask_tokens(ids, torch.Generator().manual_seed(0), mask_id=MASK, vocab_size=VOCAB,
                      special_ids=SPECIALS)  # fmt: skip
    chosen = out["labels"] != IGNORE_INDEX
    eligible = ids != 1
    assert not chosen[~eligible].any()
    assert chosen.sum() / eligible.sum() == pytest.approx(0.15, abs=0.005)
    assert torch.equal(out["labels"][chosen], ids[chosen])  # the originals are the targets
    masked = (out["input_ids"] == MASK) & chosen
    unchanged = (out["input_ids"] == ids) & chosen
    replaced = chosen & ~masked & ~unchanged
    n = chosen.sum().item()
    assert masked.sum().item() / n == pytest.approx(0.80, abs=0.01)
    # 10% keep their token, plus the random draws that happen to hit it (1 in 100).
    assert unchanged.sum().item() / n == pytest.approx(0.10 + 0.10 / VOCAB, abs=0.01)
    assert replaced.sum().item() / n == pytest.approx(0.10 - 0.10 / VOCAB, abs=0.01)
    assert torch.equal(out["input_ids"][~chosen], ids[~chosen])  # the rest is untouched


def test_masking_is_seeded() -> None:
    ids = _windows(4, 64)

    def run(seed: int) -> dict[str, torch.Tensor]:
        return mask_tokens(ids, torch.Generator().manual_seed(seed), mask_id=MASK,
                           vocab_size=VOCAB)  # fmt: skip

    a, b, c = run(3), run(3), run(4)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    assert not torch.equal(a["labels"], c["labels"])


def test_masked_lm_loss_counts_only_masked_positions() -> None:
    logits = torch.randn(2, 5, VOCAB)
    labels = torch.full((2, 5), IGNORE_INDEX)
    labels[0, 1], labels[1, 4] = 7, 9
    expected = -(logits[0, 1].log_softmax(-1)[7] + logits[1, 4].log_softmax(-1)[9])
    assert aligned_token_loss(logits, labels).item() == pytest.approx(expected.item(), rel=1e-5)
    assert MaskedLMObjective().units({"input_ids": labels, "labels": labels}).item() == 2


# --- span corruption --------------------------------------------------------------------


@pytest.mark.parametrize(("length", "noise", "spans"), [(128, 19, 6), (256, 38, 13), (32, 5, 2)])
def test_span_counts_as_t5_rounds_them(length: int, noise: int, spans: int) -> None:
    assert span_counts(length) == (noise, spans)


def _rebuild(source: list[int], target: list[int], sentinels: list[int]) -> list[int]:
    """Undo span corruption: put each sentinel's span back where the sentinel is."""
    spans: dict[int, list[int]] = {}
    current = None
    for token in target[:-1]:  # the last one is EOS
        if token in sentinels:
            current = token
            spans[current] = []
        else:
            spans[current].append(token)  # type: ignore[index]
    return [t for token in source[:-1] for t in (spans[token] if token in sentinels else [token])]


def test_span_corruption_hides_spans_behind_sentinels() -> None:
    ids = _windows(8, 128)
    sentinels = list(range(200, 210))
    out = corrupt_spans(ids, torch.Generator().manual_seed(0), sentinel_ids=sentinels,
                        eos_id=2, decoder_start_id=0)  # fmt: skip
    noise, spans = span_counts(128)
    assert out["input_ids"].shape == (8, 128 - noise + spans + 1)
    assert out["labels"].shape == (8, noise + spans + 1)
    assert torch.equal(out["decoder_input_ids"][:, 0], torch.zeros(8, dtype=torch.long))
    assert torch.equal(out["decoder_input_ids"][:, 1:], out["labels"][:, :-1])
    for row in range(8):
        source, target = out["input_ids"][row].tolist(), out["labels"][row].tolist()
        assert source[-1] == 2 and target[-1] == 2
        assert [t for t in source if t in sentinels] == sentinels[:spans]  # in order, once each
        assert target[0] == sentinels[0]  # the target starts with the first sentinel
        assert _rebuild(source, target, sentinels) == ids[row].tolist()
    # Span positions differ between rows, and the mean span length is about 3.
    assert len({tuple(r) for r in out["labels"].tolist()}) == 8
    assert noise / spans == pytest.approx(3.0, abs=0.2)


def test_span_corruption_needs_enough_sentinels() -> None:
    with pytest.raises(ValueError, match="6 noise spans need 6 sentinel tokens"):
        corrupt_spans(_windows(1, 128), torch.Generator(), sentinel_ids=[5, 6], eos_id=2,
                      decoder_start_id=0)  # fmt: skip


def test_span_corruption_loss_is_summed_over_targets() -> None:
    labels = torch.tensor([[5, 6, 2]])
    assert SpanCorruptionObjective().units({"labels": labels}).item() == 3


# --- transformed batches ----------------------------------------------------------------


def test_transformed_batches_repeat_exactly() -> None:
    windows = [{"input_ids": _windows(2, 32, seed)} for seed in range(3)]

    def transform(batch: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
        return mask_tokens(batch["input_ids"], gen, mask_id=MASK, vocab_size=VOCAB)

    batches = Transformed(windows, transform, seed=7)
    first = [b["input_ids"] for b in batches]
    again = [b["input_ids"] for b in itertools.islice(batches, 3)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    # Each batch gets fresh noise: the same window masked twice in a row differs.
    same = Transformed([windows[0], windows[0]], transform, seed=7)
    one, two = (b["labels"] for b in same)
    assert not torch.equal(one, two)
