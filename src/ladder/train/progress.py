"""What the training loop reports as it goes: the per-step loss record, and the reporter
that feeds the progress bar, the tracker and the sample generations.

The progress bar shows the loss, learning rate, tokens/s, MFU against the measured matmul
peak (:mod:`ladder.train.meters`), peak memory and the validation loss. Time spent beside
training (evaluation, sample generations, saving) is measured with :meth:`Reporter.aside`
and left out of the throughput, so tokens/s and MFU describe training alone.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from ladder.train.checkpoint import TrainerState, weights_sharded
from ladder.train.meters import mfu, peak_memory_bytes, run_peak_gflops
from ladder.train.runtime import mean_over_processes

if TYPE_CHECKING:
    from ladder.track import Tracker

__all__ = ["Reporter", "Sampler", "StepLosses", "TrainHooks"]


class Sampler(Protocol):
    """Periodic sample generations: ``every`` N steps the loop calls it on the bare model."""

    every: int

    def __call__(self, model: torch.nn.Module) -> list[dict[str, str]]:
        """``{"prompt", "text"}`` per sample; put the model back in the mode it was in."""
        ...


@dataclass(frozen=True)
class TrainHooks:
    """What a run reports besides its result; every part optional.

    Attributes:
        tracker: receives train loss, lr, tokens/s (and MFU) every ``log_every`` steps and
            validation loss and perplexity at every evaluation, with the step.
        sampler: sample generations every ``sampler.every`` steps and at the end.
        flops_per_token: model FLOPs per trained token (:mod:`ladder.train.meters`); when
            given, the progress bar and the tracker show MFU against the measured peak.
        log: receives each sample generation as a line (the progress bar stays intact).
    """

    tracker: Tracker | None = None
    sampler: Sampler | None = None
    flops_per_token: float | None = None
    log: Callable[[str], None] | None = None


class StepLosses:
    """The mean training loss of every step, kept on the device until it is read.

    Reading a loss is a host sync, which costs real throughput on a GPU, so the loop reads
    them only when it logs or saves. A resumed run starts with the losses its checkpoint
    holds (``prior``) and records from the step it resumed at.
    """

    def __init__(self, accelerator: Accelerator, state: TrainerState, max_steps: int) -> None:
        """Args: the run's accelerator, the state it starts from, its planned steps."""
        self._accelerator = accelerator
        self.first_step = state.step
        self.prior = list(state.train_losses)
        self._losses = torch.zeros(max(max_steps, state.step), device=accelerator.device)

    def record(self, step: int, loss: torch.Tensor) -> None:
        """Note the loss of step ``step`` (0-based), without a host sync."""
        self._losses[step] = loss

    def mean(self, start: int, stop: int) -> float:
        """Mean loss of steps ``start`` to ``stop`` over all processes (a collective)."""
        means = mean_over_processes(self._accelerator, self._losses)
        return float(means[start:stop].mean().item())

    def until(self, stop: int) -> list[float]:
        """Every step's loss up to ``stop``, earlier runs' included (a collective)."""
        means = mean_over_processes(self._accelerator, self._losses)
        new: list[float] = means[self.first_step : stop].tolist()
        return self.prior + new


