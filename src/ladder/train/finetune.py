"""``ladder finetune``: adapt a model's weights on a data file, through the one training loop.

    setup (data → model → method) → fit (:func:`ladder.train.loop.train`) → save

Methods: full, freeze, lora (Hu et al. 2021), qlora (Dettmers et al. 2023) and dpo
(Rafailov et al. 2023); see :mod:`ladder.train.methods` and :mod:`ladder.train.preference`.

Output folder::

    OUT/checkpoints/step-NNNNNNN/   resumable training checkpoints (the loop's)
    OUT/adapter/                    LoRA adapters + tokenizer + model card (adapter methods)
    OUT/model/                      a standard HF checkpoint (safetensors, tokenizer, chat
                                    template, README.md model card): loads with plain
                                    transformers and with ``load_model("hf:OUT/model")``

``OUT/model`` and ``OUT/adapter`` are written to a temp folder and renamed when complete.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed

from ladder.data.formats import (
    DEFAULT_CHAT_TEMPLATE,
    Example,
    detect_format,
    encode_examples,
    encode_pair,
    pack,
    parse_records,
    split_validation,
)
from ladder.data.io import file_sha256, read_records
from ladder.errors import ConfigError
from ladder.fsutil import atomic_dir
from ladder.train.batches import TrainBatches, eval_batches
from ladder.train.checkpoint import (
    checkpoints_root,
    latest_checkpoint,
    read_state,
    save_pretrained_full,
)
from ladder.train.config import TrainConfig
from ladder.train.finetune_config import FinetuneConfig
from ladder.train.interrupt import NothingToResume
from ladder.train.loop import EvalResult, NextTokenObjective, Objective, evaluate, train
from ladder.train.merge import merge_adapter, model_card
from ladder.train.methods import load_base, prepare, resolve_checkpoint
from ladder.train.preference import DPOObjective, preference_accuracy, reference_logps

__all__ = [
    "ADAPTER_METHODS",
    "FinetuneResult",
    "check_fresh",
    "check_unfinished",
    "check_writable",
    "finetune",
]

ADAPTER_METHODS = ("lora", "qlora")


@dataclass(frozen=True)
class FinetuneResult:
    """What :func:`finetune` did and where it put it."""

    out: Path
    model_dir: Path | None  # OUT/model: a full HF checkpoint (None: adapters kept unmerged)
    adapter_dir: Path | None  # OUT/adapter for adapter methods
    steps: int
    train_losses: list[float]
    base_eval: EvalResult | None  # the validation loss before training
    final_eval: EvalResult | None
    stopped_early: bool
    tokens_per_s: float
    peak_memory_bytes: int
    preference_accuracy: float | None  # dpo: share of validation pairs ranked right
    notices: list[str]


@dataclass
class _Data:
    fmt: str
    train: list[Any]  # Encoded sequences, or (chosen, rejected) pairs
    val: list[Any]
    records: int


def finetune(
    cfg: FinetuneConfig,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    tracker: Any = None,
) -> FinetuneResult:
    """Fine-tune ``cfg.model`` on ``cfg.data`` with ``cfg.method``; save into ``cfg.out``.

    Args:
        cfg: the run's settings.
        progress: show the loop's progress bar (loss, tokens/s, peak memory).
        log: receives one line per stage and every notice.
        tracker: a :class:`ladder.track.Tracker` run: the settings as params, the loss
            curves (train loss, lr, tokens/s; validation loss and perplexity) as metrics.

    Raises:
        ConfigError: bad data (naming file, line and field), an unwritable ``out``, ...
        UnsupportedError: e.g. qlora on a model without quantisable linear layers.
        NothingToResume: ``cfg.resume`` of a run that already finished.
        TrainingInterrupted: Ctrl-C; a checkpoint of that step was saved.
    """
    say = log or (lambda _line: None)
    notices: list[str] = []
    out = Path(cfg.out)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    examples, fmt, n_records = _read(cfg)  # bad data fails before anything is written
    check_unfinished(cfg, world)  # a finished run's --resume: before the model loads
    check_fresh(cfg)  # nor is an earlier run replaced unasked
    base_path = resolve_checkpoint(cfg.model)
    check_writable(out)
    if cfg.overwrite and rank == 0:  # the earlier run's checkpoints must not mix with these
        shutil.rmtree(checkpoints_root(out), ignore_errors=True)
    say(f"{n_records} {fmt} records from {cfg.data}; loading {base_path} for {cfg.method}")
    model, tokenizer = load_base(base_path, cfg.method)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE  # saved with the result
    data = _encode(cfg, tokenizer, examples, fmt, n_records)
    set_seed(cfg.train.seed if cfg.train else 0)  # LoRA's A matrices start random
    model = prepare(model, cfg, base_path)
    tcfg = cfg.train_config(len(data.train), world)
    check_unfinished(cfg, world, tcfg)  # the step count now known from the data (epochs)
    if cfg.method == "qlora" and tcfg.optimizer == "adamw" and torch.cuda.is_available():
        tcfg = tcfg.model_copy(update={"optimizer": "paged_adamw"})
    elif cfg.method == "qlora":
        notices.append("paged AdamW needs a CUDA GPU; training with torch AdamW on this device")
    for notice in notices:
        say(f"notice: {notice}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    objective, train_it, val_it, ref = _batches(cfg, model, data, tcfg, pad_id, rank, world)
    model.to(_model_device(model))
    base_eval = evaluate(model, val_it, tcfg.eval_batches, {"use_cache": False}, objective)
    say(f"training {_trainable(model):,} parameters for {tcfg.max_steps} steps")
    if tracker is not None and rank == 0:
        tracker.log_params(
            {"base": str(base_path), "method": cfg.method, "data": str(cfg.data),
             "trainable_parameters": _trainable(model), **{
                 f"train.{k}": v for k, v in tcfg.model_dump().items()}}
        )  # fmt: skip
        tracker.log_metrics(
            {"val_loss": base_eval.loss, "val_perplexity": base_eval.perplexity}, step=0
        )
    result = train(
        model,
        train_it,
        val_it,
        tcfg,
        out,
        resume=cfg.resume,
        run_info={"finetune": cfg.model_dump(exclude={"train"}), "base": str(base_path)},
        progress=progress,
        objective=objective,
        tracker=tracker if rank == 0 else None,
    )
    accuracy = None
    if cfg.method == "dpo" and ref is not None:
        accuracy = preference_accuracy(model, data.val, ref[1], pad_id=pad_id)
    card = {
        "base_model": str(base_path),
        "base_spec": cfg.model,
        "method": cfg.method,
        "settings": cfg.model_dump(mode="json", exclude={"train"}),
        "train": tcfg.model_dump(mode="json"),
        "data": {
            "file": cfg.data,
            "sha256": file_sha256(cfg.data),
            "format": data.fmt,
            "records": data.records,
            "train_items": len(data.train),
            "validation_items": len(data.val),
        },
        "results": {
            "steps": result.steps,
            "stopped_early": result.stopped_early,
            "base_validation_loss": base_eval.loss,
            "validation_loss": result.final_eval.loss if result.final_eval else None,
            "validation_perplexity": result.final_eval.perplexity if result.final_eval else None,
            "final_train_loss": result.final_train_loss,
            "preference_accuracy": accuracy,
            "tokens_per_s": round(result.tokens_per_s, 1),
            "peak_memory_mib": round(result.peak_memory_bytes / 2**20, 1),
        },
    }
    model_dir = adapter_dir = None
    if rank == 0:
        model_dir, adapter_dir = _export(
            cfg, model, result.weights, tokenizer, base_path, out, card, say
        )
    return FinetuneResult(
        out=out,
        model_dir=model_dir,
        adapter_dir=adapter_dir,
        steps=result.steps,
        train_losses=result.train_losses,
        base_eval=base_eval,
        final_eval=result.final_eval,
        stopped_early=result.stopped_early,
        tokens_per_s=result.tokens_per_s,
        peak_memory_bytes=result.peak_memory_bytes,
        preference_accuracy=accuracy,
        notices=notices,
    )


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
    if latest is None or not all((out / name).is_dir() for name in _outputs(cfg)):
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


def _outputs(cfg: FinetuneConfig) -> list[str]:
    """The folders a finished run of ``cfg`` leaves in ``cfg.out``."""
    if not _is_adapter(cfg):
        return ["model"]
    return ["adapter", "model"] if cfg.merge else ["adapter"]


def _is_adapter(cfg: FinetuneConfig) -> bool:
    return cfg.method in ADAPTER_METHODS or (cfg.method == "dpo" and cfg.dpo.weights == "lora")


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


def _read(cfg: FinetuneConfig) -> tuple[list[Example], str, int]:
    records = read_records(cfg.data)
    fmt = detect_format(records) if cfg.format == "auto" else cfg.format
    if cfg.method == "dpo" and fmt != "preference":
        raise ConfigError(
            f"{records[0].where()}: --method dpo needs preference pairs (prompt, chosen, "
            f"rejected) but the data is {fmt}"
        )
    if cfg.method != "dpo" and fmt == "preference":
        raise ConfigError(
            f"{records[0].where()}: preference pairs train with --method dpo, not {cfg.method}"
        )
    return parse_records(records, fmt), fmt, len(records)


def _encode(
    cfg: FinetuneConfig, tokenizer: Any, examples: list[Example], fmt: str, n: int
) -> _Data:
    seed = cfg.train.seed if cfg.train else 0
    if cfg.validation_data:
        train_ex = examples
        val_records = read_records(cfg.validation_data)
        val_ex = parse_records(val_records, fmt)  # type: ignore[arg-type]
    else:
        train_ex, val_ex = split_validation(examples, cfg.val_fraction, seed)
        if not val_ex:
            raise ConfigError(f"{cfg.data}: needs at least 2 records to hold one out")
    if fmt == "preference":
        return _Data(
            fmt,
            [encode_pair(tokenizer, e, cfg.max_seq_len) for e in train_ex],
            [encode_pair(tokenizer, e, cfg.max_seq_len) for e in val_ex],
            n,
        )
    train_enc = encode_examples(tokenizer, train_ex, cfg.max_seq_len)
    val_enc = encode_examples(tokenizer, val_ex, cfg.max_seq_len)
    if cfg.packing:
        train_enc = pack(train_enc, cfg.max_seq_len)
    return _Data(fmt, train_enc, val_enc, n)


def _batches(
    cfg: FinetuneConfig,
    model: Any,
    data: _Data,
    tcfg: Any,
    pad_id: int,
    rank: int,
    world: int,
) -> tuple[Objective, TrainBatches, list[dict[str, torch.Tensor]], Any]:
    objective: Objective = NextTokenObjective()
    ref = None
    if data.fmt == "preference":
        objective = DPOObjective(cfg.dpo.beta)
        model.to(_model_device(model))
        # The reference: the model before any update (LoRA adapters start at zero).
        ref = (
            reference_logps(model, data.train, pad_id=pad_id),
            reference_logps(model, data.val, pad_id=pad_id),
        )
    train_it = TrainBatches(
        data.train,
        batch_size=tcfg.batch_size,
        pad_id=pad_id,
        seed=tcfg.seed,
        rank=rank,
        world=world,
        ref_logps=ref[0] if ref else None,
    )
    val_it = eval_batches(
        data.val, batch_size=tcfg.batch_size, pad_id=pad_id, ref_logps=ref[1] if ref else None
    )
    return objective, train_it, val_it, ref


def _model_device(model: Any) -> torch.device:
    from ladder.train.methods import training_device

    if getattr(model, "is_loaded_in_4bit", False) or getattr(
        getattr(model, "base_model", None), "is_loaded_in_4bit", False
    ):
        return next(model.parameters()).device  # placed at load; bnb models do not move
    return torch.device(training_device())


def _trainable(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _export(
    cfg: FinetuneConfig,
    model: Any,
    weights: dict[str, torch.Tensor] | None,
    tokenizer: Any,
    base_path: Path,
    out: Path,
    card: dict[str, Any],
    say: Callable[[str], None],
) -> tuple[Path | None, Path | None]:
    """Save the adapter and/or the full checkpoint, each atomically, each with a model card.

    ``weights`` are the full trained weights where ZeRO-3/FSDP sharded them (the model's own
    tensors are then empty shards); None for any other run.
    """
    is_adapter = _is_adapter(cfg)
    model = model.cpu() if not getattr(model, "is_loaded_in_4bit", False) else model
    if not is_adapter:
        with atomic_dir(out / "model") as tmp:
            save_pretrained_full(model, tmp, weights)
            tokenizer.save_pretrained(tmp)
            (tmp / "README.md").write_text(model_card(card), encoding="utf-8")
        say(f"saved {out / 'model'}")
        return out / "model", None
    with atomic_dir(out / "adapter") as tmp:
        save_pretrained_full(model, tmp, weights)  # a PEFT model keeps the adapter weights
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(model_card({**card, "adapter": True}), encoding="utf-8")
    say(f"saved adapters to {out / 'adapter'}")
    if not cfg.merge:
        return None, out / "adapter"
    started = time.perf_counter()
    merge_adapter(base_path, out / "adapter", out / "model", card=card)
    say(f"merged into {out / 'model'} in {time.perf_counter() - started:.1f}s")
    return out / "model", out / "adapter"
