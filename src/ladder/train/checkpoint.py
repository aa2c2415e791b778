"""Resumable training checkpoints, written atomically.

Layout of a training run's output folder::

    OUT/checkpoints/step-0000500/   model, optimizer, RNG states (accelerate's save_state),
                                    trainer_state.json (step, batches consumed, losses),
                                    config.yaml (the resolved config)
    OUT/checkpoints/.step-0000600.tmp/   a save in progress; never read

A checkpoint is first written to a hidden temp folder and renamed into place only when
complete, so a crash mid-save leaves every earlier checkpoint untouched, and the newest
*complete* checkpoint is always the one that resumes. The temp name is deterministic (not
``mkdtemp``) so that every process of a distributed run writes into the same folder.

The trained model itself goes out as a Hugging Face folder (:func:`save_pretrained_full`).
Under DeepSpeed ZeRO-3 or FSDP each process holds only a shard of every weight, so the
loop gathers the full weights once at the end (:func:`gather_weights`) and the main process
writes those.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DistributedType

from ladder.train.config import TrainConfig

__all__ = [
    "CONFIG_FILE",
    "STATE_FILE",
    "TrainerState",
    "checkpoints_root",
    "gather_weights",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "read_state",
    "save_checkpoint",
    "save_pretrained_full",
    "weights_sharded",
]

STATE_FILE = "trainer_state.json"
CONFIG_FILE = "config.yaml"
_NAME = re.compile(r"^step-(\d{7,})$")


@dataclass
class TrainerState:
    """Loop counters that are not tensors; saved as JSON beside the tensors."""

    step: int = 0  # optimizer steps taken
    micro_batches: int = 0  # training batches consumed, so a resumed run skips exactly these
    tokens: int = 0  # input positions processed (padding included)
    train_losses: list[float] = field(default_factory=list)  # one mean loss per step
    evals: list[dict[str, float]] = field(default_factory=list)  # {step, loss, perplexity}
    best_eval: float | None = None  # lowest validation loss so far (early stopping)
    evals_without_gain: int = 0  # evaluations since best_eval last improved


def checkpoints_root(out_dir: str | os.PathLike[str]) -> Path:
    """The folder holding a run's checkpoints."""
    return Path(out_dir) / "checkpoints"


def list_checkpoints(out_dir: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temp folders of a failed save excluded)."""
    root = checkpoints_root(out_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _NAME.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.removeprefix("step-")))


def latest_checkpoint(out_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint, or None when there is none."""
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


def save_checkpoint(
    accelerator: Accelerator,
    out_dir: str | os.PathLike[str],
    state: TrainerState,
    config: TrainConfig,
    run_info: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint for ``state.step`` atomically and prune to ``config.keep_checkpoints``.

    The model and optimizer (and an fp16 grad scaler) are the ones passed to
    ``accelerator.prepare``; the RNG states of python, numpy and torch (CPU and CUDA) come
    along, so a resumed run draws the same random numbers an uninterrupted one would. The
    learning-rate schedule is a pure function of the step (:func:`~ladder.train.schedule.lr_at`),
    so ``state.step`` is all of its state.

    Args:
        accelerator: the run's accelerator (it knows the prepared objects).
        out_dir: the run's output folder.
        state: loop counters and loss history.
        config: the resolved training config, saved as ``config.yaml``.
        run_info: extra provenance (model config, data, preset) saved under ``run:``.

    Returns:
        The checkpoint folder.
    """
    root = checkpoints_root(out_dir)
    final = root / f"step-{state.step:07d}"
    tmp = root / f".{final.name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)  # left by an earlier crash, if any
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    try:
        with _quiet("accelerate.utils.other"):
            accelerator.save_state(str(tmp))
        if accelerator.is_main_process:
            _write_metadata(tmp, state, config, run_info)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            if final.exists():  # the same step saved again (resume of a finished run)
                shutil.rmtree(final)
            os.replace(tmp, final)
    except BaseException:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if accelerator.is_main_process:
        for old in list_checkpoints(out_dir)[: -config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, path: str | os.PathLike[str]) -> TrainerState:
    """Restore model, optimizer, scheduler and RNG states from ``path``; return the counters."""
    accelerator.load_state(str(path))
    return read_state(path)


def read_state(path: str | os.PathLike[str]) -> TrainerState:
    """The loop counters of the checkpoint at ``path`` (no tensors are read)."""
    data = json.loads((Path(path) / STATE_FILE).read_text(encoding="utf-8"))
    return TrainerState(**data)


def weights_sharded(accelerator: Accelerator) -> bool:
    """Whether each process holds only a shard of the weights: DeepSpeed ZeRO-3 or FSDP.

    Then the prepared model's own parameters are not the trained weights (under ZeRO-3 they
    are empty tensors outside a forward pass), and saving needs :func:`gather_weights`.
    """
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        zero = accelerator.state.deepspeed_plugin.deepspeed_config.get("zero_optimization", {})
        return str(zero.get("stage", 0)) == "3"
    return accelerator.distributed_type == DistributedType.FSDP


def gather_weights(
    accelerator: Accelerator, model: torch.nn.Module
) -> dict[str, torch.Tensor] | None:
    """The full weights of a prepared ``model`` whose parameters are sharded, on the main process.

    A collective: every process must call it (each contributes its shards). Through
    ``accelerator.get_state_dict``: under ZeRO-3 DeepSpeed gathers one layer at a time onto
    the main process's CPU, in the dtype the engine trains in (fp32 without mixed precision;
    bf16/fp16 with it); it needs ``stage3_gather_16bit_weights_on_model_save``, which
    :func:`ladder.train.distributed.fit_deepspeed_config` switches on. Under FSDP it is
    the full state dict, offloaded to the main process's CPU.

    Returns:
        ``{name: tensor}`` (the model's own state-dict names) on the main process of a
        sharded run; None on the other processes, and None when the weights are not sharded
        (the model's own tensors then are the trained weights).
    """
    if not weights_sharded(accelerator):
        return None
    weights = accelerator.get_state_dict(model)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process or not weights:
        return None
    # A torch.compile'd model names its weights "_orig_mod.NAME".
    return {name.removeprefix("_orig_mod."): tensor for name, tensor in weights.items()}


def save_pretrained_full(
    model: Any, folder: str | os.PathLike[str], weights: dict[str, torch.Tensor] | None
) -> None:
    """``model.save_pretrained(folder)`` as safetensors, with ``weights`` when given.

    Call it on the main process only, with :attr:`ladder.train.loop.TrainResult.weights`:
    the full weights a sharded run (ZeRO-3, FSDP) gathered, or None for any other run,
    whose model holds its trained weights itself. Works for transformers models and PEFT
    models alike (a PEFT model keeps only its adapter weights out of ``weights``).
    """
    # transformers empties the dict it is given while writing: hand it a copy of the dict
    # (not of the tensors), so the caller's weights survive the save.
    given = dict(weights) if weights is not None else None
    model.save_pretrained(folder, state_dict=given, safe_serialization=True)


def _write_metadata(
    folder: Path, state: TrainerState, config: TrainConfig, run_info: dict[str, Any] | None
) -> None:
    (folder / STATE_FILE).write_text(json.dumps(dataclasses.asdict(state)), encoding="utf-8")
    resolved: dict[str, Any] = {"train": config.model_dump()}
    if run_info:
        resolved["run"] = run_info
    (folder / CONFIG_FILE).write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    # accelerate warns on every save of a model with tied embeddings ("Removed shared
    # tensor ..."): expected, harmless, and it would interrupt the progress bar.
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