class Reporter:
    """Records and reports a run as it goes: every step's loss (:attr:`losses`), the
    progress bar, the tracker and the sample generations.

    The tracker and the log lines hear from the main process only. Throughput counts the
    time since the last log, less the time spent :meth:`aside`.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        state: TrainerState,
        max_steps: int,
        hooks: TrainHooks,
        *,
        show: bool,
    ) -> None:
        """Args: the run's accelerator (prepared); the state it starts from; its planned
        steps; what to report to besides the bar; whether to draw the bar."""
        self._accelerator = accelerator
        self._main = accelerator.is_main_process
        self._sharded = weights_sharded(accelerator)
        self._hooks = hooks
        self.losses = StepLosses(accelerator, state, max_steps)
        self._peak = run_peak_gflops(accelerator) if hooks.flops_per_token else 0.0
        self._postfix: dict[str, str] = {}
        self.samples: list[dict[str, Any]] = []  # {step, prompt, text}
        self._bar = tqdm(total=max_steps, initial=state.step, disable=not show, unit="step")
        self._first_tokens = state.tokens
        self._start = time.perf_counter()
        self._aside_s = 0.0
        # (step, tokens, time, time aside) at the last log: throughput is measured from there.
        self._last = (state.step, state.tokens, self._start, 0.0)

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()  # the bar comes down however the loop ends

    def record(self, step: int, loss: torch.Tensor) -> None:
        """Optimizer step ``step`` (0-based) is done with mean loss ``loss``: note it (no host
        sync) and move the bar on."""
        self.losses.record(step, loss)
        self._bar.update(1)

    def log(self, step: int, tokens: int, lr: float) -> None:
        """Show and track the loss, lr, tokens/s (and MFU) since the last log.

        A collective (the loss mean): every process calls it at the same step.
        """
        since_step, since_tokens, since_t, since_aside = self._last
        now = time.perf_counter()
        busy = (now - since_t) - (self._aside_s - since_aside)  # eval/save time is not training
        recent = self.losses.mean(since_step, step)
        self._postfix["loss"] = f"{recent:.3f}"
        self._postfix["lr"] = f"{lr:.1e}"
        tokens_per_s = (tokens - since_tokens) / max(busy, 1e-9)
        self._postfix["tok/s"] = f"{tokens_per_s:,.0f}"
        metrics = {"train_loss": recent, "lr": lr, "tokens_per_s": tokens_per_s}
        if (model_mfu := self.mfu(tokens_per_s)) is not None:
            metrics["mfu"] = model_mfu
            self._postfix["mfu"] = f"{model_mfu:.0%}"
        device = self._accelerator.device
        self._postfix["mem"] = f"{peak_memory_bytes(device) / 2**20:,.0f}MiB"
        self._bar.set_postfix(self._postfix, refresh=False)
        self._last = (step, tokens, now, self._aside_s)
        self._track(metrics, step)

    def evaluated(self, step: int, loss: float, perplexity: float) -> None:
        """Show and track a validation result."""
        self._postfix["val"] = f"{loss:.3f}"
        self._bar.set_postfix(self._postfix, refresh=False)
        self._track({"val_loss": loss, "val_perplexity": perplexity}, step)

    def sample(self, model: torch.nn.Module, step: int, *, last: bool) -> None:
        """Sample generations when due: every ``sampler.every`` steps and at the ``last``.

        Sharded weights (ZeRO-3, FSDP) are gathered in every forward, so then all processes
        sample; otherwise only the main one. Greedy, so no random numbers are drawn and a
        resumed run stays exact.
        """
        sampler = self._hooks.sampler
        due = sampler is not None and (step % sampler.every == 0 or last)
        if sampler is None or not due or not (self._main or self._sharded):
            return
        with self.aside():
            for sample in sampler(self._accelerator.unwrap_model(model)):
                self.samples.append({"step": step, **sample})
                if self._hooks.log is not None and self._main:
                    line = f"step {step} sample: {sample['prompt']!r} → {sample['text']!r}"
                    self._hooks.log(line)

    @contextlib.contextmanager
    def aside(self) -> Iterator[None]:
        """Time spent in this block is not training time."""
        start = time.perf_counter()
        yield
        self._aside_s += time.perf_counter() - start

    def close(self) -> None:
        """Take the bar down."""
        self._bar.close()

    def finish(self, tokens: int) -> float:
        """Take the bar down; this run's training tokens/s (time aside left out).

        Args:
            tokens: input positions processed in total, earlier runs' included.
        """
        self._bar.close()
        train_s = time.perf_counter() - self._start - self._aside_s
        return (tokens - self._first_tokens) / train_s if train_s > 0 else 0.0

    def mfu(self, tokens_per_s: float) -> float | None:
        """Model FLOPs utilisation at ``tokens_per_s``; None without FLOPs per token."""
        flops = self._hooks.flops_per_token
        return mfu(tokens_per_s, flops, self._peak) if flops else None

    def _track(self, metrics: dict[str, float], step: int) -> None:
        if self._hooks.tracker is not None and self._main:
            self._hooks.tracker.log_metrics(metrics, step=step)
