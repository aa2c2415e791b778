"""Training that starts where supervised fine-tuning left off: the ``dpo`` and ``grpo`` rungs.

Such a rung's ``start`` option picks its starting weights: ``sft`` (the default) the
checkpoint of the last fine-tuning rung that finished below it on the same model
(:attr:`RungContext.tuned`), or the base model when there is none; ``base`` the base model
always. Its cost includes the training of the checkpoint it started from
(``start_train_seconds`` in its summary). The rung says what it trains on and with which
method settings; :func:`train_after_sft` writes the data, runs ``finetune`` and keeps the
summary.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ladder.climb.finetune_rungs import training_summary
from ladder.climb.rungs import RungContext
from ladder.climb.task import LoadedTask
from ladder.errors import ConfigError
from ladder.fsutil import atomic_write_text

__all__ = ["check_start", "train_after_sft"]

_TRAINING_OPTIONS = ("lora", "epochs", "max_seq_len")  # passed to FinetuneConfig as they are


def check_start(name: str, options: Mapping[str, Any]) -> None:
    """Refuse, in one line, a ``start`` option other than ``sft`` or ``base``."""
    start = options.get("start", "sft")
    if start not in ("sft", "base"):
        raise ConfigError(f"rung {name}: option 'start' is {start!r}; use sft or base")


def train_after_sft(
    task: LoadedTask,
    model: str,
    ctx: RungContext,
    options: Mapping[str, Any],
    *,
    method: str,
    records: Sequence[Mapping[str, Any]],
    data: tuple[str, str],
    settings: Mapping[str, Any],
    describe: Callable[[str], str],
    train: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune with ``method`` from the SFT checkpoint below (or the base); its summary.

    Args:
        task: the task (its seed seeds the run).
        model: the model spec the climb is on (the base).
        ctx: the rung's context (its folder, the checkpoint below, resume).
        options: the rung's options (``start``, ``train``, ``lora``, ``epochs``,
            ``max_seq_len``).
        method: the fine-tuning method (``dpo``, ``grpo``).
        records: the training records, written as JSONL in the rung's folder.
        data: the records' file name and their format (``("pairs.jsonl", "preference")``).
        settings: the method's own section of the config (``dpo:``, ``grpo:``).
        describe: the log line's words after ``METHOD:``, given the starting spec.
        train: ``train:`` settings that override the rung's own (e.g. ``max_steps``).

    Returns:
        :func:`training_summary`'s dict with ``start`` (the spec trained from) and
        ``start_train_seconds`` (what that checkpoint's training cost; 0 for the base).
    """
    from ladder.train.finetune import finetune
    from ladder.train.finetune_config import FinetuneConfig

    from_sft = options.get("start", "sft") == "sft" and ctx.tuned is not None
    start = ctx.tuned if from_sft and ctx.tuned else model
    name, data_format = data
    path = ctx.out / name
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    out = ctx.out / "ft"
    cfg = FinetuneConfig(
        model=start,
        data=str(path),
        method=method,
        out=str(out),
        format=data_format,
        train={"seed": task.spec.seed, **dict(options.get("train") or {}), **dict(train or {})},
        resume=ctx.resume and (out / "checkpoints").is_dir(),
        **{method: dict(settings)},
        **{k: options[k] for k in _TRAINING_OPTIONS if k in options},
    )
    ctx.log(f"{method}: {describe(start)}")
    started = time.perf_counter()
    result = finetune(cfg, progress=False, log=ctx.log)
    summary = training_summary(method, result, time.perf_counter() - started, start)
    summary["start"] = start
    summary["start_train_seconds"] = ctx.tuned_seconds if from_sft else 0.0
    return summary
