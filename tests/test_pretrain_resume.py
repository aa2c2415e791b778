"""SIGKILL mid-training, then ``--resume``: the same final loss and weights as a run that
was never interrupted (real ``ladder pretrain`` subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from ladder.train.checkpoint import list_checkpoints
from ladder.train.config import PretrainConfig
from ladder.train.pretrain_run import SUMMARY_FILE, run_pretrain
from test_pretrain import config, write_config

STEPS = 120


def _run_config(shards: Path, out: Path) -> dict[str, Any]:
    data = config(shards, out, "gpt2")  # learned positions, LayerNorm, biases: more state
    data["train"] |= {"max_steps": STEPS, "save_every": 10, "eval_every": 40, "log_every": 10}
    return data


def _ladder(*args: str) -> list[str]:
    return [sys.executable, "-m", "ladder.cli.main", *args]


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_final_loss(tiny_shards: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LADDER_TRACKING_URI": "none"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # the uninterrupted run, in this process (one thread, like the subprocesses)
        straight_cfg = PretrainConfig.model_validate(_run_config(tiny_shards, tmp_path / "a"))
        straight = run_pretrain(straight_cfg, progress=False)
    finally:
        torch.set_num_threads(threads)

    out = tmp_path / "b"
    run_file = write_config(tmp_path / "b.yaml", _run_config(tiny_shards, out))
    run_dir = tmp_path / ".b.run"
    killed = subprocess.Popen(
        _ladder("pretrain", str(run_file)), env=env, stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list_checkpoints(run_dir) and killed.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL  # killed mid-run, not finished
    assert not out.exists()
    survived = int(list_checkpoints(run_dir)[-1].name.removeprefix("step-"))
    assert 10 <= survived < STEPS

    resumed = subprocess.run(
        _ladder("pretrain", str(run_file), "--resume"), env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = json.loads((straight / SUMMARY_FILE).read_text())
    b = json.loads((out / SUMMARY_FILE).read_text())
    assert b["steps"] == a["steps"] == STEPS
    assert b["train_loss"] == a["train_loss"]  # bit-for-bit on CPU, every step
    assert b["train_losses"] == a["train_losses"]
    assert b["validation_loss"] == a["validation_loss"]
    weights_a = load_file(straight / "model.safetensors")
    weights_b = load_file(out / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert not run_dir.exists()  # the finished run cleaned up its checkpoints
