"""``ladder pretrain CONFIG --nproc 2`` end to end: two gloo processes against one.

Both runs go through the CLI as real subprocesses. ``PackedBatches`` gives each of N
processes its share of the windows one process would draw with an N times larger batch, so
2 processes x 4 windows must train the same model as 1 process x 8 windows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ladder.train.pretrain_run import SUMMARY_FILE

TRAIN = {"max_steps": 8, "lr": 0.01, "min_lr": 0.001, "warmup_steps": 2, "eval_every": 8,
         "save_every": 8, "log_every": 4, "mixed_precision": "no"}  # fmt: skip
# Validation reads eval_batches global batches (batch_size x processes windows each):
# keep the windows fixed.
EVAL_WINDOWS = 16
MICRO = {"arch": "llama", "hidden": 32, "layers": 2, "heads": 4, "ffn": 64, "context": 32}


def _pretrain(shards: Path, root: Path, name: str, train: dict[str, Any], *extra: str) -> Any:
    """``ladder pretrain`` of MICRO on ``shards`` with ``train`` over TRAIN; its summary,
    read as strict JSON (a NaN fails the test)."""
    config = root / f"{name}.yaml"
    data = {"model": MICRO, "data": {"shards": str(shards)}, "out": str(root / name),
            "train": {**TRAIN, **train}}  # fmt: skip
    config.write_text("# how to run: ladder pretrain THIS.yaml\n" + yaml.safe_dump(data))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "ladder.cli.main", "pretrain", str(config), *extra],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    text = (root / name / SUMMARY_FILE).read_text()
    return json.loads(text, parse_constant=lambda word: pytest.fail(f"{word} in JSON"))


def _batches(batch_size: int, world: int = 1) -> dict[str, int]:
    return {"batch_size": batch_size, "eval_batches": EVAL_WINDOWS // (batch_size * world)}


@pytest.mark.slow
def test_pretrain_nproc_2_matches_one_process_with_the_same_global_batch(
    tiny_shards: Path, tmp_path: Path
) -> None:
    one = _pretrain(tiny_shards, tmp_path, "one", _batches(8))
    two = _pretrain(tiny_shards, tmp_path, "two", _batches(4, world=2), "--nproc", "2")
    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["train_losses"][-1] < one["train_losses"][0] - 0.5  # it learned
    # Same windows per step, gradients all-reduced: equal up to float summation order.
    assert two["train_losses"] == pytest.approx(one["train_losses"], rel=1e-5)
    assert two["validation_loss"] == pytest.approx(one["validation_loss"], rel=1e-5)


@pytest.mark.slow
def test_a_validation_split_smaller_than_one_batch_per_process_is_not_nan(
    tiny_shards: Path, tmp_path: Path
) -> None:
    # The tiny shards' validation split fills 61 windows of 32: fewer than one process's
    # batch of 64, so the second process used to get no window and the loss came out NaN
    # (and training.json held a bare NaN, which is not JSON).
    short = {"max_steps": 2, "eval_every": 2, "save_every": 2, "eval_batches": 1}
    runs = {
        "one": _pretrain(tiny_shards, tmp_path, "one", {**short, "batch_size": 128}),
        "two": _pretrain(tiny_shards, tmp_path, "two", {**short, "batch_size": 64}, "--nproc", "2"),
    }
    assert runs["two"]["validation_loss"] == pytest.approx(runs["one"]["validation_loss"], rel=1e-5)
