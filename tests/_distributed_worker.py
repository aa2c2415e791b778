"""One process of the data-parallel equivalence test (tests/test_distributed.py).

Run as a plain script (one process) or under torchrun (several). Every process builds the
same tiny random Llama and the same global batches; rank r trains on its contiguous share of
each global batch through :func:`ladder.train.loop.train`. Rank 0 writes ``result.json``
(per-step training losses, the final validation loss) and ``weights.pt`` into ``--out``.

Rows have different lengths (right padding, ``labels = -100`` on the padding), so the ranks
see different numbers of target tokens: a loop that averaged per-process means would drift
from the single-process run; the loop's global normaliser must not.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ladder.train.config import TrainConfig
from ladder.train.loop import train

VOCAB, SEQ = 96, 24


def _global_batches(count: int, rows: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """``count`` global batches of ``rows`` right-padded sequences of random lengths.

    Each row counts up from a random start by a random stride (mod the vocabulary), a
    pattern the model learns within a few steps, so the loss moves and the runs are compared
    along a real trajectory, not at a plateau.
    """
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        start = torch.randint(0, VOCAB - 1, (rows, 1), generator=gen)
        stride = torch.randint(1, 4, (rows, 1), generator=gen)
        ids = (start + stride * torch.arange(SEQ)[None, :]) % (VOCAB - 1) + 1
        lengths = torch.randint(SEQ // 3, SEQ + 1, (rows,), generator=gen)
        mask = (torch.arange(SEQ)[None, :] < lengths[:, None]).long()
        ids = ids * mask  # pad id 0
        labels = ids.masked_fill(mask == 0, -100)
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return batches


def _micro_batches(
    batch: dict[str, torch.Tensor], rank: int, world: int, accum: int
) -> list[dict[str, torch.Tensor]]:
    """This rank's ``accum`` micro-batches of one global batch (chunk ``i * world + rank``)."""
    per = batch["input_ids"].shape[0] // (world * accum)
    chunks = [i * world + rank for i in range(accum)]
    return [{k: v[c * per : (c + 1) * per] for k, v in batch.items()} for c in chunks]


def tiny_llama() -> LlamaForCausalLM:
    """The 2-layer Llama both workers train, with seeded initial weights."""
    torch.manual_seed(0)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=SEQ,
            pad_token_id=0,
        )
    )


def main() -> None:
    """Train on this rank's share and let rank 0 write what the test compares."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    micro = [
        m
        for b in _global_batches(args.steps, args.global_batch, seed=1)
        for m in _micro_batches(b, rank, world, args.grad_accum)
    ]
    evals = _global_batches(2, 8, seed=2)  # every rank evaluates the same batches
    model = tiny_llama()
    config = TrainConfig(
        lr=1e-2,
        min_lr=1e-3,
        warmup_steps=1,
        max_steps=args.steps,
        batch_size=args.global_batch // (world * args.grad_accum),
        grad_accum=args.grad_accum,
        eval_every=args.steps,
        save_every=args.steps,
        log_every=1,
        mixed_precision="no",
        seed=0,
    )
    result = train(model, micro, evals, config, args.out / "run", progress=False)
    if rank == 0:
        assert result.final_eval is not None
        summary = {
            "world": world,
            "train_losses": result.train_losses,
            "eval_loss": result.final_eval.loss,
        }
        (args.out / "result.json").write_text(json.dumps(summary))
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()},
                   args.out / "weights.pt")  # fmt: skip


if __name__ == "__main__":
    main()
