"""The training loop stays one function read top to bottom, and its reporting helper works.

``train()`` keeps to accumulate → clip → step → log → eval → save; throughput, the progress
bar and the distributed runtime live in :mod:`ladder.train.progress` and
:mod:`ladder.train.runtime`. The limits here keep it that way: a body that grows past them
is a sign that plumbing is moving back into the loop.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
import time
from pathlib import Path

import torch

from ladder.train import loop
from ladder.train.checkpoint import TrainerState
from ladder.train.progress import Reporter, TrainHooks
from ladder.train.runtime import make_accelerator
from test_train_loop import micro_config

TRAIN_DIR = Path(loop.__file__).parent
MAX_BODY_LINES = 80  # of train(), every line after the docstring: comments and blanks count
MAX_FILE_LINES = 400


def train_body() -> list[str]:
    """The lines of ``train()`` after its signature and docstring."""
    source = textwrap.dedent(inspect.getsource(loop.train))
    function = ast.parse(source).body[0]
    assert isinstance(function, ast.FunctionDef)
    first = function.body[1] if ast.get_docstring(function) else function.body[0]
    return source.splitlines()[first.lineno - 1 : function.end_lineno]


def test_train_body_fits_in_80_lines() -> None:
    body = train_body()
    assert 40 < len(body) <= MAX_BODY_LINES, f"train() body is {len(body)} lines"


def test_train_reads_accumulate_clip_step_log_eval_save_in_order() -> None:
    headers = [m[1] for line in train_body() if (m := re.match(r"\s*# (\d)\. (\w+)", line))]
    assert headers == ["1", "2", "3", "4", "5", "6", "7"]
    words = [re.match(r"\s*# \d\. (\w+)", line) for line in train_body()]
    assert [w[1] for w in words if w] == [
        "accumulate",
        "clip",
        "step",
        "log",
        "eval",
        "save",
        "stop",
    ]


def test_the_loop_and_its_helpers_stay_under_400_lines() -> None:
    for name in ("loop.py", "progress.py", "runtime.py"):
        lines = len((TRAIN_DIR / name).read_text(encoding="utf-8").splitlines())
        assert lines < MAX_FILE_LINES, f"{name}: {lines} lines"


class Recorder:
    """A tracker that keeps what it was sent."""

    def __init__(self) -> None:
        self.metrics: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append((step or 0, dict(metrics)))


class EchoSampler:
    """A sampler whose one sample names the call."""

    every = 2

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model: torch.nn.Module) -> list[dict[str, str]]:
        self.calls += 1
        return [{"prompt": "p", "text": f"call {self.calls}"}]


def test_reporter_tracks_samples_and_leaves_time_aside_out_of_throughput() -> None:
    accelerator = make_accelerator(micro_config())
    tracker, lines = Recorder(), []
    hooks = TrainHooks(
        tracker=tracker, sampler=EchoSampler(), flops_per_token=1e6, log=lines.append
    )
    with Reporter(accelerator, TrainerState(), 4, hooks, show=False) as report:
        report.record(0, torch.tensor(2.0))
        report.record(1, torch.tensor(4.0))
        with report.aside():  # evaluation or saving: not training time
            time.sleep(0.5)
        report.log(2, 1000, 0.1)
        report.evaluated(2, 1.5, 4.5)
        for step, last in ((2, False), (3, False), (3, True)):
            report.sample(torch.nn.Linear(2, 2), step, last=last)
    (log_step, logged), (eval_step, evaluated) = tracker.metrics
    assert (log_step, logged["train_loss"], logged["lr"]) == (2, 3.0, 0.1)
    assert logged["tokens_per_s"] > 1000 / 0.5  # the half second aside is not training time
    assert logged["mfu"] == report.mfu(logged["tokens_per_s"]) and logged["mfu"] > 0
    assert (eval_step, evaluated) == (2, {"val_loss": 1.5, "val_perplexity": 4.5})
    assert report.samples == [
        {"step": 2, "prompt": "p", "text": "call 1"},  # every 2 steps
        {"step": 3, "prompt": "p", "text": "call 2"},  # and at the last step
    ]
    assert lines == ["step 2 sample: 'p' → 'call 1'", "step 3 sample: 'p' → 'call 2'"]
    assert report.losses.until(2) == [2.0, 4.0]
