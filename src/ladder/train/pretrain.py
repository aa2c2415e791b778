"""Pretraining data: documents → one token stream → random windows (nanoGPT's ``get_batch``).

Documents are tokenized with their BOS/EOS markers and concatenated; a training batch is
``batch_size`` windows of ``seq_len`` tokens starting at random offsets. Windows cross
document boundaries; the BOS/EOS markers tell the model where one ends.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch

from ladder.data.tokenizer import encode_texts

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from ladder.data.corpus import Document


def token_stream(tokenizer: PreTrainedTokenizerFast, documents: Sequence[Document]) -> torch.Tensor:
    """All documents, rendered and tokenized, concatenated into one (N,) int64 tensor."""
    ids = encode_texts(tokenizer, [doc.render() for doc in documents])
    return torch.tensor([token for doc in ids for token in doc], dtype=torch.long)


class PackedBatches:
    """Endless batches of random windows of a token stream, reproducible from a seed.

    Iterating starts over from the seed each time, so the sequence is the same on every
    pass; that is what lets :func:`ladder.train.loop.train` resume by skipping batches.
    The global RNG is not used.
    """

    def __init__(self, tokens: torch.Tensor, *, seq_len: int, batch_size: int, seed: int) -> None:
        """Sample windows of ``seq_len`` tokens from ``tokens`` (N,), ``batch_size`` at a time."""
        if tokens.numel() <= seq_len:
            raise ValueError(f"{tokens.numel()} tokens cannot fill one window of {seq_len}")
        self.tokens = tokens
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed)
        offsets = torch.arange(self.seq_len)  # (T,)
        while True:
            starts = torch.randint(
                self.tokens.numel() - self.seq_len, (self.batch_size, 1), generator=generator
            )  # (B, 1)
            yield {"input_ids": self.tokens[starts + offsets]}  # (B, T)


def eval_windows(
    tokens: torch.Tensor, *, seq_len: int, batch_size: int, max_batches: int
) -> list[dict[str, torch.Tensor]]:
    """Consecutive non-overlapping windows from the start of ``tokens``: a fixed eval set."""
    n_windows = min(tokens.numel() // seq_len, batch_size * max_batches)
    if n_windows == 0:
        raise ValueError(f"{tokens.numel()} validation tokens cannot fill a window of {seq_len}")
    windows = tokens[: n_windows * seq_len].view(n_windows, seq_len)  # (W, T)
    return [{"input_ids": chunk} for chunk in windows.split(batch_size)]
