"""The output folder of a ``ladder finetune`` run: checked before anything is trained.

A folder holding an earlier run is refused unless ``--resume`` or ``--overwrite`` says
what to do with it; ``--resume`` of a finished run is a no-op; an unwritable folder fails
before the model loads.
"""

from __future__ import annotations

import os
from pathlib import Path

from ladder.errors import ConfigError
from ladder.train.checkpoint import latest_checkpoint, read_state
from ladder.train.config import TrainConfig
from ladder.train.finetune_config import FinetuneConfig
from ladder.train.interrupt import NothingToResume
from ladder.train.methods import get_method

__all__ = ["check_fresh", "check_unfinished", "check_writable", "finished_outputs"]


def check_unfinished(cfg: FinetuneConfig, world: int, tcfg: TrainConfig | None = None) -> None:
    """Before a ``--resume``: whether the run in ``cfg.out`` already finished.

    Finished: its newest checkpoint reached ``max_steps`` (or early stopping ended it) and
    its outputs (``model/``, ``adapter/``) were saved. ``tcfg``: the run's training settings;
    without it they are derived from ``cfg`` alone, which is possible unless ``epochs`` sets
    the step count from the data (then this returns without a verdict).

    Raises:
        NothingToResume: nothing is left to train or save; nothing was written.
    """
    if not cfg.resume or (tcfg is None and cfg.epochs is not None):
        return
    out = Path(cfg.out)
    latest = latest_checkpoint(out)
    if latest is None or not all((out / name).is_dir() for name in finished_outputs(cfg)):
        return
    tcfg = tcfg or cfg.train_config(None, world)
    state = read_state(latest)
    patience = tcfg.early_stopping_patience
    stopped = patience is not None and state.evals_without_gain >= patience
    if state.step >= tcfg.max_steps or stopped:
        raise NothingToResume(out, state.step, tcfg.max_steps)


def check_fresh(cfg: FinetuneConfig) -> None:
    """Without ``--resume`` or ``--overwrite``, a folder holding an earlier run (its
    checkpoints, or a saved ``model/`` or ``adapter/``) is refused and left as it is.

    Raises:
        ConfigError: what is there, and the flags that say what to do with it.
    """
    if cfg.resume and cfg.overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: pass one")
    if cfg.resume or cfg.overwrite:
        return
    out = Path(cfg.out)
    saved = [name for name in ("model", "adapter") if (out / name).is_dir()]
    if saved:
        raise ConfigError(
            f"{out} holds a finished run ({saved[0]}/); pass --overwrite to train it again, "
            "or another --out"
        )
    latest = latest_checkpoint(out)
    if latest is not None:
        raise ConfigError(
            f"{out}: an interrupted run stopped at step {read_state(latest).step}; pass "
            "--resume to continue it, --overwrite to start over, or another --out"
        )


def finished_outputs(cfg: FinetuneConfig) -> list[str]:
    """The folders a finished run of ``cfg`` leaves in ``cfg.out``."""
    if not get_method(cfg.method).saves_adapter(cfg):
        return ["model"]
    return ["adapter", "model"] if cfg.merge else ["adapter"]


def check_writable(out: Path) -> None:
    """Fail early, before any training, when ``out`` cannot be written.

    Raises:
        ConfigError: the folder cannot be created or written to.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"{out}: output folder is not writable ({exc.strerror or exc}); choose another --out"
        ) from None
