"""The setup of a ``ladder pretrain`` run, done once before any process starts: the shape
and training settings, the output folders, checks that no earlier work is lost, the memory
check and the CPU precision choice.

    setup (this module) → train (:func:`ladder.train.pretrain_run.run_pretrain`) → save
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from pydantic import ValidationError

from ladder.errors import ConfigError
from ladder.fsutil import atomic_write_text
from ladder.models.architectures import get_architecture
from ladder.models.builtin import SIZE_RECIPES, SUMMARY_FILE, builtin_path, get_preset
from ladder.models.memory import GB, OVERHEAD_BYTES, FitConfig, estimate_memory
from ladder.models.shapes import ModelShape
from ladder.train.checkpoint import list_checkpoints
from ladder.train.config import ModelSpec, PretrainConfig, TrainConfig
from ladder.train.interrupt import NothingToResume
from ladder.train.meters import bf16_autocast_speedup
from ladder.train.pretrain import planned_vocab, prepare_tokenizer
from ladder.train.schedule import resolve_mixed_precision

__all__ = [
    "PRECISION_FILE",
    "check_fresh",
    "check_memory",
    "check_unfinished",
    "choose_precision",
    "output_dirs",
    "prepare_run",
    "resolve",
]

PRECISION_FILE = "precision.json"  # in the run folder: what ``auto`` chose, and why


def resolve(cfg: PretrainConfig, max_steps: int | None = None) -> tuple[ModelShape, TrainConfig]:
    """The shape and the training settings: a built-in preset's (``preset:``), or the
    architecture's with its size's recipe (``model:``); then the fields the config sets.

    Raises:
        ConfigError: an unknown or inconsistent architecture, or bad training settings.
        ModelLoadError: an unknown built-in preset.
    """
    if cfg.is_builtin:
        preset = get_preset(cfg.preset)
        spec, recipe = preset.shape, preset.train
    else:
        spec_cfg = cfg.model or ModelSpec()
        spec = get_architecture(spec_cfg.arch, spec_cfg.size, **spec_cfg.dims())
        recipe = SIZE_RECIPES[spec.size]
    try:
        tcfg = cfg.train_config(recipe)
        if max_steps is not None:
            tcfg = tcfg.model_copy(update={"max_steps": max_steps})
            tcfg = TrainConfig.model_validate(tcfg.model_dump())
    except ValidationError as exc:
        raise ConfigError(f"train: {exc.errors()[0]['msg']}") from None
    return spec, tcfg


def output_dirs(cfg: PretrainConfig, spec: ModelShape) -> tuple[Path, Path]:
    """(the final HF folder, the run folder of checkpoints beside it). Default: where
    ``builtin:NAME`` finds a preset, ``runs/ARCH-SIZE`` for an architecture."""
    if cfg.out:
        final = Path(cfg.out)
    else:
        final = builtin_path(cfg.preset) if cfg.is_builtin else Path(f"runs/{spec.name}")
    return final, final.parent / f".{final.name}.run"


def prepare_run(
    cfg: PretrainConfig, *, resume: bool = False, max_steps: int | None = None
) -> tuple[ModelShape, TrainConfig, Path, str | None]:
    """Everything before the processes start: resolve, check memory, clear a stale run
    (unless ``resume``), and make the run's tokenizer. Done once, before any launch.

    Returns:
        (shape, training settings, run folder, a memory warning or None).

    Raises:
        ConfigError: see :func:`resolve`, :func:`check_memory` and
            :func:`ladder.train.pretrain.prepare_tokenizer`.
        NothingToResume: ``resume`` of a run that finished (nothing is written).
    """
    spec, tcfg = resolve(cfg, max_steps)
    final, run_dir = output_dirs(cfg, spec)
    if resume:
        check_unfinished(final)
    elif not cfg.overwrite:
        check_fresh(final)
    warning = check_memory(spec, planned_vocab(cfg, spec.vocab), tcfg)
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)  # a stale earlier run must not resume
    prepare_tokenizer(cfg, spec.vocab, spec.context, run_dir)
    tcfg = choose_precision(spec, tcfg, run_dir, probe=not cfg.is_builtin)
    return spec, tcfg, run_dir, warning


def check_fresh(final: Path) -> None:
    """Before a run that is neither ``--resume`` nor ``--overwrite``: earlier work in
    ``final`` (a finished model) or beside it (an interrupted run's checkpoints) is never
    replaced or cleared unasked.

    Raises:
        ConfigError: what is there, and the flags that say what to do with it.
    """
    checkpoints = list_checkpoints(final.parent / f".{final.name}.run")
    if checkpoints:
        step = int(checkpoints[-1].name.removeprefix("step-"))
        raise ConfigError(
            f"{final}: an interrupted run stopped at step {step}; pass --resume to continue "
            "it, --overwrite to start over, or another --out"
        )
    if (final / SUMMARY_FILE).is_file():
        raise ConfigError(
            f"{final} holds a finished model; pass --overwrite to train it again, or another --out"
        )


def check_unfinished(final: Path) -> None:
    """Before ``--resume``: a run saved to ``final`` whose checkpoints are gone finished.

    A finished run removes its run folder (``.NAME.run`` beside ``final``), so with a
    ``training.json`` in ``final`` and no checkpoint left there is nothing to continue, and
    training from scratch would overwrite the finished model.

    Raises:
        NothingToResume: with the step the run finished at.
    """
    summary_file = final / SUMMARY_FILE
    if list_checkpoints(final.parent / f".{final.name}.run") or not summary_file.is_file():
        return
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    steps = int(summary.get("steps", 0))
    planned = (summary.get("train_config") or {}).get("max_steps", steps)
    raise NothingToResume(final, steps, int(planned))


def choose_precision(
    spec: ModelShape, tcfg: TrainConfig, run_dir: Path, *, probe: bool = True
) -> TrainConfig:
    """``tcfg`` with ``mixed_precision: auto`` settled for a CPU run: bf16 where the probe
    (:func:`ladder.train.meters.bf16_autocast_speedup` at this model's width) says bf16
    autocast trains clearly faster, else fp32 (``no``).

    Decided once per run and written to ``run_dir/precision.json``: a resumed run and every
    process of a multi-process run read the choice back instead of measuring again, so a
    noisy second measurement cannot switch precision mid-run (resuming stays bit-for-bit).
    On a CUDA GPU, for any other value than ``auto``, and with ``probe=False``, ``tcfg`` is
    returned unchanged: the loop settles ``auto`` then (fp32 on a CPU). The built-in presets
    run so, because their shipped scores (``make demo``) come from weights trained that way
    on any CPU.
    """
    if tcfg.mixed_precision != "auto" or torch.cuda.is_available() or not probe:
        return tcfg
    record = run_dir / PRECISION_FILE
    if record.is_file():
        choice = json.loads(record.read_text(encoding="utf-8"))
    else:
        tokens = tcfg.batch_size * spec.context
        speedup = bf16_autocast_speedup(tokens, spec.hidden, spec.ffn)
        choice = {
            "mixed_precision": resolve_mixed_precision(
                "auto", cuda_bf16=False, cpu_bf16_speedup=speedup
            ),
            "bf16_speedup": round(speedup, 3),  # the probe: fp32 time / bf16 autocast time
            "probe": {"tokens": tokens, "hidden": spec.hidden, "ffn": spec.ffn},
        }
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(record, json.dumps(choice, indent=2) + "\n")
    return tcfg.model_copy(update={"mixed_precision": choice["mixed_precision"]})


def check_memory(spec: ModelShape, vocab: int, tcfg: TrainConfig) -> str | None:
    """``ladder fit``'s estimate for training ``spec`` against the memory it will run on.

    Raises:
        ConfigError: the estimate exceeds the device's total memory (GPU 0, else RAM).

    Returns:
        A warning when it exceeds the memory free right now, else None.
    """
    import psutil

    cuda = torch.cuda.is_available()
    dtype = "bf16" if cuda and tcfg.mixed_precision in ("auto", "bf16") else "fp32"
    fit = FitConfig(method="full", dtype=dtype, context=spec.context, batch=tcfg.batch_size)
    estimate = estimate_memory(spec.at_vocab(vocab), fit)
    need = estimate.total_bytes - (0 if cuda else OVERHEAD_BYTES)  # no CUDA context on a CPU
    if cuda:
        free, total = torch.cuda.mem_get_info(0)
        where = f"GPU 0 ({torch.cuda.get_device_name(0)})"
    else:
        memory = psutil.virtual_memory()
        free, total, where = memory.available, memory.total, "this machine's RAM"
    parts = ", ".join(f"{c.name} {c.bytes / GB:.2f}" for c in estimate.components if c.bytes)
    numbers = (
        f"training {spec.name} ({estimate.params:,} parameters, batch {tcfg.batch_size} x "
        f"{spec.context}) needs about {need / GB:.2f} GB by `ladder fit` ({parts} GB)"
    )
    if need > total:
        raise ConfigError(
            f"model: {numbers}, more than the {total / GB:.1f} GB of {where}: choose a smaller "
            "size, hidden or layers, or a smaller train.batch_size"
        )
    if need > free:
        return f"{numbers}; only {free / GB:.1f} GB of {where} is free now"
    return None
