"""Padded batches of encoded sequences for the training loop, reproducible from a seed.

Training batches come from an endless stream of shuffled epochs (a new permutation per
epoch, drawn from ``seed + epoch``); iterating starts over from the seed, which is what
lets :func:`ladder.train.loop.train` resume by skipping the batches already consumed.

In a run of ``world`` processes every optimizer step consumes one *global* batch of
``batch_size x world`` sequences; process ``rank`` takes its own contiguous share. So
``world`` processes with ``batch_size`` B see exactly the sequences that one process with
batch size ``B x world`` sees, which is what makes the two runs reach the same loss.

:func:`score_pairs` runs a model over preference pairs in that same batch layout, for the
numbers computed once outside the loop (DPO's reference log-probs, a reward model's rewards).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch

from ladder.data.formats import IGNORE_INDEX, Encoded

__all__ = ["TrainBatches", "collate", "collate_pairs", "eval_batches", "score_pairs"]


def collate(rows: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad ``rows`` to the longest: ``input_ids``, ``attention_mask``, ``labels`` (B, T)."""
    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    for i, row in enumerate(rows):
        n = len(row.input_ids)
        ids[i, :n] = torch.tensor(row.input_ids)
        labels[i, :n] = torch.tensor(row.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def collate_pairs(
    pairs: Sequence[tuple[Encoded, Encoded]],
    pad_id: int,
    ref_logps: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Preference pairs as one batch: rows ``[chosen_0..chosen_B-1, rejected_0..]`` (2B, T).

    ``ref_logps`` (2B,), in the same row order, are the reference model's log-probabilities
    of each reply (see :mod:`ladder.train.preference`).
    """
    batch = collate([c for c, _ in pairs] + [r for _, r in pairs], pad_id)
    if ref_logps is not None:
        batch["ref_logps"] = ref_logps
    return batch


@torch.no_grad()
def score_pairs(
    model: torch.nn.Module,
    pairs: Sequence[tuple[Encoded, Encoded]],
    score: Callable[[torch.nn.Module, Mapping[str, torch.Tensor]], torch.Tensor],
    *,
    pad_id: int,
    batch_size: int = 8,
) -> torch.Tensor:
    """One number per reply of every pair, computed in eval mode without gradients.

    Args:
        model: the model ``score`` runs; its training mode is restored afterwards.
        pairs: (chosen, rejected) encoded replies.
        score: maps ``model`` and a :func:`collate_pairs` batch (on the model's device) to
            (2B,) numbers, chosen rows first.
        pad_id: padding token id.
        batch_size: pairs per forward pass.

    Returns:
        (N, 2) fp32 numbers on the CPU: column 0 the chosen reply's, 1 the rejected one's.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows: list[torch.Tensor] = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        batch = {k: v.to(device) for k, v in collate_pairs(chunk, pad_id).items()}
        values = score(model, batch).float().cpu()  # (2n,)
        rows.append(torch.stack([values[: len(chunk)], values[len(chunk) :]], dim=1))
    model.train(was_training)
    return torch.cat(rows)  # (N, 2)


class TrainBatches:
    """Endless seeded epochs of padded micro-batches, sharded over ``world`` processes."""

    def __init__(
        self,
        items: Sequence[Encoded] | Sequence[tuple[Encoded, Encoded]],
        *,
        batch_size: int,
        pad_id: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        ref_logps: torch.Tensor | None = None,
    ) -> None:
        """Batches of ``batch_size`` items (sequences, or preference pairs).

        Args:
            items: encoded sequences, or (chosen, rejected) pairs.
            batch_size: items per micro-batch on this process.
            pad_id: padding token id.
            seed: the shuffle seed; the same seed gives the same batches.
            rank: this process's index.
            world: number of processes.
            ref_logps: for pairs, (N, 2) reference log-probs (chosen, rejected) per pair.
        """
        if not items:
            raise ValueError("no training items")
        self.items = list(items)
        self.batch_size = batch_size
        self.pad_id = pad_id
        self.seed = seed
        self.rank = rank
        self.world = world
        self.ref_logps = ref_logps

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        share = self.batch_size
        for global_rows in _chunks(self._index_stream(), share * self.world):
            mine = global_rows[self.rank * share : (self.rank + 1) * share]
            yield self._batch(mine)

    def _index_stream(self) -> Iterator[int]:
        epoch = 0
        while True:
            order = list(range(len(self.items)))
            random.Random(self.seed + epoch).shuffle(order)
            yield from order
            epoch += 1

    def _batch(self, rows: list[int]) -> dict[str, torch.Tensor]:
        picked = [self.items[i] for i in rows]
        if isinstance(picked[0], Encoded):
            return collate(picked, self.pad_id)  # type: ignore[arg-type]
        ref = None
        if self.ref_logps is not None:
            sel = self.ref_logps[rows]  # (B, 2)
            ref = torch.cat([sel[:, 0], sel[:, 1]])  # (2B,) chosen rows first
        return collate_pairs(picked, self.pad_id, ref)  # type: ignore[arg-type]


def eval_batches(
    items: Sequence[Encoded] | Sequence[tuple[Encoded, Encoded]],
    *,
    batch_size: int,
    pad_id: int,
    ref_logps: torch.Tensor | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Validation batches in file order: a fixed evaluation set, the same on every process."""
    out = []
    for start in range(0, len(items), batch_size):
        rows = list(range(start, min(start + batch_size, len(items))))
        picked = [items[i] for i in rows]
        if isinstance(picked[0], Encoded):
            out.append(collate(picked, pad_id))  # type: ignore[arg-type]
        else:
            ref = None
            if ref_logps is not None:
                sel = ref_logps[rows]
                ref = torch.cat([sel[:, 0], sel[:, 1]])
            out.append(collate_pairs(picked, pad_id, ref))  # type: ignore[arg-type]
    return out


def _chunks(stream: Iterator[int], size: int) -> Iterator[list[int]]:
    while True:
        yield [next(stream) for _ in range(size)]
