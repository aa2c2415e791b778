"""Validation over several processes (each evaluates its share; a short last batch is shared
out with stand-ins that count for nothing) and result JSON without NaN."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ladder.train.loop import evaluate
from ladder.train.pretrain import eval_windows, keep_stand_ins_out
from ladder.train.results import result_json
from test_train_loop import (
    micro_llama,
    one_thread,  # noqa: F401  (autouse: micro models on one thread)
    stream,
)


@pytest.mark.parametrize("windows", [1, 3, 9])
def test_validation_split_over_two_processes_sums_to_the_one_process_loss(windows: int) -> None:
    # A validation split smaller than one global batch (here 2 processes x 4) gave one
    # process nothing to evaluate: the loss came out NaN. Each process now evaluates its
    # share (stand-ins count for nothing); the loop sums loss and targets over processes.
    tokens = stream()[: windows * 16]
    model = micro_llama()
    one = evaluate(model, eval_windows(tokens, seq_len=16, batch_size=4, max_batches=3), 3)
    windows_of = [
        eval_windows(tokens, seq_len=16, batch_size=4, max_batches=3, rank=r, world=2)
        for r in (0, 1)
    ]
    shares = [evaluate(model, share, 3) for share in windows_of]
    total = sum(s.tokens for s in shares)
    loss = sum(s.loss * s.tokens for s in shares if s.tokens) / total
    assert total == one.tokens == windows * 15
    assert loss == pytest.approx(one.loss, rel=1e-6)


def test_every_process_runs_as_many_eval_batches_with_stand_ins_counting_nothing() -> None:
    tokens = stream()[: 9 * 16]
    shares = [
        eval_windows(tokens, seq_len=16, batch_size=4, max_batches=3, rank=r, world=2)
        for r in (0, 1)
    ]
    assert [[w["input_ids"].shape for w in share] for share in shares] == [
        [(4, 16), (1, 16)],
        [(4, 16), (1, 16)],
    ]
    assert torch.equal(shares[1][0]["input_ids"][0], tokens[64:80])  # rank 1: windows 4-7
    assert torch.equal(shares[0][1]["input_ids"][0], tokens[128:144])  # rank 0: window 8
    assert (shares[1][1]["labels"] == -100).all()  # rank 1's stand-in
    masked = [{"input_ids": b["input_ids"], "labels": b["input_ids"].clone()} for b in shares[1]]
    kept = keep_stand_ins_out(shares[1], masked)
    assert (kept[1]["labels"] == -100).all() and (kept[0]["labels"] >= 0).all()


def test_result_json_writes_null_for_nan_and_says_which() -> None:
    warnings: list[str] = []
    summary = {"validation_loss": math.nan, "train_losses": [1.0, math.inf], "steps": 3}
    text = result_json(summary, name="training.json", warn=warnings.append)
    assert json.loads(text) == {"validation_loss": None, "train_losses": [1.0, None], "steps": 3}
    assert "NaN" not in text and "Infinity" not in text
    assert warnings == [
        "training.json: validation_loss, train_losses[1] not a finite number (NaN or "
        "infinite); written as null"
    ]
