"""Ctrl-C during training: finish the step, save a checkpoint, stop with where it stopped;
and the signal that a run asked to resume had already finished.

:func:`ladder.train.loop.train` runs inside :class:`StopOnInterrupt`. The first SIGINT only
sets a flag; the loop looks at it after a whole step (accumulate, clip, step, log, eval,
save), writes a checkpoint of that step and raises :class:`TrainingInterrupted`, so
``--resume`` continues from exactly there. A second Ctrl-C in a single process means "quit
now": it raises ``KeyboardInterrupt`` wherever the loop is; the checkpoint code writes into a
temp folder and renames it only when complete, so an abandoned save leaves the earlier
checkpoints as they were.

With several processes every one must stop after the same step (checkpoints are saved
collectively), so they agree at the loop's log points, where it synchronises anyway: the
run stops within ``log_every`` steps of the signal. torchrun sends each process one SIGINT;
a repeated signal is ignored there, since one process leaving a collective early would
leave the others waiting on it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType

import torch
from accelerate import Accelerator

__all__ = ["NothingToResume", "StopOnInterrupt", "TrainingInterrupted"]


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C (SIGINT); ``--resume`` continues from ``resumes_at``.

    A ``KeyboardInterrupt``, so code that handles Ctrl-C (a tracker marking its run KILLED,
    a caller's ``except KeyboardInterrupt``) still does, and ``except Exception`` does not
    swallow it.

    Attributes:
        step: optimizer steps completed when it stopped.
        max_steps: the run's planned steps.
        checkpoint: the newest complete checkpoint (None: none was ever written).
        saved: whether ``checkpoint`` is of ``step`` (False: a second Ctrl-C abandoned the
            save, or came mid-step, and resuming starts from an earlier checkpoint).
    """

    def __init__(self, step: int, max_steps: int, checkpoint: Path | None, saved: bool) -> None:
        self.step = step
        self.max_steps = max_steps
        self.checkpoint = checkpoint
        self.saved = saved
        super().__init__(f"training interrupted at step {step} of {max_steps}")

    @property
    def resumes_at(self) -> int:
        """The step a resumed run starts from (0: from the beginning)."""
        if self.checkpoint is None:
            return 0
        return int(self.checkpoint.name.removeprefix("step-"))

    def summary(self, resume_command: str) -> str:
        """One line for the terminal: where it stopped and the command that resumes it."""
        where = f"interrupted at step {self.step} of {self.max_steps}"
        if self.saved:
            return f"{where}; resume with: {resume_command}"
        if self.checkpoint is None:
            return f"{where}, before any checkpoint was saved; start again with: {resume_command}"
        return (
            f"{where}, before its checkpoint was saved; resume from step {self.resumes_at} "
            f"with: {resume_command}"
        )


class StopOnInterrupt:
    """A context that turns SIGINT into a stop request the training loop polls.

    A ``KeyboardInterrupt`` that leaves the block (a second Ctrl-C, or one before the
    handler was in place) comes out as the exception ``abandoned`` returns then. Outside the
    main thread (where Python cannot install signal handlers) SIGINT is left alone.
    """

    def __init__(
        self, processes: int, abandoned: Callable[[], TrainingInterrupted] | None = None
    ) -> None:
        """``processes``: how many processes train together (1: a single process)."""
        self.processes = processes
        self.abandoned = abandoned
        self.requested = False
        self._previous: signal.Handlers | object | None = None
        self._installed = False

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
            self._installed = False
        if kind is None or self.abandoned is None or issubclass(kind, TrainingInterrupted):
            return
        if issubclass(kind, KeyboardInterrupt):  # Ctrl-C before the step was saved
            raise self.abandoned() from None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and self.processes == 1:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        self.requested = True

    def agreed(self, accelerator: Accelerator, *, sync_point: bool) -> bool:
        """Whether every process should stop after this step.

        A single process stops as soon as it was asked to. Several decide together at a
        ``sync_point`` (every process must call this there, at the same step): one asked is
        enough.
        """
        if self.processes == 1:
            return self.requested
        if not sync_point:
            return False
        flag = torch.tensor(float(self.requested), device=accelerator.device)
        return bool(accelerator.reduce(flag, "sum").item() > 0)


class NothingToResume(Exception):
    """``--resume`` on a run that already finished: nothing was trained and nothing written.

    Attributes:
        where: the finished run's output folder.
        step: the step it finished at.
        max_steps: the steps it was run for.
    """

    def __init__(self, where: Path, step: int, max_steps: int) -> None:
        self.where = where
        self.step = step
        self.max_steps = max_steps
        super().__init__(self.summary())

    def summary(self) -> str:
        """One line for the terminal."""
        early = "" if self.step >= self.max_steps else " (stopped early)"
        return (
            f"nothing to resume: {self.where} finished at step {self.step} of "
            f"{self.max_steps}{early}; pass --overwrite instead of --resume to train it again"
        )
