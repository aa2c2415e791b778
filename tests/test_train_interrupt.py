"""Ctrl-C in the training loop: the step is saved, and resuming continues exactly there."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from ladder.train.checkpoint import list_checkpoints
from ladder.train.loop import TrainHooks, TrainingInterrupted, train
from test_train_loop import (
    data,
    micro_config,
    micro_llama,
    one_thread,  # noqa: F401  (autouse: micro models on one thread)
)


class CtrlC:
    """A sampler (the loop calls it after each step) that presses Ctrl-C after ``at`` steps:
    a real SIGINT to this process, caught by the loop's handler."""

    every = 1

    def __init__(self, at: int, presses: int = 1) -> None:
        self.at, self.presses, self.calls = at, presses, 0

    def __call__(self, model: torch.nn.Module) -> list[dict[str, str]]:
        self.calls += 1
        if self.calls == self.at:
            for _ in range(self.presses):
                os.kill(os.getpid(), signal.SIGINT)
        return []


def test_ctrl_c_saves_the_step_it_stopped_at_and_resume_matches_a_straight_run(
    tmp_path: Path,
) -> None:
    cfg = micro_config(save_every=4)
    batches, val = data(cfg)
    # What SIGINT did before (Python's default, or "ignore" under nohup / a background job).
    before = signal.getsignal(signal.SIGINT)
    straight = train(micro_llama(), batches, val, cfg, tmp_path / "a", progress=False)

    with pytest.raises(TrainingInterrupted) as stopped:
        hooks = TrainHooks(sampler=CtrlC(7))
        train(micro_llama(), batches, val, cfg, tmp_path / "b", progress=False, hooks=hooks)
    assert (stopped.value.step, stopped.value.max_steps, stopped.value.saved) == (7, 12, True)
    assert stopped.value.checkpoint == tmp_path / "b" / "checkpoints" / "step-0000007"
    assert [p.name for p in list_checkpoints(tmp_path / "b")] == ["step-0000004", "step-0000007"]
    assert stopped.value.summary("ladder pretrain run.yaml --resume") == (
        "interrupted at step 7 of 12; resume with: ladder pretrain run.yaml --resume"
    )
    assert signal.getsignal(signal.SIGINT) is before  # handler put back

    resumed = train(micro_llama(9), batches, val, cfg, tmp_path / "b", resume=True, progress=False)
    assert resumed.train_losses == straight.train_losses  # bit-for-bit on CPU
    assert resumed.final_eval == straight.final_eval


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_earlier_checkpoints(tmp_path: Path) -> None:
    cfg = micro_config(save_every=4)
    batches, val = data(cfg)
    with pytest.raises(TrainingInterrupted) as stopped:
        hooks = TrainHooks(sampler=CtrlC(6, presses=2))
        train(micro_llama(), batches, val, cfg, tmp_path, progress=False, hooks=hooks)
    assert (stopped.value.step, stopped.value.saved, stopped.value.resumes_at) == (6, False, 4)
    assert stopped.value.summary("ladder x --resume") == (
        "interrupted at step 6 of 12, before its checkpoint was saved; resume from step 4 "
        "with: ladder x --resume"
    )
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-0000004"]
    resumed = train(micro_llama(), batches, val, cfg, tmp_path, resume=True, progress=False)
    assert resumed.steps == 12
