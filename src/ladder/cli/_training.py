"""What the training verbs (pretrain, finetune) say when a run stops on Ctrl-C or when
``--resume`` finds the run already finished."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

# The launching process passes its resume command to the processes it starts (--nproc):
# they run a rewritten command line, but the user should see the one they typed.
RESUME_ENV = "LADDER_RESUME_COMMAND"


def resume_command(verb: str, positional: list[Any], options: dict[str, Any]) -> str:
    """``ladder VERB ARGS --resume`` from the arguments the user gave (None: not given).

    Args:
        verb: the verb, e.g. ``pretrain``.
        positional: positional arguments (None ones are left out).
        options: ``{"--flag": value}``; None values are left out.
    """
    if inherited := os.environ.get(RESUME_ENV):
        return inherited
    words = ["ladder", verb, *(str(p) for p in positional if p is not None)]
    for flag, value in options.items():
        if value is not None:
            words += [flag, str(value)]
    return shlex.join([*words, "--resume"])


@contextmanager
def training_outcomes(command: str, *, main_process: bool) -> Iterator[None]:
    """Turn a finished run's ``--resume`` into one line and exit 0, and Ctrl-C into one line
    (where it stopped, the command that resumes it) and exit 130.

    Only the main process of a multi-process run prints; every process exits the same way.
    """
    from ladder.train.interrupt import NothingToResume, TrainingInterrupted

    try:
        yield
    except NothingToResume as finished:
        if main_process:
            typer.echo(finished.summary())
        raise typer.Exit(0) from None
    except TrainingInterrupted as stop:
        if main_process:
            typer.echo(stop.summary(command), err=True)
        raise typer.Exit(130) from None
