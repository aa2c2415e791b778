"""``ladder pretrain CONFIG --nproc 2``: two CPU processes (torchrun, gloo) train to the same
losses as one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ladder.train.pretrain_run import SUMMARY_FILE
from test_pretrain import config, write_config


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(
    tiny_shards: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LADDER_TRACKING_URI": "none"}
    env.pop("LOCAL_RANK", None)
    runs = {}
    for name, nproc, batch in (("one", 1, 8), ("two", 2, 4)):
        data = config(tiny_shards, tmp_path / name)
        data["train"] |= {"max_steps": 8, "batch_size": batch, "eval_every": 8, "save_every": 8}
        run = write_config(tmp_path / f"{name}.yaml", data)
        command = [sys.executable, "-m", "ladder.cli.main", "pretrain", str(run)]
        done = subprocess.run(
            [*command, "--nproc", str(nproc)], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]
        runs[name] = json.loads((tmp_path / name / SUMMARY_FILE).read_text())
    one, two = runs["one"], runs["two"]
    assert two["processes"] == 2 and one["processes"] == 1
    # Each process takes its half of the same 8 windows; gradients are averaged by DDP.
    # Only the order of float additions differs (all-reduce vs one batch).
    assert two["train_losses"] == pytest.approx(one["train_losses"], abs=1e-4)
    assert two["validation_loss"] == pytest.approx(one["validation_loss"], abs=1e-4)
    assert two["tokens"] == one["tokens"] // 2  # tokens counted per process
